"""Time one tuning trial with and without the feature cache, and resident memory across a search.

    python -m benchmarks.bench_tuning [--data tests/fixtures/xrays] [--size 128] [--epochs 20] [--trials 30]

One trial is the seed's setting (SGD, lr 0.01, flatten 1024/512) trained for --epochs, three ways on the same
split: (a) a head on cached features, as the tuner does; (b) features recomputed for the trial, the base
running once per image and view; (c) the full model fitted end to end from image files through
model.data.make_dataset, the frozen base running on every image in every epoch. (c) sees one augmented
image per training image and epoch where (a) sees every stored view, so its time is if anything flattering.
Then `python -m tuning` runs a random search of --trials trials twice, in one process (--restart-growth 0)
and restarting when memory has grown by 10% (the default), and the resident memory after trials 1 and N is
read from its progress lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model.architecture import assemble, build_head, compile_model
from model.config import REFERENCE
from model.data import make_dataset, scan_folder, split_by_patient
from model.features import base_key, featurize
from model.training.head import train_head
from model.training.split_features import prepare

ROOT = Path(__file__).resolve().parents[1]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "fixtures" / "xrays")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--epochs", type=int, default=REFERENCE.epochs)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--trials", type=int, default=30, help="trials of the memory check (0: skip it)")
    args = parser.parse_args()

    config = dataclasses.replace(REFERENCE, input_size=args.size, weights=args.weights, epochs=args.epochs)
    split = split_by_patient(scan_folder(args.data))
    print(f"{args.data}: {len(split.train)} training, {len(split.validation)} validation images; "
          f"{args.size} px, weights {args.weights}, {args.epochs} epochs, {args.views} stored views")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "features"
        first = timed(lambda: prepare(split, config, args.views, cache))
        base, sets = prepare(split, config, args.views, cache)
        cached = timed(lambda: train_head(base.output_shape[1:], sets.train, sets.validation, config))
        key = base_key(base)

        def recompute():
            train_head(base.output_shape[1:], featurize(base, key, split.train, args.views, None, config.seed),
                       featurize(base, key, split.validation, 0, None, config.seed), config)

        uncached = timed(recompute)

        def end_to_end():
            head = build_head(tuple(base.output_shape[1:]), config)
            model = compile_model(assemble(base, head), config.optimizer, config.learning_rate)
            model.fit(make_dataset(split.train, args.size, config.batch_size, augment_images=True, shuffle=True),
                      validation_data=make_dataset(split.validation, args.size, config.batch_size),
                      epochs=config.epochs, verbose=0)

        full = timed(end_to_end)
        print(f"features computed and cached once: {first:.1f} s")
        print(f"(a) one trial on cached features:       {cached:8.1f} s")
        print(f"(b) one trial recomputing features:     {uncached:8.1f} s  ({uncached / cached:.1f}x (a))")
        print(f"(c) one trial end to end from images:   {full:8.1f} s  ({full / cached:.1f}x (a))")

    for growth in (0, 0.1) if args.trials else ():
        after = search_memory(args, growth)
        print(f"--restart-growth {growth}: resident memory after trial 1: {after[0]:.0f} MiB, "
              f"after trial {len(after)}: {after[-1]:.0f} MiB ({after[-1] / after[0]:.3f}x)")


def search_memory(args: argparse.Namespace, growth: float) -> list[float]:
    """Resident MiB after each trial of a random search run by the CLI, read from its progress lines."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "tuning", "--data", str(args.data), "--size", str(args.size),
                   "--weights", args.weights, "--views", str(args.views), "--cache", str(Path(tmp) / "features"),
                   "--out", str(Path(tmp) / "run"), "--tuner", "random", "--max-trials", str(args.trials),
                   "--space", "epochs=2", "--restart-growth", str(growth)]
        log = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stderr
    return [float(mib) for mib in re.findall(r"^trial \d+ completed .* rss (\d+) MiB$", log, re.M)]


if __name__ == "__main__":
    main()
