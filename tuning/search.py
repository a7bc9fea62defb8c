"""Run a Keras Tuner search over the head: tuner and objective, resuming, progress, distributed roles, the result;
then what the tuner owns (finish_search): choosing the trial, exporting it once, pruning the others' weights.

The project lives in <out>/search; Keras Tuner reloads it when it exists (overwrite=False), so a rerun
continues where the last one stopped and repeats no finished trial. Each trial builds its head after
keras.backend.clear_session() (Keras Tuner's Tuner._try_build); what Keras keeps per trial all the same is
given back by ending the process when memory has grown too much, and the CLI then restarts (see TrialLog).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import keras_tuner
import numpy as np
import psutil

from model.architecture import build_config_base
from model.config import FINE_TUNE, UNSEEN_SOURCES, ModelConfig, fields_of
from model.markdown import fmt
from model.training.export import finish
from model.training.finetune import fine_tune, featurize_tuned
from tuning.bank import FeatureBank
from tuning.hypermodel import HeadHyperModel
from tuning.objectives import collection_auc
from tuning.options import OBJECTIVES, TUNER_NAMES
from tuning.report import TrialRecord
from tuning.space import SPACE, Spec, config_of

TUNERS = dict(zip(TUNER_NAMES, (keras_tuner.RandomSearch, keras_tuner.BayesianOptimization, keras_tuner.Hyperband,
                                keras_tuner.GridSearch), strict=True))
"""The Keras Tuner class of each name the command line offers (TUNER_NAMES, in its order)."""
PROJECT = "search"
HISTORY_FILE = "history.json"
AT_BEST = ("val_auc", "external_auc", "external_auc_low", "external_auc_high", "cv_auc")
ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
log = logging.getLogger(__name__)


def eta(seconds: float) -> str:
    return "unknown" if not math.isfinite(seconds) else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def objective(name: str) -> keras_tuner.Objective:
    """The objective with its direction spelled out (Keras Tuner would minimise a name it does not know)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")
    return keras_tuner.Objective(name, direction=OBJECTIVES[name])


def resident_mib() -> float:
    """This process's resident memory in MiB: the figure TrialLog's restart rule reads (tests replace it)."""
    return psutil.Process().memory_info().rss / 2**20


class RestartNeeded(Exception):
    """Memory grew past the allowance since this process's first trial; a fresh process resumes the project."""


class TrialLog:
    """Tuner mixin: keeps each trial's epoch history and time in its folder, prints one line per finished trial,
    and ends the search with RestartNeeded once resident memory exceeds that after this process's first trial
    by more than the fraction `restart_growth` (0: never).

    Keras 3 on TensorFlow keeps about one copy of every fitted model's weights (its optimizer's traced update
    holds them) even after keras.backend.clear_session() (keras-team/keras#20245, keras-team/tf-keras#286), so a
    long search in one process grows by that much per trial; only the end of the process gives it back.
    """

    restart_growth = 0.0

    def on_search_begin(self):
        super().on_search_begin()
        self.session_seconds = []

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self.trial_start = time.monotonic()

    def run_trial(self, trial, *args, **kwargs):
        histories = super().run_trial(trial, *args, **kwargs)
        record = {"seconds": time.monotonic() - self.trial_start, "history": histories[0].history}
        Path(self.get_trial_dir(trial.trial_id), HISTORY_FILE).write_text(json.dumps(record, default=float))
        return histories

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        seconds = time.monotonic() - self.trial_start
        self.session_seconds.append(seconds)
        name = self.oracle.objective.name
        ended = self.oracle.get_trial(trial.trial_id)
        shown = " ".join(f"{k}={_short(v)}" for k, v in trial.hyperparameters.values.items())
        line = f"trial {trial.trial_id} {ended.status.lower()} in {seconds:.1f} s: {name}={_short(ended.score)} | {shown}"
        if ended.message:
            line += f" | {ended.message.strip().splitlines()[-1]}"
        best = self.oracle.get_best_trials(1)
        if best:
            line += f" | best {name}={_short(best[0].score)} (trial {best[0].trial_id})"
        total = self.oracle.max_trials
        if total:
            left = max(0, total - int(trial.trial_id) - 1)
            line += f" | {total - left}/{total} trials, about {eta(left * statistics.fmean(self.session_seconds))} left"
        rss = resident_mib()
        log.info("%s | rss %.0f MiB", line, rss)
        self.first_rss = getattr(self, "first_rss", rss)
        if self.restart_growth and rss > self.first_rss * (1 + self.restart_growth):
            raise RestartNeeded(f"resident memory grew from {self.first_rss:.0f} to {rss:.0f} MiB in this process")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def set_role(chief: str | None = None, worker: str | None = None, worker_id: str | None = None) -> str:
    """Set Keras Tuner's distributed-mode environment for --chief/--worker HOST:PORT; returns role()."""
    if chief and worker:
        raise ValueError("give --chief or --worker, not both")
    address = chief or worker
    if address:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {address!r}")
        if worker and (not worker_id or "chief" in worker_id):
            raise ValueError("--worker needs --worker-id NAME, unique per worker and without the word 'chief'")
        os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port,
                          KERASTUNER_TUNER_ID="chief" if chief else f"worker-{worker_id}")
    return role()


def role() -> str:
    """chief, worker or single, from the KERASTUNER_* environment (which a cluster launcher may also set)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        raise ValueError(f"distributed mode needs {', '.join(missing)} as well as KERASTUNER_ORACLE_IP")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def make_tuner(
    kind: str,
    bank: FeatureBank,
    base: ModelConfig,
    directory: Path,
    objective_name: str = "val_auc",
    max_trials: int = 20,
    space: dict[str, Spec] = SPACE,
    overwrite: bool = False,
    restart_growth: float = 0.0,
) -> keras_tuner.Tuner:
    """A tuner of `kind` over `space`; Hyperband sets the epochs itself (up to the largest in the space).

    With restart_growth, search() raises RestartNeeded once memory has grown by that fraction (see TrialLog).
    """
    if kind not in TUNERS:
        raise ValueError(f"tuner must be one of {', '.join(TUNERS)}, got {kind!r}")
    if kind == "hyperband":
        options = {"max_epochs": max(space["epochs"]), "factor": 3}
        space = {name: spec for name, spec in space.items() if name != "epochs"}
    else:
        options = {"max_trials": max_trials}
    tuner_class = type(TUNERS[kind].__name__, (TrialLog, TUNERS[kind]), {})
    tuner = tuner_class(
        hypermodel=HeadHyperModel(bank, base, space, objective_name),
        objective=objective(objective_name),
        directory=str(directory),
        project_name=PROJECT,
        overwrite=overwrite,
        seed=base.seed + 1,  # Keras Tuner treats seed 0 as "no seed"
        **options,
    )
    tuner.oracle.verbose = 1 if role() == "chief" else 0
    tuner.restart_growth = restart_growth
    return tuner


def search(tuner: keras_tuner.Tuner) -> int:
    """Run the trials still to do (none when the project is complete); returns how many ran in this process.

    Each trial reads its features from the hypermodel's FeatureBank. Raises RestartNeeded when the tuner's
    memory allowance ends the run early.
    """
    tuner.search()
    return len(getattr(tuner, "session_seconds", []))


def trial_records(tuner: keras_tuner.Tuner) -> list[TrialRecord]:
    """Every trial of the project with its hyperparameters, objective, time and epoch history."""
    records = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        path = Path(tuner.get_trial_dir(trial_id), HISTORY_FILE)
        saved = json.loads(path.read_text()) if path.is_file() else {}
        score = None if trial.score is None or not np.isfinite(trial.score) else float(trial.score)
        history = saved.get("history", {})
        at_best = {k: v[trial.best_step] for k, v in history.items() if score is not None and trial.best_step < len(v)}
        records.append(TrialRecord(
            trial_id=trial_id,
            status=trial.status,
            values=dict(trial.hyperparameters.values),
            score=score,
            best_epoch=best_epoch(trial) if score is not None else None,
            seconds=saved.get("seconds"),
            history=history,
            at_best={k: at_best[k] for k in AT_BEST if k in at_best},
        ))
    return records


def prune_checkpoints(tuner: keras_tuner.Tuner, keep: str) -> int:
    """Delete the saved weights of every trial but `keep`, once the search is over; returns the bytes freed.

    A flatten head at 256 px holds 33 million weights (134 MB), and Keras Tuner saves one per trial.
    """
    freed = 0
    for trial_id in tuner.oracle.trials:
        if trial_id != keep:
            for path in Path(tuner.get_trial_dir(trial_id)).glob("checkpoint*"):
                freed += path.stat().st_size
                path.unlink()
    return freed


def best_epoch(trial) -> int:
    """Epochs the trial's best weights had trained, counting those of the Hyperband trial it continued."""
    return trial.hyperparameters.values.get("tuner/initial_epoch", 0) + trial.best_step + 1


def best_trial(tuner: keras_tuner.Tuner):
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise RuntimeError("no trial has finished yet, so there is nothing to export; run the search first")
    return best[0]


def choose_trial(tuner: keras_tuner.Tuner, records: list[TrialRecord],
                 collection: Callable[[TrialRecord], dict | None] | None = None) -> tuple[str, str]:
    """The trial to export and why: the best by the objective, except under external_auc, where every trial
    whose external AUC interval reaches the best's lower bound is as good as the external folder can tell.
    Among those, `collection(record)` (cross-validated COVID-19-vs-other-pneumonia metrics, see trial_collection)
    breaks the tie where it is defined for all of them, else the validation AUC does."""
    best = best_trial(tuner)
    name = tuner.oracle.objective.name
    if name != "external_auc":
        return best.trial_id, f"the best {name}"
    by_id = {r.trial_id: r for r in records}
    low = by_id[best.trial_id].at_best.get("external_auc_low")
    tied = [r for r in records if r.score is not None and low is not None
            and r.at_best.get("external_auc_high", -1.0) >= low and "val_auc" in r.at_best]
    if len(tied) < 2:
        return best.trial_id, "the best external_auc (no other trial within its interval)"
    why = (f"{len(tied)} trials have external AUC intervals reaching the best's lower bound {low:.3f} (trial "
           f"{best.trial_id}), too few external positives to tell them apart; ")
    within = {r.trial_id: collection(r) for r in tied} if collection else {}
    if within and all(w and w.get("auc") is not None for w in within.values()):
        return _pick_by_collection(tied, within, why)
    pick = max(tied, key=lambda r: (r.at_best["val_auc"], r.score))
    return pick.trial_id, why + (f"trial {pick.trial_id} has the highest validation AUC among them "
                                 f"({pick.at_best['val_auc']:.3f})")


def _pick_by_collection(tied: list[TrialRecord], within: dict[str, dict], why: str) -> tuple[str, str]:
    """The tied trial with the highest within-collection AUC, and how far that signal can be trusted."""
    ranked = sorted(tied, key=lambda r: (within[r.trial_id]["auc"], r.score), reverse=True)
    pick, runner_up = ranked[0], ranked[1]
    chosen, second, last = (within[r.trial_id] for r in (pick, runner_up, ranked[-1]))
    low, high = chosen["auc_ci95"] or (float("nan"), float("nan"))
    noise = ("inside" if low <= second["auc"] <= high else "outside")
    return pick.trial_id, why + (
        f"trial {pick.trial_id} has the highest cross-validated AUC of COVID-19 against other pneumonias within "
        f"the collection that holds both ({chosen['auc']:.3f}, 95% CI [{low:.3f}, {high:.3f}], {chosen['n']} films; "
        f"the tied trials range {last['auc']:.3f}-{chosen['auc']:.3f}; the "
        f"runner-up (trial {runner_up.trial_id}, {second['auc']:.3f}) lies {noise} that interval; its validation "
        f"AUC {pick.at_best['val_auc']:.3f})")


def trial_collection(bank: FeatureBank, base_config: ModelConfig) -> Callable[[TrialRecord], dict | None]:
    """collection_auc for a finished trial: its configuration at its best epoch, on the training and validation
    patients (the test patients stay untouched); logged per trial."""
    def measure(record: TrialRecord) -> dict | None:
        config = replace(config_of(record.values, base_config), epochs=record.best_epoch)
        sets = bank.sets(config)
        within = collection_auc(sets.train + sets.validation, config)
        if within:
            log.info("trial %s: COVID-19 vs other pneumonia within the collection, cross-validated AUC %s %s",
                     record.trial_id, fmt(within["auc"]), fmt(within["auc_ci95"]))
        return within
    return measure


def export_best(
    tuner: keras_tuner.Tuner,
    bank: FeatureBank,
    base_config: ModelConfig,
    out_dir: Path,
    meta: dict | None = None,
    chosen: tuple[str, str] | None = None,
    backup: Path | None = None,
):
    """Export the chosen trial's head (default: the best) at its best epoch; threshold by the config's operating
    point, test once.

    The kept weights were trained on the training split only, so the validation patients stay unseen by
    the weights and can choose the threshold honestly; the test patients were used for nothing before.
    The external folder (when given) chose the trial and is reported at the threshold, never trained on.
    With base_config.fine_tune_epochs, the fine-tuning stage follows the head (resumable from `backup`).
    Returns (artifact path, evaluations, the exported configuration).
    """
    trial_id, why = chosen or (best_trial(tuner).trial_id, "the best objective")
    trial = tuner.oracle.get_trial(trial_id)
    epochs = best_epoch(trial)
    config = replace(config_of(trial.hyperparameters.values, base_config), epochs=epochs)
    head = tuner.load_model(trial)
    base, sets, external = build_config_base(config), bank.sets(config), bank.external(config)
    reference = bank.reference(config)
    path = Path(tuner.get_trial_dir(trial.trial_id), HISTORY_FILE)
    history = json.loads(path.read_text())["history"] if path.is_file() else None
    if config.fine_tune_epochs:
        sets, tuned = fine_tune(base, head, sets, config, backup)
        history = {**(history or {}), **tuned}
        external, reference = (featurize_tuned(base, config, part.examples, sets.validation.precision)
                               if part is not None else None for part in (external, reference))
    notes = (
        f"Keras Tuner search: trial {trial.trial_id}, {tuner.oracle.objective.name} = {trial.score:.4f} at epoch "
        f"{epochs}; weights of that epoch, trained on the training split"
        + (f", then {config.fine_tune_epochs} fine-tuning epochs of {'+'.join(config.fine_tune_blocks)} with the "
           "head" if config.fine_tune_epochs else "")
        + f". Chosen as {why}; {tuner.oracle.objective.name} chose the epoch, "
        + ("source-held-out cross-validation against reference normals" if config.operating_point == UNSEEN_SOURCES
           else "validation patients") + " the threshold; "
        "the test split was evaluated once."
    )
    artifact, evaluations = finish(base, head, config, sets, out_dir, history,
                                   meta={**(meta or {}), "trial": trial.trial_id}, notes=notes, external=external,
                                   reference=reference)
    return artifact, evaluations, config


EXPORT_FILE = "export.json"
TEST_SUMMARY = ("n", "auc", "auc_ci95", "sensitivity", "specificity", "f1", "accuracy", "threshold")


def finish_search(
    tuner: keras_tuner.Tuner,
    records: list[TrialRecord],
    bank: FeatureBank,
    base_config: ModelConfig,
    out: Path,
    export: Path,
    wanted: dict,
    meta: dict | None = None,
    gate: Callable[[Path], str] | None = None,
) -> tuple[tuple[str, str], dict]:
    """After the search, what the tuner owns: choose the trial (from its `records`, see trial_records), export it
    once, keep only its weights.

    The export is recorded in OUT/export.json with `wanted` (the settings that shape it); a rerun with the same
    chosen trial and settings exports nothing again. `gate(export)` trains the exported model's input gate and
    returns its version. Returns (the chosen trial and why, the export record with its test summary)."""
    chosen = choose_trial(tuner, records, trial_collection(bank, base_config))
    log.info("chosen trial %s: %s", *chosen)
    fine_tuning = {knob.name: base_config.to_dict()[knob.name] for knob in fields_of(FINE_TUNE)}
    wanted = {"trial": chosen[0], **fine_tuning, "export": str(export), **wanted}
    record_file = out / EXPORT_FILE
    done = json.loads(record_file.read_text()) if record_file.is_file() else {}
    if {k: done.get(k) for k in wanted} == wanted:
        log.info("best trial %s already exported to %s; nothing to export", chosen[0], export)
    else:
        artifact, evaluations, config = export_best(tuner, bank, base_config, export, meta, chosen,
                                                    out / "fine_tune_backup")
        test = next(e.metrics for e in evaluations if e.name == "test")
        done = {**wanted, "test": {k: test[k] for k in TEST_SUMMARY}, "config": config.to_dict()}
        if gate:
            done["gate"] = gate(export)
        record_file.write_text(json.dumps(done, indent=2, default=float) + "\n")
        log.info("exported trial %s to %s; test: %s", done["trial"], artifact, json.dumps(done["test"], default=float))
    freed = prune_checkpoints(tuner, chosen[0])
    if freed:
        log.info("deleted the saved weights of the other trials (%.1f MiB)", freed / 2**20)
    return chosen, done
