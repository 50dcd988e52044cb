"""The experiment directory's own files, beside Ray's trial directories (the report reads them).

    <storage>/<name>/search.json   what was searched and how; status running | finished | interrupted
    <storage>/<name>/trials.json   trial id -> trial_dir, label, status, stopped_at_step, error
    <storage>/<name>/<trial dir>/  Ray's: params.json (the trial config), result.json (one row per evaluation)

``trials.json`` is written by ``TrialIndex``, a Tune callback, at every trial start, completion and
error and at the end; statuses are completed | stopped (by ASHA) | diverged | errored | running | pending.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from model import names

from .scheduler import StopLog
from .space import Space
from .trials import DIVERGED_KEY

log = logging.getLogger(__name__)
SEARCH_JSON = "search.json"
TRIALS_JSON = "trials.json"


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so a reader (the report, mid-search) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError:  # a full disk: the previous file stays whole, and no half-written one is left behind
        tmp.unlink(missing_ok=True)
        raise


def search_meta(space: Space, name: str, status: str, started: str, finished: str | None = None) -> dict[str, Any]:
    sc = space.scheduler
    return {
        "name": name,
        "space_file": str(Path(space.file).resolve()),
        "description": space.description,
        "metric": space.metric,
        "mode": space.mode,
        "searched": list(space.params),
        "constraints": [c.text for c in space.constraints],
        "named": list(space.named.curricula),
        "validation": dataclasses.asdict(space.validation),
        "searcher": space.searcher.algorithm,
        "searcher_seed": space.searcher.seed,
        "num_samples": space.searcher.num_samples,
        "num_trials": space.num_trials,
        "seeds": list(space.seeds),
        "replicates": len(space.seeds),
        "max_t": sc.max_t,
        "scheduler": sc.type,
        "grace_period": sc.grace_period,
        "reduction_factor": sc.reduction_factor,
        "settle_steps": sc.settle_steps,
        "max_steps": space.max_steps,
        "eval_interval": space.eval_interval,
        "preset": space.trainer.preset if space.trainer.command is None else None,
        "command": space.trainer.command.command if space.trainer.command is not None else None,
        "resources": {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
        "max_concurrent": space.searcher.max_concurrent,
        "wandb": {"project": space.wandb.project, "mode": space.wandb.mode},
        "status": status,
        "started": started,
        "finished": finished,
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def trial_status(trial: Trial, stop_log: StopLog, finished: bool = False) -> str:
    """completed | stopped | diverged | errored | running | pending, for a trial as Tune holds it."""
    if trial.status == Trial.ERROR:
        return "errored"
    if trial.status == Trial.TERMINATED or finished:
        if trial.trial_id in stop_log:
            return "stopped"
        if (trial.last_result or {}).get(DIVERGED_KEY):
            return "diverged"
        return "completed"
    if trial.status == Trial.PENDING:
        return "pending" if not trial.last_result else "running"
    return "running"


def error_line(trial: Trial) -> str | None:
    """The last line of the trial's error file (the exception), or Tune's error message."""
    path = getattr(trial, "error_file", None)
    try:
        if path and Path(path).is_file():
            lines = [x for x in Path(path).read_text().splitlines() if x.strip()]
            if lines:
                return lines[-1].strip()[:500]
    except OSError:
        pass
    return (getattr(trial, "error_msg", None) or "error")[:500]


class TrialIndex(Callback):
    """Keeps ``<exp>/trials.json`` current: written at every start, completion and error, and at the end."""

    def __init__(self, exp_dir: str | Path, stop_log: StopLog) -> None:
        self.exp_dir, self.stop_log = Path(exp_dir), stop_log
        self.finished: set[str] = set()

    def entries(self, trials: list[Trial]) -> dict[str, dict[str, Any]]:
        out = {}
        for t in trials:
            config = t.config or {}
            status = trial_status(t, self.stop_log, t.trial_id in self.finished)
            out[t.trial_id] = {
                "trial_dir": t.storage.trial_dir_name if t.storage else None,
                "label": config.get("label"),
                "family": config.get("family"),
                "seed": config.get("seed"),
                "status": status,
                "stopped_at_step": self.stop_log.step(t.trial_id) if status == "stopped" else None,
                "last_step": int((t.last_result or {}).get(names.STEP, 0)) or None,
                "error": error_line(t) if status == "errored" else None,
            }
        return out

    def write(self, trials: list[Trial]) -> None:
        try:
            write_json(self.exp_dir / TRIALS_JSON, self.entries(trials))
        except OSError as err:  # an index that lags must never stop the search
            log.warning("could not write %s: %s", self.exp_dir / TRIALS_JSON, err)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.write(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished.add(trial.trial_id)
        self.write(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.write(trials)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.write(trials)

    def on_experiment_end(self, trials, **info):
        self.write(trials)

    def get_state(self) -> dict | None:
        return {"finished": sorted(self.finished)}

    def set_state(self, state: dict) -> None:
        self.finished = set(state.get("finished", []))
