"""Images that are not chest X-rays, made here: package-shipped photos (cropped and distorted) and rendered pages,
screenshots, tables, charts and textures, as the input gate's out-of-scope side and its held-out check.

Every picture comes from a seeded generator, so a set is reproducible; held-out sets use other seeds and, for
photos, a photo the training side never saw (`HELD_OUT_PHOTO`).
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

PHOTO_KIND = "photo"
DOCUMENT_KIND = "document"
HELD_OUT_PHOTO = "grace_hopper.jpg"
SIDE_RANGE = (256, 900)
_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"


@dataclass(frozen=True)
class Rendered:
    """One made image: its kind (photo or document), what it shows, and its grey pixels."""

    kind: str
    name: str
    grey: np.ndarray


def _font_files() -> list[Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(folder.glob("DejaVu*.ttf"))


def photo_files() -> dict[str, Path]:
    """Photos shipped inside installed packages: scikit-learn's two sample images and matplotlib's sample pictures."""
    import matplotlib
    import sklearn.datasets

    sklearn_images = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    found = [*sklearn_images.glob("*.jpg"), mpl / "grace_hopper.jpg", mpl / "Minduka_Present_Blue_Pack.png"]
    return {p.name: p for p in found if p.is_file()}


def _grey_photo(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("L"))


def _distorted_photo(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (30-100% of each side), maybe mirrored, rotated, re-contrasted and resized."""
    h, w = grey.shape
    ch, cw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    image = Image.fromarray(grey[y : y + ch, x : x + cw])
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = image.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR, expand=False)
    image = ImageOps.autocontrast(image, cutoff=rng.uniform(0, 3))
    side = int(rng.integers(*SIDE_RANGE))
    return np.asarray(image.resize((side, int(side * ch / max(cw, 1)) or side), Image.Resampling.BILINEAR))


def _canvas(rng: np.random.Generator) -> tuple[Image.Image, int, int]:
    """A blank grey page (light or, for a dark-mode screen, dark) and its ink colour."""
    w, h = int(rng.integers(*SIDE_RANGE)), int(rng.integers(*SIDE_RANGE))
    dark = rng.random() < 0.3
    paper = int(rng.integers(0, 50) if dark else rng.integers(200, 256))
    ink = int(rng.integers(190, 256) if dark else rng.integers(0, 70))
    return Image.new("L", (w, h), paper), paper, ink


def _font(rng: np.random.Generator, low: int = 10, high: int = 28) -> ImageFont.FreeTypeFont:
    files = _font_files()
    return ImageFont.truetype(str(files[rng.integers(len(files))]), int(rng.integers(low, high)))


def _words(rng: np.random.Generator, n: int) -> str:
    lengths = rng.integers(1, 10, n)
    return " ".join("".join(rng.choice(list(_LETTERS), k)) for k in lengths)


def _text_page(rng: np.random.Generator) -> np.ndarray:
    """Lines of text in one or two columns, with a heading."""
    image, _, ink = _canvas(rng)
    draw = ImageDraw.Draw(image)
    draw.text((20, 10), _words(rng, 4).title(), fill=ink, font=_font(rng, 22, 40))
    font = _font(rng)
    columns = int(rng.integers(1, 3))
    width = image.width // columns
    step = int(font.size * rng.uniform(1.2, 1.8))
    for column in range(columns):
        for y in range(60, image.height - step, step):
            draw.text((15 + column * width, y), _words(rng, int(width / (font.size * 3)) + 1), fill=ink, font=font)
    return np.asarray(image)


def _table(rng: np.random.Generator) -> np.ndarray:
    """A grid of numbers with ruled lines."""
    image, _, ink = _canvas(rng)
    draw = ImageDraw.Draw(image)
    rows, cols = int(rng.integers(4, 20)), int(rng.integers(2, 8))
    font = _font(rng, 9, 20)
    cw, rh = image.width / cols, image.height / rows
    for r in range(rows + 1):
        draw.line([(0, r * rh), (image.width, r * rh)], fill=ink, width=int(rng.integers(1, 3)))
    for c in range(cols + 1):
        draw.line([(c * cw, 0), (c * cw, image.height)], fill=ink, width=1)
    for r in range(rows):
        for c in range(cols):
            draw.text((c * cw + 4, r * rh + 2), f"{rng.uniform(0, 1000):.{rng.integers(0, 3)}f}", fill=ink, font=font)
    return np.asarray(image)


def _screenshot(rng: np.random.Generator) -> np.ndarray:
    """A window: title bar, buttons, boxes and text, sometimes with a photo inset."""
    image, paper, ink = _canvas(rng)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, image.width, 30], fill=int(rng.integers(60, 200)))
    font = _font(rng, 10, 18)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, image.width - 40)), int(rng.integers(35, image.height - 20))
        x1, y1 = x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(15, 120))
        draw.rounded_rectangle([x0, y0, x1, y1], radius=int(rng.integers(0, 10)), outline=ink,
                               fill=int(rng.integers(0, 256)))
        draw.text((x0 + 5, y0 + 3), _words(rng, 2), fill=ink, font=font)
    photos = list(photo_files().values())
    if photos and rng.random() < 0.4:
        inset = Image.fromarray(_grey_photo(photos[rng.integers(len(photos))])).resize((image.width // 3, image.height // 3))
        image.paste(inset, (int(rng.integers(0, image.width // 2)), int(rng.integers(40, image.height // 2))))
    return np.asarray(image)


def _chart(rng: np.random.Generator) -> np.ndarray:
    """A line, bar or scatter plot rendered by matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(rng.uniform(3, 8), rng.uniform(3, 8)), dpi=80)
    x = np.arange(int(rng.integers(5, 60)))
    kind = rng.integers(3)
    if kind == 0:
        ax.plot(x, np.cumsum(rng.normal(size=len(x))))
    elif kind == 1:
        ax.bar(x, rng.uniform(0, 10, len(x)))
    else:
        ax.scatter(rng.normal(size=len(x) * 5), rng.normal(size=len(x) * 5), s=rng.uniform(2, 30))
    ax.set_title(_words(rng, 3))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("L"))


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Noise, gradients, stripes or checkerboards, smoothed by a random amount."""
    side = int(rng.integers(*SIDE_RANGE))
    yy, xx = np.mgrid[0:side, 0:side] / side
    kind = rng.integers(4)
    if kind == 0:
        field = rng.random((side, side))
    elif kind == 1:
        field = np.cos(2 * np.pi * rng.uniform(1, 30) * (xx * np.cos(rng.uniform(0, 3)) + yy * np.sin(rng.uniform(0, 3))))
    elif kind == 2:
        n = rng.uniform(2, 20)
        field = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(float)
    else:
        field = xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + rng.normal(0, 0.05, (side, side))
    field = (field - field.min()) / (np.ptp(field) + 1e-9)
    image = Image.fromarray(np.round(field * 255).astype("uint8"))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 4))))


def _mri_slice() -> np.ndarray | None:
    """matplotlib's sample MRI head slice (256 x 256, 16-bit): a medical image that is not a chest film."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "s1045.ima.gz"
    if not path.is_file():
        return None
    pixels = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint16).astype("float32")
    pixels = pixels[: 256 * 256].reshape(256, 256)
    return np.round(255 * pixels / max(float(pixels.max()), 1.0)).astype("uint8")


DOCUMENT_MAKERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "text page": _text_page, "table": _table, "screenshot": _screenshot, "chart": _chart, "texture": _texture,
}


def make_out_of_scope(n_photos: int, n_documents: int, seed: int, held_out: bool = False) -> list[Rendered]:
    """`n_photos` distorted package photos and `n_documents` rendered pictures (every maker in turn).

    held_out=False draws photos from every shipped photo but HELD_OUT_PHOTO; True only from it (plus the MRI
    slice), so a held-out check sees a photo the gate was never trained on. Use different seeds for the two.
    """
    rng = np.random.default_rng(seed)
    photos = {name: path for name, path in photo_files().items() if (name == HELD_OUT_PHOTO) == held_out}
    greys = {name: _grey_photo(path) for name, path in photos.items()}
    made = []
    names = sorted(greys)
    for i in range(n_photos if names else 0):
        name = names[i % len(names)]
        made.append(Rendered(PHOTO_KIND, f"photo {name}", _distorted_photo(greys[name], rng)))
    mri = _mri_slice() if held_out else None
    if mri is not None:
        made.append(Rendered(PHOTO_KIND, "MRI head slice", mri))
    makers = list(DOCUMENT_MAKERS.items())
    for i in range(n_documents):
        name, maker = makers[i % len(makers)]
        made.append(Rendered(DOCUMENT_KIND, name, maker(rng)))
    return made
