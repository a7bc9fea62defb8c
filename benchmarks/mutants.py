"""Mutation spot-check: make one small wrong change to a core module, run the tests meant to notice, restore; repeat.

    python benchmarks/mutants.py              # every mutant in MUTANTS
    python benchmarks/mutants.py --only threshold-exclusive platt-sign

Prints each mutant as killed (its tests failed) or SURVIVED (they still passed: a gap in the tests), and exits 1
when any survives. Mutants are made in a temporary copy of the working tree (uncommitted changes included), never
in the checkout itself, so work there can go on while they run. Not run by the test suite (slow: each
mutant runs its tests once); the tests must pass on the unchanged tree first, which --baseline checks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """Replace `old` (which must occur exactly once in `path`) by `new`; `tests` are pytest arguments."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("threshold-exclusive", "model/serving/predictor.py", "probability >= self.threshold",
           "probability > self.threshold", ("tests/test_presentation.py",)),
    Mutant("grad-cam-sign", "model/serving/gradcam.py", "weights = tf.reduce_mean(grads",
           "weights = -tf.reduce_mean(grads", ("tests/test_gradcam.py", "-k", "grad_cam")),
    Mutant("threshold-on-test", "model/training/export.py",
           'pick_threshold(sets.validation.y, probs["validation"]', 'pick_threshold(sets.test.y, probs["test"]',
           ("tests/test_evaluation.py", "-k", "threshold")),
    Mutant("bootstrap-images", "model/training/paired.py", "groups.setdefault((patient, int(label))",
           "groups.setdefault((i, int(label))", ("tests/test_paired.py",)),
    Mutant("platt-sign", "model/calibration.py", "np.exp(-scaled)", "np.exp(scaled)",
           ("tests/test_calibration.py",)),
    Mutant("overlay-unregistered", "model/serving/overlay.py", "scale_box(box or (0, 0,", "scale_box(None or (0, 0,",
           ("tests/test_gradcam.py", "-k", "overlay")),
    Mutant("key-drops-a-step", "model/preprocessing.py", "for f in dataclasses.fields(p)[1:])",
           "for f in dataclasses.fields(p)[2:])", ("tests/test_preprocessing.py", "-k", "key")),
    Mutant("youden-reversed", "model/training/evaluation.py", "index = int(np.argmax(tpr - fpr))",
           "index = int(np.argmax(fpr - tpr))", ("tests/test_evaluation.py", "-k", "threshold or youden")),
    Mutant("flag-mapping", "model/commands/cli.py", 'knob.metadata.get("flag", "--" + knob.name.replace("_", "-"))',
           '"--" + knob.name.replace("_", "-")', ("tests/test_cli.py", "-k", "flag")),
)


def scratch_copy() -> Path:
    """A copy of the working tree as git sees it (tracked and new files, uncommitted changes included) in a temporary
    folder: mutants are made there, so the checkout, and anyone working in it, never sees one."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.split(b"\0")
    copy = Path(tempfile.mkdtemp(prefix="xray-mutants-"))
    for name in filter(None, map(os.fsdecode, listed)):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def run_tests(tests: tuple[str, ...], timeout_s: float, root: Path = ROOT) -> bool:
    """Whether the tests pass (pytest exit status 0)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(command, cwd=root, capture_output=True, timeout=timeout_s).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def try_mutant(mutant: Mutant, timeout_s: float, root: Path) -> bool:
    """Apply the mutant in the copy at `root`, run its tests there, restore the file; True when it survived."""
    path = root / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise ValueError(f"{mutant.name}: {mutant.old!r} occurs {original.count(mutant.old)} times in {mutant.path}")
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        return run_tests(mutant.tests, timeout_s, root)
    finally:
        path.write_text(original)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[m.name for m in MUTANTS], help="run these mutants only")
    parser.add_argument("--baseline", action="store_true", help="first check each mutant's tests pass unchanged")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per test run (a timeout counts as killed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    root = scratch_copy()
    try:
        return run_all(chosen, args.timeout, args.baseline, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_all(chosen: list[Mutant], timeout_s: float, baseline: bool, root: Path) -> int:
    """Try each mutant in the copy at `root` and print the verdicts; the exit status (1 when any survived)."""
    if baseline:
        failing = [m.name for m in chosen if not run_tests(m.tests, timeout_s, root)]
        if failing:
            print(f"the tests of {', '.join(failing)} fail on the unchanged tree; fix them first")
            return 2
    survivors = []
    for mutant in chosen:
        survived = try_mutant(mutant, timeout_s, root)
        print(f"{'SURVIVED' if survived else 'killed  '}  {mutant.name:22} {mutant.path}: {mutant.old!r} -> {mutant.new!r}",
              flush=True)
        survivors += [mutant.name] if survived else []
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed"
          + (f"; surviving: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
