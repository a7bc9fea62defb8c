"""How fast and how exactly the film finder (model/film.py) finds films: time per image on synthetic frames, what it
cuts off real films as they are, and whether it recovers each real film from its framings (model/framing.py).

Run from the repository root with ../shared beside the checkout:
`python -m benchmarks.bench_film [--data DIR ...] [--runs 20] [--show N --out DIR]`.
Per data folder it prints: films, films whose box is smaller than the whole image (and by more than 2% of a side),
and per framing (borders, screens) the share of films whose found box lies within max(2 px, 1% of a side) of the
film's own box placed where the framing put it. `--show N` saves the N films it cuts most, box drawn, as PNGs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.bench_predict import load_average, median_ms
from model.film import Box, find_film
from model.framing import FRAMINGS, border, letterbox, letterbox_box
from model.images import EXTENSIONS, read_grey
from model.markdown import table
from model.precision import cpu_model
from tests.films import synthetic_film

SHARED = Path("../shared/data")
FOLDERS = ("external", "dev", "ood")
PLACED = {  # where each framing puts a film of `shape`: (offset, scale) of its boxes
    "black border 10%": lambda shape: _bordered(shape, 0.10),
    "black border 20%": lambda shape: _bordered(shape, 0.20),
    "white border 10%": lambda shape: _bordered(shape, 0.10),
    "grey border 10%": lambda shape: _bordered(shape, 0.10),
    "screen 1920x1080": lambda shape: _screened(shape, 1920, 1080),
    "screen 1280x1024": lambda shape: _screened(shape, 1280, 1024),
}


def _bordered(shape: tuple[int, ...], fraction: float) -> tuple[tuple[int, int], float, float]:
    width = round(fraction * max(shape))
    return (width, width), 1.0, 1.0


def _screened(shape: tuple[int, ...], width: int, height: int) -> tuple[tuple[int, int], float, float]:
    top, left, bottom, right = letterbox_box(shape, width, height)
    return (top, left), (bottom - top) / shape[0], (right - left) / shape[1]


def moved(box: Box, shape: tuple[int, ...], name: str) -> Box:
    """The film's own box as the framing `name` moves and scales it."""
    (dy, dx), sy, sx = PLACED[name](shape)
    return (dy + round(box[0] * sy), dx + round(box[1] * sx), dy + round(box[2] * sy), dx + round(box[3] * sx))


def near(found: Box, expected: Box, shape: tuple[int, ...]) -> bool:
    slack = np.maximum(2, np.ceil(0.01 * np.array([shape[0], shape[1], shape[0], shape[1]])))
    return bool((np.abs(np.subtract(found, expected)) <= slack).all())


def time_synthetic(runs: int) -> list[list[str]]:
    film = synthetic_film(2000, 1600)
    cases = {
        "2000 x 1600 film, no frame": film,
        "the same, black border 10% (2400 x 2000)": border(film, 0.10, 0),
        "the same, grey border 25% (3000 x 2600)": border(film, 0.25, 128),
        "the same, screen 1920 x 1080": letterbox(film, 1920, 1080),
        "224 x 224 film, no frame": synthetic_film(224, 224),
    }
    rows = []
    for name, grey in cases.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            find_film(grey)
            times.append(time.perf_counter() - start)
        rows.append([name, f"{median_ms(times):.2f}", f"{min(times) * 1000:.2f}"])
    return rows


def draw(grey: np.ndarray, box: Box, path: Path) -> None:
    image = Image.fromarray(grey).convert("RGB")
    top, left, bottom, right = box
    ImageDraw.Draw(image).rectangle([left, top, right - 1, bottom - 1], outline=(255, 0, 0),
                                    width=max(1, max(grey.shape) // 300))
    image.save(path)


def measure_folder(folder: Path, show: int, out: Path | None) -> tuple[list[str], list[tuple[float, Path]]]:
    films = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
    cut, cut_more, recovered, lost = 0, 0, dict.fromkeys(PLACED, 0), []
    for path in films:
        grey = read_grey(path)
        box = find_film(grey)
        h, w = grey.shape
        if box != (0, 0, h, w):
            cut += 1
            share = max((box[0] + h - box[2]) / h, (box[1] + w - box[3]) / w)
            cut_more += share > 0.02
            lost.append((share, path, grey, box))
        for name in PLACED:
            framed = FRAMINGS[name](grey)
            recovered[name] += near(find_film(framed), moved(box, grey.shape, name), framed.shape)
    lost.sort(key=lambda item: -item[0])
    if out and show:
        for share, path, grey, box in lost[:show]:
            draw(grey, box, out / f"{folder.name}-{path.stem}.png")
    n = max(len(films), 1)
    row = [folder.name, str(len(films)), f"{cut} ({cut / n:.0%})", f"{cut_more} ({cut_more / n:.0%})",
           *(f"{recovered[name] / n:.1%}" for name in PLACED)]
    return row, [(share, path) for share, path, _, _ in lost]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="*", default=[SHARED / f for f in FOLDERS])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--show", type=int, default=0, help="save the N films cut most per folder, box drawn")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_film"))
    args = parser.parse_args()
    print(f"find_film on {cpu_model()}; load average {load_average()}\n")
    print("\n".join(table(["image", "median ms", "min ms"], time_synthetic(args.runs))))
    if args.show:
        args.out.mkdir(parents=True, exist_ok=True)
    rows, worst = [], []
    for folder in args.data:
        if folder.is_dir():
            row, lost = measure_folder(folder, args.show, args.out if args.show else None)
            rows.append(row)
            worst += lost
    if rows:
        print("\nreal films as they are (box smaller than the image; by more than 2% of a side), and the share of "
              "framed copies whose film is found within max(2 px, 1%)\n")
        print("\n".join(table(["folder", "films", "cut", "cut > 2%", *PLACED], rows)))
        print("\nthe films cut most (share of a side):")
        for share, path in sorted(worst, key=lambda item: -item[0])[:10]:
            print(f"  {share:.1%}  {path}")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
