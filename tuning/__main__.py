"""Search the head's hyperparameters with Keras Tuner: python -m tuning --data DIR --out runs/NAME [options].

The frozen VGG-16 base runs once per image and stored view (features cached on disk); each trial trains
only a head. A rerun of the same command resumes the project in <out>/search and repeats no finished
trial (a larger --max-trials extends it); --overwrite starts over; Ctrl-C leaves a project that resumes.
When memory has grown by --restart-growth the command restarts itself the same way, because Keras keeps
some memory per fitted model that only the end of the process gives back.
The best trial's head (at its best epoch) is evaluated once on the test patients and exported to
<out>/best; <out>/report.md compares all trials. With --ood DIR the exported model's input gate is then
trained on its final network (model/training/gate_fit.py) and saved in the same artifact.

Several machines sharing one --out folder (and, ideally, --cache): start the chief first, then workers:
  python -m tuning ... --out /shared/runs/NAME --chief 0.0.0.0:8000
  python -m tuning ... --out /shared/runs/NAME --worker CHIEF_HOST:8000 --worker-id gpu1
The chief hands out trials and exports once all are done; workers run trials and exit.

The flags and the folders they name are checked before TensorFlow starts and before anything is written: a mistake
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from model.commands.cli import (
    Parser,
    UsageError,
    add_config_arguments,
    add_data_arguments,
    add_fine_tune_arguments,
    cache_from_args,
    check_inputs,
    config_from_args,
    corrections_meta,
    log,
    precision_from_args,
    reference_from_args,
    run,
    setup_logging,
    split_from_args,
    start_tensorflow,
)
from model.config import PREPROCESSING, fields_of
from model.data import scan_folder
from tuning.options import OBJECTIVES, TUNER_NAMES
from tuning.recipe import RecipeError, expand, write_recipe
from tuning.report import write_search_report
from tuning.space import SEED_POINT, SPACE, LogRange, narrow

RESTART = "restart"
SETTINGS_FILE = "search.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m tuning", description=__doc__, allow_abbrev=False)
    add_data_arguments(parser)
    search_group = parser.add_argument_group("search")
    search_group.add_argument("--out", type=Path, default=Path("runs/tuning"), help="project, artifact and report folder")
    search_group.add_argument("--tuner", choices=TUNER_NAMES, default="bayesian")
    search_group.add_argument("--objective", choices=OBJECTIVES, default="external_auc",
                              help="what chooses the trial and its epoch (default %(default)s, which needs --external): "
                                   "AUC on an external folder, cross-validated AUC on the training part, or a "
                                   "validation metric (loss is minimised, the others maximised); see the README for why")
    search_group.add_argument("--external", type=Path, default=None, metavar="DIR",
                              help="labelled folder from other hospitals: chooses and reports, never trained on")
    search_group.add_argument("--max-trials", type=int, default=20,
                              help="trials in all, counting earlier runs (Hyperband sets its own number)")
    search_group.add_argument("--space", nargs="+", default=[], metavar="NAME=VALUES",
                              help="narrow the space, e.g. epochs=5,10 optimizer=sgd,adam learning_rate=1e-3:1e-1; "
                                   f"names: {', '.join(SPACE)}")
    search_group.add_argument("--export", type=Path, default=None, metavar="DIR",
                              help="where the best trial's artifact goes (default OUT/best); "
                                   "model/artifacts/default makes it the app's model")
    search_group.add_argument("--ood", type=Path, default=None, metavar="DIR",
                              help="out-of-scope folder (MANIFEST.csv: file, kind): train the exported model's input "
                                   "gate on it, last (see python -m model.train_gate)")
    search_group.add_argument("--recipe", type=Path, default=None, metavar="DIR",
                              help="start from the flags that made the model exported to DIR (its recipe.json): "
                                   "the same data, preprocessing, gate and operating point; flags given here override")
    search_group.add_argument("--overwrite", action="store_true", help="delete the project in --out and start over")
    search_group.add_argument("--restart-growth", type=float, default=0.1, metavar="FRACTION",
                              help="continue in a fresh process once resident memory exceeds that after this process's "
                                   "first trial by this fraction, giving back what Keras keeps per trial "
                                   "(0: never; default %(default)s)")
    add_config_arguments(parser.add_argument_group("where the network looks (the same for every trial)"),
                         PREPROCESSING, exclude=SPACE)
    add_fine_tune_arguments(parser)
    distributed = parser.add_argument_group("several machines (Keras Tuner's distributed mode)")
    distributed.add_argument("--chief", metavar="HOST:PORT", help="serve the search on this address, export at the end")
    distributed.add_argument("--worker", metavar="HOST:PORT", help="run trials for the chief at this address")
    distributed.add_argument("--worker-id", help="this worker's name, unique; reuse it to resume its trial after a crash")
    try:
        argv = expand(sys.argv[1:] if argv is None else argv)
    except RecipeError as error:
        parser.error(str(error))
    args = parser.parse_args(argv)
    args.argv = argv
    if args.max_trials < 1 or args.restart_growth < 0:
        parser.error("--max-trials must be at least 1, --restart-growth at least 0")
    args.export = args.export or args.out / "best"
    try:
        args.space = narrow(SPACE, args.space)
    except ValueError as error:
        parser.error(str(error))
    return args


def settings(args: argparse.Namespace) -> dict:
    """What fixes a search: changing any of it makes the stored trials incomparable."""
    space = {k: [v.low, v.high] if isinstance(v, LogRange) else list(v) for k, v in args.space.items()}
    return {
        "data": str(args.data.resolve()), "positive": args.positive, "feedback": str(args.feedback),
        "val_fraction": args.val_fraction, "test_fraction": args.test_fraction, "seed": args.seed,
        "views": args.views, "weights": args.weights, "size": args.size,
        "extra_train": str(args.extra_train), "extra_limit": args.extra_limit,
        **({"extra_split": [str(f.resolve()) for f in args.extra_split]} if args.extra_split else {}),
        **{knob.name: str(getattr(args, knob.name)) for knob in fields_of(PREPROCESSING)
           if knob.name not in SPACE and getattr(args, knob.name) != knob.default},
        "external": str(args.external.resolve()) if args.external else None,
        "target_sensitivity": args.target_sensitivity,
        "tuner": args.tuner, "objective": args.objective, "space": space,
    }


def check_settings(out: Path, current: dict, overwrite: bool) -> None:
    """Refuse to resume a project made with other settings; record them for the next run."""
    path = out / SETTINGS_FILE
    if path.is_file() and not overwrite:
        stored = json.loads(path.read_text())
        changed = [k for k in current if stored.get(k) != current[k]]
        if changed:
            raise UsageError(f"{out} holds a search made with other {', '.join(changed)}; "
                             "rerun with the same settings to resume, or use --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")


def main(argv: list[str] | None = None) -> str | None:
    """Run the search and export its best trial; returns RESTART when this process should make way for a fresh one."""
    setup_logging()
    args = parse_args(argv)
    check_inputs(args)
    if args.objective == "external_auc" and args.external is None:
        raise UsageError("--objective external_auc needs --external DIR (or choose --objective cv_auc or val_auc)")
    start_tensorflow(args.verbose)
    from model.training.gate_fit import gate_artifact
    from tuning.bank import FeatureBank
    from tuning.search import EXPORT_FILE, RestartNeeded, finish_search, make_tuner, search, set_role, trial_records

    try:
        args.role = set_role(args.chief, args.worker, args.worker_id)
    except ValueError as error:
        raise UsageError(str(error)) from None
    start = time.time()
    if args.role != "worker":
        check_settings(args.out, settings(args), args.overwrite)
        if args.overwrite:
            (args.out / EXPORT_FILE).unlink(missing_ok=True)
    base_config = config_from_args(args)
    external = scan_folder(args.external, positive=args.positive) if args.external else []
    split = split_from_args(args, external)
    bank = FeatureBank(split, args.views, cache_from_args(args), external, precision_from_args(args),
                       reference_from_args(args, split))
    tuner = make_tuner(args.tuner, bank, base_config, args.out, args.objective,
                       args.max_trials, args.space, args.overwrite and args.role != "worker", args.restart_growth)
    try:
        ran = search(tuner)
    except RestartNeeded as reason:
        log.info("%s; continuing in a fresh process", reason)
        return RESTART
    except KeyboardInterrupt:
        log.error("interrupted: the project in %s keeps every finished trial; "
                  "rerun the same command to resume (an unfinished trial is run again)", args.out)
        raise
    if args.role == "worker":
        log.info("worker done: ran %d trials", ran)
        return
    records = trial_records(tuner)
    log.info("ran %d trials in this run; %d recorded in %s", ran, len(records), args.out / "search")

    def gate(export: Path) -> str:
        """Train the exported model's input gate on --ood; returns its version."""
        return gate_artifact(export, split, args.ood, args.external, args.positive, cache_from_args(args),
                             precision_from_args(args))["version"]

    chosen, done = finish_search(
        tuner, records, bank, base_config, args.out, args.export,
        {"target_sensitivity": args.target_sensitivity, "operating_point": args.operating_point,
         "reference_normals": str(args.reference_normals.resolve()) if args.reference_normals else None,
         "ood": str(args.ood) if args.ood else None},
        meta={"command": "python -m tuning", "data": str(args.data), "tuner": args.tuner,
              "objective": args.objective, **corrections_meta(split)},
        gate=gate if args.ood else None,
    )
    meta = {"tuner": args.tuner, "objective": f"{args.objective} ({OBJECTIVES[args.objective]})", "data": args.data,
            "input size": args.size, "base weights": args.weights, "seed": args.seed,
            "artifact": args.export / "model.keras",
            "exported trial": f"{chosen[0]}: {chosen[1]}",
            "exported configuration": json.dumps(done.get("config")),
            **corrections_meta(split)}
    write_recipe(args.export, args.argv)
    paths = write_search_report(args.out, records, args.objective, OBJECTIVES[args.objective], SEED_POINT, meta,
                                done.get("test"), exported=chosen)
    log.info("wrote %s in %.0f s", paths["markdown"], time.time() - start)
    return None


def restart() -> None:
    """Replace this process by the same command, which resumes the project (without starting it over again)."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [arg for arg in sys.argv[1:] if arg != "--overwrite"]
    os.execv(sys.executable, [sys.executable, "-m", "tuning", *argv])


def command(argv: list[str] | None = None) -> int | None:
    """main, then a restart in a fresh process when main asks for one."""
    if main(argv) == RESTART:
        restart()
    return None


if __name__ == "__main__":
    sys.exit(run(command))
