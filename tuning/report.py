"""The search report: every trial, the best one, optimizer x learning rate, curves of the best trials (Markdown + PNG)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from model.markdown import fmt, table

CURVE_METRICS = ("loss", "auc")


@dataclass
class TrialRecord:
    """One trial as the report needs it; score is None for a trial that did not finish or diverged."""

    trial_id: str
    status: str
    values: dict
    score: float | None
    best_epoch: int | None = None
    seconds: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    at_best: dict[str, float] = field(default_factory=dict)


def ranked(records: list[TrialRecord], direction: str) -> list[TrialRecord]:
    """Scored trials, best first."""
    scored = [r for r in records if r.score is not None]
    return sorted(scored, key=lambda r: -r.score if direction == "max" else r.score)


def _fmt(value) -> str:
    return fmt(value, ".4g")


def plot_optimizer_lr(records: list[TrialRecord], objective: str, seed_point: dict, path: Path) -> None:
    """Objective against learning rate (log scale), one colour per optimizer; the seed's setting ringed."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    scored = [r for r in records if r.score is not None and "learning_rate" in r.values]
    for optimizer in sorted({r.values.get("optimizer") for r in scored}, key=str):
        mine = [r for r in scored if r.values.get("optimizer") == optimizer]
        ax.scatter([r.values["learning_rate"] for r in mine], [r.score for r in mine], label=str(optimizer), alpha=0.8)
    seed_runs = [r for r in scored if all(r.values.get(k) == v for k, v in seed_point.items() if k in r.values)]
    if seed_runs:
        ax.scatter([r.values["learning_rate"] for r in seed_runs], [r.score for r in seed_runs], s=160,
                   facecolors="none", edgecolors="black", label="seed's setting")
    ax.set(xscale="log", xlabel="learning rate", ylabel=objective, title=f"{objective} by optimizer and learning rate")
    if scored:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_best_curves(best: list[TrialRecord], path: Path) -> None:
    """Training (dashed) and validation (solid) loss and AUC per epoch of the best trials."""
    fig = Figure(figsize=(6 * len(CURVE_METRICS), 4))
    for ax, metric in zip(fig.subplots(1, len(CURVE_METRICS)), CURVE_METRICS):
        for record in best:
            if f"val_{metric}" not in record.history:
                continue
            (line,) = ax.plot(np.arange(1, len(record.history[f"val_{metric}"]) + 1), record.history[f"val_{metric}"],
                              label=f"trial {record.trial_id} validation")
            if metric in record.history:
                ax.plot(np.arange(1, len(record.history[metric]) + 1), record.history[metric], linestyle="--",
                        color=line.get_color(), label=f"trial {record.trial_id} training")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _optimizer_table(records: list[TrialRecord], direction: str) -> list[str]:
    pick = max if direction == "max" else min
    rows = []
    for optimizer in sorted({r.values.get("optimizer") for r in records if r.score is not None}, key=str):
        mine = ranked([r for r in records if r.values.get("optimizer") == optimizer], direction)
        scores = [r.score for r in mine]
        rows.append([optimizer, len(mine), pick(scores), statistics.median(scores), mine[0].values.get("learning_rate")])
    return table(["optimizer", "trials", "best", "median", "learning rate of the best"], rows, ".4g")


def _trial_table(records: list[TrialRecord], objective: str) -> list[str]:
    names = list(dict.fromkeys(name for r in records for name in r.values))
    rows = [[r.trial_id, r.status, r.score, r.best_epoch, r.seconds, *_generalization(r),
             *(r.values.get(name) for name in names)] for r in records]
    header = ["trial", "status", objective, "best epoch", "seconds", "val AUC", "external AUC [95% CI]", "gap"]
    return table([*header, *names], rows, ".4g")


def _generalization(r: TrialRecord) -> list:
    """Validation AUC, external AUC with interval, and their gap (validation minus external) at the best epoch."""
    val, ext = r.at_best.get("val_auc"), r.at_best.get("external_auc")
    interval = (f"{ext:.3f} [{r.at_best.get('external_auc_low', float('nan')):.3f}, "
                f"{r.at_best.get('external_auc_high', float('nan')):.3f}]") if ext is not None else None
    return [val, interval, val - ext if val is not None and ext is not None else None]


def write_search_report(
    out_dir: Path,
    records: list[TrialRecord],
    objective: str,
    direction: str,
    seed_point: dict,
    meta: dict | None = None,
    test_metrics: dict | None = None,
    top: int = 3,
    exported: tuple[str, str] | None = None,
) -> dict[str, Path]:
    """Write report.md, trials.json, optimizer_lr.png and curves.png to out_dir; return their paths.

    `exported` is (trial id, why it was chosen); without it the best trial by the objective is shown.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best = ranked(records, direction)
    paths = {"optimizer_lr": out / "optimizer_lr.png", "curves": out / "curves.png",
             "json": out / "trials.json", "markdown": out / "report.md"}
    plot_optimizer_lr(records, objective, seed_point, paths["optimizer_lr"])
    plot_best_curves(best[:top], paths["curves"])
    paths["json"].write_text(json.dumps([asdict(r) for r in records], indent=1, default=float))

    finished = [r.seconds for r in records if r.seconds is not None]
    settings = [*(meta or {}).items(), ("trials", f"{len(records)} recorded, {len(best)} scored"),
                ("time in trials", f"{sum(finished):.0f} s (mean {statistics.fmean(finished) if finished else 0:.1f} s)")]
    lines = ["# Hyperparameter search", "", *table(["setting", "value"], settings), ""]
    lines += ["## Exported trial", ""]
    if best:
        winner = next((r for r in records if exported and r.trial_id == exported[0]), best[0])
        why = exported[1] if exported else f"the best {objective}"
        lines += [f"Trial {winner.trial_id}: {objective} = {_fmt(winner.score)} at epoch {winner.best_epoch} "
                  f"({direction}imised), chosen as {why}.", ""]
        lines += table(["hyperparameter", "value"], winner.values.items(), ".4g") + [""]
    else:
        lines += ["No trial has a score yet.", ""]
    if test_metrics:
        lines += ["Its artifact, evaluated once on the untouched test patients (details in report.md beside the artifact):",
                  "", *table(["metric", "value"], test_metrics.items(), ".4g"), ""]
    lines += ["## Effect of optimizer and learning rate", "", "![optimizer and learning rate](optimizer_lr.png)", ""]
    lines += _optimizer_table(records, direction) + [""]
    lines += [f"## Loss and AUC of the {min(top, len(best))} best trials", "", "![curves](curves.png)", ""]
    lines += ["## All trials", ""] + _trial_table(records, objective) + [""]
    paths["markdown"].write_text("\n".join(lines))
    return paths
