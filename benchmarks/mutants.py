"""Mutation spot-check: make one small wrong change to a core module, run the tests meant to notice, restore; repeat.

    python benchmarks/mutants.py              # every mutant in MUTANTS
    python benchmarks/mutants.py --only threshold-exclusive platt-sign
    python benchmarks/mutants.py --report      # and then killed/survived per area

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
    """Replace `old` (which must occur exactly once in `path`) by `new`; `tests` are pytest arguments; `area` is the
    part of the product whose promise it breaks (what --report counts by)."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    area: str = "other"


MUTANTS = (
    Mutant("threshold-exclusive", "model/serving/predictor.py", "probability >= self.threshold",
           "probability > self.threshold", ("tests/test_presentation.py",), "serving"),
    Mutant("grad-cam-sign", "model/serving/gradcam.py", "weights = tf.reduce_mean(grads",
           "weights = -tf.reduce_mean(grads", ("tests/test_gradcam.py", "-k", "grad_cam"), "explanation"),
    Mutant("threshold-on-test", "model/training/export.py",
           'pick_threshold(sets.validation.y, probs["validation"]', 'pick_threshold(sets.test.y, probs["test"]',
           ("tests/test_evaluation.py", "-k", "threshold"), "training"),
    Mutant("bootstrap-images", "model/training/paired.py", "groups.setdefault((patient, int(label))",
           "groups.setdefault((i, int(label))", ("tests/test_paired.py",), "statistics"),
    Mutant("platt-sign", "model/calibration.py", "np.exp(-scaled)", "np.exp(scaled)",
           ("tests/test_calibration.py",), "calibration"),
    Mutant("overlay-unregistered", "model/serving/overlay.py", "scale_box(box or (0, 0,", "scale_box(None or (0, 0,",
           ("tests/test_gradcam.py", "-k", "overlay"), "explanation"),
    Mutant("key-drops-a-step", "model/preprocessing.py", "for f in dataclasses.fields(p)[1:]",
           "for f in dataclasses.fields(p)[2:]", ("tests/test_preprocessing.py", "-k", "key"),
           "preprocessing"),
    Mutant("youden-reversed", "model/training/evaluation.py", "index = int(np.argmax(tpr - fpr))",
           "index = int(np.argmax(fpr - tpr))", ("tests/test_evaluation.py", "-k", "threshold or youden"),
           "training"),
    Mutant("flag-mapping", "model/commands/cli.py", 'knob.metadata.get("flag", "--" + knob.name.replace("_", "-"))',
           '"--" + knob.name.replace("_", "-")', ("tests/test_cli.py", "-k", "flag"), "command line"),
    # issue 32, round two: the input gate, the operating point that transfers, the store, the logins
    Mutant("gate-novelty-margin", "model/training/gate_fit.py", "NOVELTY_MARGIN = 1.5", "NOVELTY_MARGIN = 2.0",
           ("tests/test_gate_fit.py", "-k", "distance_threshold"), "input gate"),
    Mutant("gate-distance-off-centre", "model/training/gate_fit.py", "centre = novelty.mean_",
           "centre = 0 * novelty.mean_", ("tests/test_gate_fit.py",), "input gate"),
    Mutant("gate-distance-inclusive", "model/gate.py", "if novelty > self.novelty_threshold:",
           "if novelty >= self.novelty_threshold:", ("tests/test_gate.py", "-k", "distance"), "input gate"),
    Mutant("gate-distance-summed", "model/gate.py", "** 2 / self.variances).mean(axis=1)",
           "** 2 / self.variances).sum(axis=1)", ("tests/test_gate.py", "-k", "distance"), "input gate"),
    Mutant("gate-age-days-as-weeks", "model/gate.py", '"D": 365.25', '"D": 52.18',
           ("tests/test_gate.py", "-k", "header"), "input gate"),
    Mutant("gate-table-by-kind", "model/training/gate_fit.py", "rows[item.tag].append(bool(no))",
           "rows[item.kind].append(bool(no))", ("tests/test_gate_fit.py", "-k", "refusal_table"), "input gate"),
    Mutant("gate-floor-over-refused", "model/training/gate_fit.py", "np.quantile(in_scope[passed & group], target)",
           "np.quantile(in_scope[group], target)", ("tests/test_gate_fit.py", "-k", "floor"), "input gate"),
    Mutant("gate-covid-unflagged", "model/training/gate_fit.py",
           'self.kind == IN_SCOPE and self.tag.startswith("covid")',
           'self.kind == IN_SCOPE and self.tag.startswith("COVID")', ("tests/test_gate_fit.py", "-k", "covid"),
           "input gate"),
    Mutant("gate-oof-views-tiled", "model/training/gate_fit.py", "np.repeat([i.group for i in items], views))",
           "np.tile([i.group for i in items], views))", ("tests/test_gate_fit.py", "-k", "patient"), "input gate"),
    Mutant("transfer-share-exclusive", "model/training/transfer.py", "n <= len(features.examples) / folds",
           "n < len(features.examples) / folds", ("tests/test_transfer.py", "-k", "no_fold or held_out_whole"),
           "operating point"),
    Mutant("transfer-rank-index", "model/training/transfer.py", "[::-1][needed - 1]", "[::-1][needed]",
           ("tests/test_transfer.py", "-k", "completes"), "operating point"),
    Mutant("store-integrity-first-line", "feedback/store.py", '"\\n".join(row[0] for row in rows) or "ok"',
           '"\\n".join(row[0] for row in rows[1:]) or "ok"', ("tests/test_store_integrity.py",), "store"),
    Mutant("login-plain-equality", "feedback/readers.py", "hmac.compare_digest(secret.encode(), password.encode())",
           "secret.encode() == password.encode()", ("tests/test_feedback_logins.py", "-k", "compare_digest"),
           "logins"),
    Mutant("login-success-clears-client", "feedback/logins.py", 'self._failures.pop(f"pair:{reader}|{client}", None)',
           'self._failures.pop(f"client:{client}", None)', ("tests/test_feedback_logins.py", "-k", "sign_in"),
           "logins"),
    # issue 32, round two: fair share and decode budget, tuner, feature cache, precision, calibration, statistics,
    # progress
    Mutant("fair-share-fewest-ignored", "space/fairness.py", "return self._running[client], self._last_start",
           "return 0, self._last_start", ("tests/test_fair_share.py", "-k", "fewer_calls"), "fair share"),
    Mutant("fair-share-client-lifo", "space/fairness.py", "client, -1), number", "client, -1), -number",
           ("tests/test_fair_share.py", "-k", "never_holds"), "fair share"),
    Mutant("decode-budget-lifo", "model/decode_budget.py", "self._queue.append(ticket)",
           "self._queue.appendleft(ticket)", ("tests/test_fair_share.py", "-k", "decodes_that_wait"), "fair share"),
    Mutant("tuner-tie-lowest-val-auc", "tuning/search.py", 'pick = max(tied, key=lambda r: (r.at_best["val_auc"]',
           'pick = min(tied, key=lambda r: (r.at_best["val_auc"]', ("tests/test_tuning.py", "-k", "tied_trials"),
           "tuner"),
    Mutant("tuner-collection-tie-open", "tuning/search.py", '(within[r.trial_id]["auc"], r.score), reverse=True)',
           '(within[r.trial_id]["auc"]), reverse=True)', ("tests/test_tuning.py", "-k", "tied_trials"), "tuner"),
    Mutant("cache-views-seedless", "model/features.py", '_s{seed if view else 0}.npy"', '_s0.npy"',
           ("tests/test_feature_cache.py", "-k", "seed"), "feature cache"),
    Mutant("cache-gate-prep-unkeyed", "model/training/gate_fit.py",
           '{base_key(base, None, precision)}-{preprocessing.key}"', '{base_key(base, None, precision)}"',
           ("tests/test_feature_cache.py", "-k", "gate"), "feature cache"),
    Mutant("precision-any-answer-agrees", "model/serving/measure.py", '"same_answers": all(a == answers[0]',
           '"same_answers": any(a == answers[0]', ("tests/test_precision.py", "-k", "answering_alike"), "precision"),
    Mutant("precision-gate-unheard", "model/serving/measure.py", "return [(p.status, p.label) for p in",
           "return [(p.label,) for p in", ("tests/test_precision.py", "-k", "answering_alike"), "precision"),
    Mutant("precision-compared-to-self", "model/precision.py",
           'relative_difference(outputs["float32"], outputs["bfloat16"])',
           'relative_difference(outputs["float32"], outputs["float32"])',
           ("tests/test_precision.py", "-k", "computes_something_else"), "precision"),
    Mutant("ece-unweighted", "model/training/platt.py", "return float(gaps.sum() / max(counts.sum(), 1))",
           "return float(np.mean(gaps / np.maximum(counts, 1)))", ("tests/test_calibration.py", "-k", "ece_weights"),
           "calibration"),
    Mutant("ece-one-past-last-bin", "model/training/platt.py", "(p * bins).astype(int), bins - 1)",
           "(p * bins).astype(int), bins)", ("tests/test_calibration.py", "-k", "ece_weights"), "calibration"),
    Mutant("ece-limit-doubled", "model/training/platt.py", "ECE_LIMIT = 0.05\nBINS", "ECE_LIMIT = 0.1\nBINS",
           ("tests/test_calibration.py", "-k", "just_above"), "calibration"),
    Mutant("auc-interval-90", "model/training/evaluation.py", 'method="percentile", rng=',
           'method="percentile", confidence_level=0.9, rng=', ("tests/test_evaluation.py", "-k", "two_and_a_half"),
           "statistics"),
    Mutant("paired-interval-90", "model/training/paired.py", 'method="percentile", rng=',
           'method="percentile", confidence_level=0.9, rng=', ("tests/test_paired.py", "-k", "two_and_a_half"),
           "statistics"),
    Mutant("progress-no-final-line", "model/progress.py", "self.done >= self.total or", "self.done > self.total or",
           ("tests/test_precision.py", "-k", "final_line"), "progress"),
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
    """Whether the tests pass (pytest exit status 0); ValueError when they select no test (status 5), which would
    otherwise count as a kill."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        status = subprocess.run(command, cwd=root, capture_output=True, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        return False
    if status == 5:
        raise ValueError(f"pytest {' '.join(tests)} selects no test")
    return status == 0


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
    parser.add_argument("--report", action="store_true", help="then print killed and survived mutants per area")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    root = scratch_copy()
    try:
        return run_all(chosen, args.timeout, args.baseline, root, args.report)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def area_report(chosen: list[Mutant], survivors: list[str]) -> list[str]:
    """One line per area, in the order areas first appear: how many of its mutants were killed and which survived."""
    lines = []
    for area in dict.fromkeys(m.area for m in chosen):
        names = [m.name for m in chosen if m.area == area]
        survived = [n for n in names if n in survivors]
        lines.append(f"{area:16} {len(names) - len(survived)} killed, {len(survived)} survived"
                     + (f" ({', '.join(survived)})" if survived else ""))
    return lines


def run_all(chosen: list[Mutant], timeout_s: float, baseline: bool, root: Path, report: bool = False) -> int:
    """Try each mutant in the copy at `root` and print the verdicts; the exit status (1 when any survived)."""
    if baseline:
        failing = [m.name for m in chosen if not run_tests(m.tests, timeout_s, root)]
        if failing:
            print(f"the tests of {', '.join(failing)} fail on the unchanged tree; fix them first")
            return 2
    survivors = []
    for mutant in chosen:
        survived = try_mutant(mutant, timeout_s, root)
        verdict = "SURVIVED" if survived else "killed  "
        print(f"{verdict}  {mutant.name:27} {mutant.path}: {mutant.old!r} -> {mutant.new!r}", flush=True)
        survivors += [mutant.name] if survived else []
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} mutants killed"
          + (f"; surviving: {', '.join(survivors)}" if survivors else ""))
    if report:
        print("\nper area:", *area_report(chosen, survivors), sep="\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
