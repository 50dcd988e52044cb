"""Read an experiment directory into frames: one row per trial and one per evaluation.

Reads only what the search wrote (``search.json``, ``trials.json`` and Ray's trial directories with
``params.json`` and ``result.json``): no running Ray, no checkpoints. Works mid-search and on an
interrupted or partly errored experiment: a trial with no results yet is listed with empty metrics,
a line cut short at the end of a ``result.json`` is skipped, and where ``trials.json`` is missing or
stale the status is inferred from the results and the experiment's status.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import names
from model.curriculum import AUX_LOSSES, curriculum_from_dict
from model.errors import InputError

from . import columns as C
from . import stats
from .ranking import group_table, rank, ranking_rule

log = logging.getLogger(__name__)

RAY_KEYS_KEPT = ("training_iteration", "time_total_s", "done")
DIVERGED_KEY = "search/diverged"  # the search's verdict, reported on a diverged trial's rows (search.trials)


@dataclass
class Experiment:
    """Everything the report needs, read from one experiment directory."""

    path: Path
    meta: dict[str, Any]  # search.json (empty when missing)
    trials: pd.DataFrame  # one row per trial, ranked (``rank`` 1 is the best)
    history: pd.DataFrame  # one row per evaluation of every trial
    searched: list[str] = field(default_factory=list)
    metric: str = C.DEFAULT_METRIC  # what the ranking, groups, tests, verdict and plots judge by
    mode: str = "max"

    @property
    def final(self) -> str:
        """The column of the ranking metric's final value."""
        return C.final(self.metric)

    @property
    def rule(self) -> str:
        return ranking_rule(self.metric, self.mode)

    @property
    def replicated(self) -> bool:
        """Whether some curriculum was run with more than one seed (on the main validation data)."""
        return bool(self.replicated_labels())

    def ranked_together(self) -> pd.DataFrame:
        """The trials judged on the experiment's main validation data (all, where none differ)."""
        if C.SAME_VALIDATION not in self.trials:
            return self.trials
        return self.trials[self.trials[C.SAME_VALIDATION].astype(bool)]

    def replicated_labels(self) -> list[str]:
        """Curriculum labels with more than one trial ranked together, in rank order."""
        together = self.ranked_together()
        if not len(together):
            return []
        counts = together[C.LABEL].value_counts()
        return [label for label in dict.fromkeys(together[C.LABEL]) if counts[label] > 1]

    def completed(self) -> pd.DataFrame:
        """Completed trials ranked together, best first."""
        together = self.ranked_together()
        return together[together[C.STATUS] == C.FINISHED_OK]

    def other_validation(self) -> pd.DataFrame:
        """Trials validated on other data than the main one (another fingerprint, or none recorded)."""
        return self.trials.drop(self.ranked_together().index)

    def groups(self) -> pd.DataFrame:
        """Per replicated curriculum: seeds, mean, std and 95% CI of the final metric over completed trials."""
        together = self.ranked_together()
        return group_table(together[together[C.LABEL].isin(self.replicated_labels())], self.metric, self.mode)

    def comparisons(self) -> list[stats.Comparison]:
        """The best replicated curriculum against each other (Welch's t-test on completed seeds)."""
        done = self.completed()
        scale = 100.0 if C.is_fraction(self.metric) else 1.0
        return stats.compare_groups(done[done[C.LABEL].isin(self.replicated_labels())], self.final, C.LABEL,
                                    mode=self.mode, scale=scale)

    def metrics(self) -> list[str]:
        """The numeric metrics this experiment's trials reported (``model.names``' and any others)."""
        return sorted(c for c in self.history.columns if "/" in c and not c.startswith("search/")
                      and pd.to_numeric(self.history[c], errors="coerce").notna().any())


def load(experiment_dir: str | Path, metric: str | None = None, mode: str | None = None) -> pd.DataFrame:
    """One row per trial, ranked; see ``search.report.columns`` for the columns."""
    return load_experiment(experiment_dir, metric, mode).trials


def load_history(experiment_dir: str | Path) -> pd.DataFrame:
    """One row per evaluation of every trial, with ``trial_id`` and ``label``; MISSING (-1) is NaN."""
    return load_experiment(experiment_dir).history


def load_experiment(experiment_dir: str | Path, metric: str | None = None, mode: str | None = None) -> Experiment:
    """Read an experiment; rank by ``metric`` and ``mode`` (default: search.json's, else residue accuracy).

    A ``metric`` that the experiment never reported raises ``InputError`` listing those it has; a
    ``mode`` left out is search.json's for its own metric, else ``columns.default_mode``.
    """
    path = Path(experiment_dir)
    if not path.is_dir():
        raise InputError(path, "experiment_dir", "no such directory; give an experiment directory of search.run")
    trial_dirs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "params.json").is_file())
    meta_file = path / "search.json"
    if not meta_file.is_file() and not trial_dirs:
        raise InputError(path, "search.json", "not an experiment directory: no search.json and no trial "
                                              "directories (with params.json) inside")
    meta = _read_json(meta_file) if meta_file.is_file() else {}
    if mode is not None and mode not in ("max", "min"):
        raise InputError(path, "--mode", f"must be max or min, got {mode!r}")
    asked = metric is not None
    metric = metric or str(meta.get("metric") or C.DEFAULT_METRIC)
    if mode is None:
        mode = str(meta.get("mode", "max")) if metric == meta.get("metric") else C.default_mode(metric)
    entries = _read_json(path / "trials.json") if (path / "trials.json").is_file() else {}
    by_dir = {Path(str(e.get("trial_dir", ""))).name: (tid, e) for tid, e in entries.items() if isinstance(e, dict)}
    rows, histories, seen = [], [], set()
    for trial_dir in trial_dirs:
        tid, entry = by_dir.get(trial_dir.name, (None, None))
        row, history = _read_trial(trial_dir, tid, entry, meta, metric, mode)
        seen.add(row[C.TRIAL_ID])
        rows.append(row)
        histories.append(history)
    for tid, entry in entries.items():  # known to trials.json but no directory yet (pending) or lost
        if tid not in seen and isinstance(entry, dict):
            row, _ = _read_trial(None, tid, entry, meta, metric, mode)
            rows.append(row)
    history = pd.concat([h for h in histories if len(h)], ignore_index=True) if any(len(h) for h in histories) \
        else pd.DataFrame(columns=[C.TRIAL_ID, C.LABEL, names.STEP])
    searched = [str(k) for k in meta.get("searched", []) or []]
    exp = Experiment(path, meta, pd.DataFrame(), history, searched, metric, mode)
    known = exp.metrics() if len(history) else list(C.NAMED_METRICS)  # no results yet: any trainer metric
    if asked and metric not in known:
        raise InputError(path, "--metric", f"{metric!r} is not a metric of this experiment; it has: "
                                           f"{', '.join(known)}")
    if not rows:  # nothing has started: the columns of a trial that has no results, and no rows
        template, _ = _read_trial(None, "?", {}, meta, metric, mode)
        exp.trials = rank(pd.DataFrame([template]), metric, mode).iloc[:0]
    else:
        exp.trials = rank(pd.DataFrame(rows), metric, mode)
    return exp


def _read_trial(trial_dir: Path | None, tid: str | None, entry: dict | None, meta: dict, metric: str,
                mode: str) -> tuple[dict[str, Any], pd.DataFrame]:
    config: dict[str, Any] = {}
    if trial_dir is not None:
        try:
            config = _read_json(trial_dir / "params.json")
        except InputError as err:  # one unreadable trial must not hide the others
            log.warning("%s; listing the trial without its configuration", err)
    results = _read_results(trial_dir / "result.json") if trial_dir else []
    entry = entry or {}
    tid = str(tid or (results[-1].get("trial_id") if results else None) or (trial_dir.name if trial_dir else "?"))
    label = str(config.get("label") or entry.get("label") or tid)
    history = _history(results, tid, label)
    row: dict[str, Any] = {
        C.TRIAL_ID: tid, C.LABEL: label, C.FAMILY: config.get("family", entry.get("family")),
        C.REPLICATE: config.get("replicate"), C.SEED: config.get("seed", entry.get("seed")),
        C.TRIAL_DIR: trial_dir.name if trial_dir else entry.get("trial_dir"),
    }
    row.update(_parameters(config, trial_dir))
    row.update(_metrics(history, metric, mode))
    row[C.FINGERPRINT] = _fingerprint(results, trial_dir)
    row.update(_intros(history, row))
    status, stopped_at = _status(entry, results, meta, trial_dir)
    last_step = row[C.STEPS]
    row[C.REACHED_STEP] = stopped_at if stopped_at is not None else last_step
    row[C.STATUS] = status
    row[C.ERROR] = entry.get("error") or None
    row[C.STATUS_DETAIL] = _detail(status, row[C.REACHED_STEP], row[C.ERROR], meta)
    wall_s = _last(history, "time_total_s")
    if not math.isfinite(wall_s):
        wall_s = _last(history, names.ELAPSED_S)
    resources = meta.get("resources") or {}
    devices = float(resources.get("gpu") or 0) or float(resources.get("cpu") or 1)
    row[C.WALL_H] = wall_s / 3600.0
    row[C.DEVICE_H] = wall_s / 3600.0 * devices
    return row, history


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by an interruption: skip it, keep the rest
            log.warning("%s:%d: not a JSON line, skipped", path, number)
    return [r for r in rows if isinstance(r, dict)]


def _history(results: list[dict[str, Any]], tid: str, label: str) -> pd.DataFrame:
    kept = []
    for r in results:
        row = {k: v for k, v in r.items() if ("/" in k or k in (names.STEP, names.ELAPSED_S, *RAY_KEYS_KEPT))
               and (v is None or isinstance(v, (int, float, bool)))}
        if names.STEP not in row and "training_iteration" in r:
            row[names.STEP] = r["training_iteration"]
        kept.append(row)
    frame = pd.DataFrame(kept)
    if frame.empty:
        return frame
    # The trainable's last report repeats the last evaluation with the trainer's summary: keep one row a step.
    frame = frame.drop_duplicates(subset=names.STEP, keep="last").reset_index(drop=True)
    for column in frame.columns:
        if "/" in column:  # every model.names metric uses -1 for "no value"
            frame[column] = pd.to_numeric(frame[column], errors="coerce").replace(names.MISSING, np.nan)
    frame.insert(0, C.LABEL, label)
    frame.insert(0, C.TRIAL_ID, tid)
    return frame


def _parameters(config: dict, trial_dir: Path | None) -> dict[str, Any]:
    """Readable curriculum parameters (intro steps, weights, ramps, gates) and the searched values."""
    out: dict[str, Any] = {}
    raw = config.get("curriculum")
    if isinstance(raw, dict):
        try:
            curriculum = curriculum_from_dict(raw, (trial_dir or Path("?")) / "params.json")
        except InputError as err:
            log.warning("unreadable curriculum in %s: %s", trial_dir, err)
        else:
            out.update({k: v for k, v in curriculum.params().items() if k != "curriculum"})
            for loss in AUX_LOSSES:  # the stage form: the weight at the intro and at the end
                intro = curriculum.intro_step(loss)
                if getattr(curriculum, loss) is None and intro is not None:
                    out[f"{loss}.start_weight"] = getattr(curriculum.at(intro), f"{loss}_weight")
                    out[f"{loss}.final_weight"] = getattr(curriculum.at(curriculum.total_steps), f"{loss}_weight")
    flat = config.get("params")
    if isinstance(flat, dict):
        out.update(flat)
    return out


# The trainer's own running best, where the history lacks the metric itself (an older result file).
BEST_REPORTED = {names.VAL_ACCURACY: names.BEST_VAL_ACCURACY, names.VAL_RESIDUE_ACCURACY: names.BEST_VAL_RESIDUE_ACCURACY}


def _metrics(h: pd.DataFrame, metric: str, mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {C.final(m): _last(h, m) for m in dict.fromkeys((metric, *C.FINAL_METRICS))}
    values = pd.to_numeric(h[metric], errors="coerce") if metric in h else pd.Series(dtype=float)
    values = values[np.isfinite(values)]
    if len(values):
        best = values.max() if mode == "max" else values.min()
    else:
        best = _last(h, BEST_REPORTED[metric]) if metric in BEST_REPORTED else math.nan
    out[C.best(metric)] = float(best)
    out.update({
        C.NAN_COUNT: _last(h, names.NAN_COUNT), C.SPIKE_COUNT: _last(h, names.SPIKE_COUNT),
        C.STEPS_TO_90: _last(h, names.STEPS_TO_90), C.STEPS: _last(h, names.STEP), C.EVALUATIONS: len(h),
    })
    return out


def _fingerprint(results: list[dict[str, Any]], trial_dir: Path | None) -> str | None:
    """The trial's validation fingerprint: its last reported one, else summary.json's; None when unknown."""
    for row in reversed(results):
        value = row.get(names.VAL_FINGERPRINT)
        if isinstance(value, str) and value:
            return value
    summary = trial_dir / "summary.json" if trial_dir is not None else None
    if summary is not None and summary.is_file():
        try:
            value = json.loads(summary.read_text()).get(names.VAL_FINGERPRINT)
        except (json.JSONDecodeError, AttributeError, OSError):
            return None
        return value if isinstance(value, str) and value else None
    return None


def _intros(h: pd.DataFrame, row: dict) -> dict[str, Any]:
    """Measured intro step of each auxiliary loss, and its gradient strength at the first evaluation after."""
    out: dict[str, Any] = {}
    steps = row.get(C.STEPS)
    reached = steps if isinstance(steps, (int, float)) and math.isfinite(steps) else -math.inf
    for loss in AUX_LOSSES:
        column = names.INTRO_STEP_NAMES[loss]
        if column in h:  # the trainer reports the planned step (or the step a gate opened) on every row
            at = _last(h, column)
        else:  # results without it: the curriculum's fixed intro, if the loss is ever switched on
            planned = row.get(f"{loss}.intro_step")
            weights = [row.get(f"{loss}.{k}") for k in ("start_weight", "final_weight")]
            on = any(isinstance(w, (int, float)) and w > 0 for w in weights)
            at = float(planned) if isinstance(planned, (int, float)) and on else math.nan
        if not at <= reached:  # planned, but the trial stopped before it (NaN stays NaN)
            at = math.nan
        out[C.INTRO_AT[loss]] = at
        ratio_name, cosine_name = names.GRAD_NAMES[loss]
        std_name = f"{ratio_name}_std"  # the ratio's spread over the evaluation's batches, where reported
        ratio = cosine = std = math.nan
        if ratio_name in h and h[ratio_name].notna().any():
            first = h[h[ratio_name].notna()].iloc[0]
            ratio, cosine = float(first[ratio_name]), float(first.get(cosine_name, math.nan))
            std = float(first.get(std_name, math.nan))
        out[C.GRAD_RATIO_AT_INTRO[loss]] = ratio
        out[C.GRAD_RATIO_STD_AT_INTRO[loss]] = std
        out[C.GRAD_COSINE_AT_INTRO[loss]] = cosine
    return out


def _status(entry: dict, results: list[dict], meta: dict, trial_dir: Path | None) -> tuple[str, int | None]:
    """The trial's status and where it stopped, from trials.json, else inferred from its results."""
    status = entry.get("status")
    stopped_at = entry.get("stopped_at_step")
    last = results[-1] if results else {}
    # The trainer's own verdict on its last row outranks an index that calls the trial merely finished.
    if last.get(names.STATUS) == "diverged" or _number(last.get(DIVERGED_KEY)) >= 1:
        return "diverged", stopped_at if stopped_at is not None else last.get(names.STEP)
    if status == "reached_target":
        status = "completed"
    if status in ("completed", "stopped", "diverged", "errored"):
        return status, stopped_at
    # trials.json is missing, or says running/pending: trust the results and the experiment's status.
    running = meta.get("status") == "running"
    if trial_dir is not None and any((trial_dir / f).exists() for f in ("error.txt", "error.pkl")):
        return "errored", stopped_at
    if results and results[-1].get("done"):
        return "completed", None
    if running:
        if status in ("running", "pending"):
            return status, stopped_at
        return ("running" if results else "pending"), stopped_at
    if meta.get("status") == "finished":  # the search ended and this trial did not finish by itself
        return ("stopped" if results else "errored"), stopped_at
    return "interrupted", stopped_at


def _detail(status: str, step: Any, error: str | None, meta: dict) -> str:
    at = f" at step {int(step)}" if isinstance(step, (int, float)) and math.isfinite(step) else ""
    if status == "stopped":
        by = " by ASHA" if meta.get("scheduler", "asha") == "asha" else ""
        return f"stopped{by}{at}"
    if status in ("diverged", "interrupted"):
        return f"{status}{at}"
    if status == "running":
        return f"running{at}"
    if status == "errored" and error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        return f"errored: {first[:80]}"
    return status


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _last(h: pd.DataFrame, column: str) -> float:
    if column not in h:
        return math.nan
    values = pd.to_numeric(h[column], errors="coerce").dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}", f"not valid JSON: {err.msg}") from None
