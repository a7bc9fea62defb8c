"""The lung localiser (model/lungs.py) measured: speed and memory, polarity on real films, found-rates, crop stability.

Run from the repository root (the last three need ../shared beside the checkout):
- `python -m benchmarks.bench_lungs`: ms per image of find_lungs (resizing, network, rule) at batch 1 and 8, on
  the example films and on a large upload, for a film read as it is and one found inverted (two passes); and
  the resident memory that loading the localiser and its first call add to a process that already runs Keras.
- `python -m benchmarks.bench_lungs --polarity`: every film of external/ and N of ood/pediatric, each as it is and
  inverted: the confusion (inverted films recognised; films as they are called inverted).
- `python -m benchmarks.bench_lungs --found [--overlays DIR]`: the share of films where the two-lung rule holds,
  per folder (normal adults, COVID-19, out-of-scope kinds), the reasons it fails, and the median IoU of the lung
  box of each external/ film against that of its 90% centre crop (mapped back); DIR gets overlay PNGs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path("../shared/data")
EXAMPLES = Path("examples")
BATCH = 8
RUNS = 20
FOUND_FOLDERS = ("external/normal", "more_normals/normal", "external/covid", "ood/ct", "ood/lateral", "ood/pediatric")
SAMPLE = 300
"""At most this many films per folder for --found (a seeded sample), and 100 children's films for --polarity."""
OVERLAYS = 6
"""Overlay PNGs per folder (--overlays)."""


def films(folder: Path, limit: int | None = None, seed: int = 0) -> list[tuple[Path, np.ndarray]]:
    """(path, grey) of the image files under `folder`, a seeded sample of `limit` when there are more."""
    from model.images import EXTENSIONS, read_grey

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
    if limit and len(paths) > limit:
        paths = sorted(np.random.default_rng(seed).choice(paths, limit, replace=False))
    return [(p, read_grey(p)) for p in paths]


def rss_mib() -> float:
    """The process's resident memory now, MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def ms_per_image(run, greys: list[np.ndarray]) -> tuple[float, float]:
    """Median wall-clock and processor ms per image of run(greys) over RUNS calls after a warm-up (the processor
    time of all the process's threads is less swayed by other jobs on the machine)."""
    run(greys)
    walls, cpus = [], []
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        run(greys)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1000 * statistics.median(walls) / len(greys), 1000 * statistics.median(cpus) / len(greys)


def speed(path: Path) -> None:
    import keras  # noqa: F401  (a serving process has Keras loaded before the localiser)
    import tensorflow as tf  # noqa: F401
    from PIL import Image

    from model.framing import invert
    from model.lungs import find_lungs_many, load_localiser
    from model.precision import cpu_model

    before = rss_mib()
    localiser = load_localiser(path)
    greys = [grey for _, grey in films(EXAMPLES)]
    find_lungs_many(localiser, greys[:1])
    find_lungs_many(localiser, greys[:BATCH])
    after = rss_mib()
    print(f"lung localiser {localiser.version} ({path}, {path.stat().st_size / 2**10:.0f} KiB, "
          f"{localiser.network.count_params():,} parameters, {localiser.size} px input) on {cpu_model()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (others' work slows every figure)")
    print(f"memory: +{after - before:.0f} MiB resident for loading it and its first calls (Keras already loaded)")
    large = np.asarray(Image.fromarray(greys[0]).resize((2048, 2500)))
    cases = {"example films (224-512 px)": greys, "large upload (2048 x 2500)": [large],
             "inverted example films (two passes)": [invert(g) for g in greys]}
    print(f"{'films':<38} {'ms/image: batch 1':>18} {'batch 8':>8} {'processor ms: batch 1':>22} {'batch 8':>8}")
    for name, images in cases.items():
        one = np.median([ms_per_image(lambda g: find_lungs_many(localiser, g), [g]) for g in images], axis=0)
        eight = ms_per_image(lambda g: find_lungs_many(localiser, g), (images * BATCH)[:BATCH])
        print(f"{name:<38} {one[0]:>18.1f} {eight[0]:>8.1f} {one[1]:>22.1f} {eight[1]:>8.1f}")


def polarity(path: Path, shared: Path) -> None:
    from model.framing import invert
    from model.lungs import find_lungs_many, load_localiser

    localiser = load_localiser(path)
    sets = {"external": films(shared / "external"), "ood/pediatric": films(shared / "ood/pediatric", 100)}
    print(f"{'films':<16} {'n':>4} {'as is called inverted':>22} {'inverted recognised':>20} {'right':>7}")
    total = right = 0
    for name, items in sets.items():
        greys = [grey for _, grey in items]
        plain = _batched(localiser, greys, find_lungs_many)
        negated = _batched(localiser, [invert(g) for g in greys], find_lungs_many)
        wrong = [p.name for (p, _), lungs in zip(items, plain) if lungs.inverted]
        missed = [p.name for (p, _), lungs in zip(items, negated) if not lungs.inverted]
        n = len(items)
        total, right = total + 2 * n, right + 2 * n - len(wrong) - len(missed)
        print(f"{name:<16} {n:>4} {len(wrong):>15} ({len(wrong) / n:.1%}) {n - len(missed):>12} ({1 - len(missed) / n:.1%})"
              f" {1 - (len(wrong) + len(missed)) / (2 * n):>7.1%}")
        for label, names in (("called inverted", wrong), ("inverted, not recognised", missed)):
            if names:
                print(f"  {label}: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
    print(f"all: {right} of {total} decisions right ({right / total:.1%})")


def _batched(localiser, greys, function):
    out = []
    for start in range(0, len(greys), BATCH):
        out += function(localiser, greys[start:start + BATCH])
    return out


def found(path: Path, shared: Path, overlays: Path | None) -> None:
    from model.framing import centre_crop
    from model.lungs import find_lungs_many, load_localiser

    localiser = load_localiser(path)
    print(f"{'folder':<22} {'films':>6} {'two lungs found':>16} {'inverted':>9}  why not (most common)")
    external = []
    for folder in FOUND_FOLDERS:
        items = films(shared / folder, SAMPLE)
        results = _batched(localiser, [grey for _, grey in items], find_lungs_many)
        if folder.startswith("external/"):
            external += [(p, grey, lungs) for (p, grey), lungs in zip(items, results)]
        share = sum(r.found for r in results) / len(results)
        why = Counter(r.reason for r in results if not r.found).most_common(2)
        print(f"{folder:<22} {len(items):>6} {share:>16.1%} {sum(r.inverted for r in results):>9}  "
              f"{'; '.join(f'{n} x {reason}' for reason, n in why)}")
        if overlays:
            _overlays(localiser, items[:OVERLAYS], results[:OVERLAYS], overlays, folder.replace("/", "_"))
    crops = _batched(localiser, [centre_crop(grey, 0.9) for _, grey, _ in external], find_lungs_many)
    ious = []
    for (_, grey, lungs), cropped in zip(external, crops):
        if lungs.found and cropped.found:
            h, w = grey.shape
            top, left = int(round((h - round(h * 0.9)) * 0.5)), int(round((w - round(w * 0.9)) * 0.5))
            ious.append(_iou(lungs.box, (cropped.box[0] + top, cropped.box[1] + left,
                                         cropped.box[2] + top, cropped.box[3] + left)))
    print(f"90% centre crop of {len(external)} external films, both found in {len(ious)}: lung box IoU median "
          f"{np.median(ious):.3f}, 10th percentile {np.percentile(ious, 10):.3f}, under 0.8: {sum(i < 0.8 for i in ious)}")


def _iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _overlays(localiser, items, results, folder: Path, prefix: str) -> None:
    """Each film with its lung map in red and its box in green (yellow when not found), as PNG."""
    from PIL import Image, ImageDraw

    from model.lungs import lung_maps

    folder.mkdir(parents=True, exist_ok=True)
    for (path, grey), lungs, prob in zip(items, results, lung_maps(localiser, [g for _, g in items])):
        rgb = np.repeat(grey[:, :, None].astype("float32"), 3, axis=2)
        rgb[..., 0] = np.clip(rgb[..., 0] + 110 * (prob >= 0.5), 0, 255)
        image = Image.fromarray(rgb.astype("uint8"))
        top, left, bottom, right = lungs.box
        ImageDraw.Draw(image).rectangle((left, top, right - 1, bottom - 1), outline=(0, 255, 0) if lungs.found
                                        else (255, 255, 0), width=max(2, grey.shape[0] // 150))
        image.save(folder / f"{prefix}__{path.stem}.png")


def main() -> None:
    from model.preprocessing import DEFAULT_LOCALISER

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lungs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--localiser", type=Path, default=DEFAULT_LOCALISER)
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (default %(default)s)")
    parser.add_argument("--polarity", action="store_true", help="measure polarity on real films")
    parser.add_argument("--found", action="store_true", help="found-rates per folder and crop stability")
    parser.add_argument("--overlays", type=Path, default=None, help="with --found: write overlay PNGs here")
    args = parser.parse_args()
    if args.polarity:
        polarity(args.localiser, args.shared)
    if args.found:
        found(args.localiser, args.shared, args.overlays)
    if not (args.polarity or args.found):
        speed(args.localiser)


if __name__ == "__main__":
    main()
