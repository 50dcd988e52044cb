"""ASHA on the trainer's step, with a settle window after each of a trial's own intro events.

All trials of a curriculum family share their first steps; right after an auxiliary loss switches on,
token accuracy dips by a few percent and recovers (the seeds expect 2-3%). A trial measured inside that
dip would be judged on a transient. So a rung whose measurement step falls within ``settle_steps`` after
one of the trial's intro events (``curriculum/*_intro_step`` in its row; -1 when none yet, which also
covers accuracy gates that open mid-run) is skipped for that trial: its value is not recorded there and
it is judged at its next rung instead.

Everything else is Ray's ``AsyncHyperBandScheduler``: the same rungs (``grace_period * rf**k``), the
same cutoff (the ``1 - 1/rf`` quantile of the values recorded at the rung), the same brackets. Two
deliberate differences: a trial is judged at the highest rung it has reached and lower rungs it skipped
past are not revisited, and a metric that does not exist (NaN, ``names.MISSING``, absent: steps to 90%
not reached yet) counts as the worst value for the mode instead of slipping through (``nan < cutoff``
is false) or winning (-1 is the best steps to 90% under ``mode: min``). Cut-offs are quantiles of the
finite values only: a quantile over -inf is NaN, and NaN stops no one. Every early stop is written to a
``StopLog`` shared with the searcher (which tells Optuna PRUNED) and with the experiment's ``trials.json``.

Ray's ``Tuner.restore`` does not restore a scheduler's state (ray-project/ray#30838): after ``--resume``
every rung would be empty and ASHA would judge the rest of the search against nothing. With ``persist``,
the rung records, each trial's bracket and the stop log are written atomically to
``<experiment>/scheduler-state.json`` whenever they change, and read back when the restored search adds
its first trial. A stop is written there before the trial is asked to stop (its STOP file), so a driver
killed in between cannot leave a trial that ended itself on a STOP file that no record explains.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from model import names

log = logging.getLogger(__name__)


STOP_FILE = "STOP"  # in a trial's directory: the scheduler asks the trial to end itself
STATE_FILE = "scheduler-state.json"  # in the experiment directory: rungs, brackets and stops (persist=True)


def write_stop_file(trial, step: int) -> bool:
    """Ask a trial to stop itself at its next evaluation, by a file in its directory on local or shared
    storage. Returns False where the trial directory is not a mounted file system."""
    try:
        import pyarrow.fs

        if not isinstance(trial.storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return False
        path = Path(trial.path) / STOP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"stopped_at_step": int(step), "by": "asha"}) + "\n")
        return True
    except (OSError, AttributeError) as err:
        log.warning("could not ask trial %s to stop itself (%s); Ray stops it", trial.trial_id, err)
        return False


def stop_requested(trial_dir: Path, step: int) -> bool:
    """Whether a trial at ``step`` should end itself: its STOP file asks it to stop at that step or earlier.
    A trial restored from a checkpoint before the step it was stopped at trains up to that step, as it did
    before the driver died; an unreadable STOP file counts as a stop now."""
    path = Path(trial_dir) / STOP_FILE
    if not path.is_file():
        return False
    try:
        return int(step) >= int(json.loads(path.read_text())["stopped_at_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _experiment_file(trial) -> Path | None:
    """``<experiment>/scheduler-state.json`` where the experiment is on a mounted file system, else None."""
    try:
        import pyarrow.fs

        if isinstance(trial.storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return Path(trial.storage.experiment_fs_path) / STATE_FILE
    except AttributeError:
        pass
    log.warning("scheduler: the experiment is not on a mounted file system; its state is not kept for --resume")
    return None


def metric_value(result: dict, metric: str) -> float | None:
    """The metric as a float, or None where it does not exist: absent, not a number, NaN or infinite, or
    ``names.MISSING`` (how the trainer reports "no value": steps to 90% not reached, a loss not on yet)."""
    value = result.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value != names.MISSING else None


class StopLog:
    """Trials that the scheduler stopped early: trial id -> the step it was stopped at.

    One instance is shared by the scheduler, the searcher and the callbacks of a search; they are
    pickled together (Tuner's ``tuner.pkl``), so sharing survives ``--resume``.
    """

    def __init__(self) -> None:
        self.stopped: dict[str, int] = {}

    def record(self, trial_id: str, step: int) -> None:
        self.stopped[trial_id] = int(step)

    def update(self, other: dict[str, int]) -> None:
        self.stopped.update(other)

    def __contains__(self, trial_id: str) -> bool:
        return trial_id in self.stopped

    def step(self, trial_id: str) -> int | None:
        return self.stopped.get(trial_id)

    def forget(self, trial_ids: Iterable[str]) -> None:
        for trial_id in trial_ids:
            self.stopped.pop(trial_id, None)


class SettleBracket:
    """One ASHA bracket: rungs at ``min_t * rf ** (k + s)`` below ``max_t``, with settle windows."""

    def __init__(self, min_t: int, max_t: int, reduction_factor: float, s: int, settle_steps: int) -> None:
        self.rf = reduction_factor
        count = int(math.log(max_t / min_t) / math.log(reduction_factor) - s + 1)
        self.milestones = [min_t * reduction_factor ** (k + s) for k in range(max(0, count))]
        self.recorded: dict[float, dict[str, float]] = {m: {} for m in self.milestones}
        self.passed: dict[str, set[float]] = {}
        self.skipped: dict[str, list[float]] = {}
        self.settle_steps = settle_steps
        self.changed = False  # set when a rung is passed; the scheduler persists and clears it

    @property
    def _rungs(self) -> list[float]:  # what AsyncHyperBandScheduler.on_trial_add sizes brackets by
        return self.milestones

    def cutoff(self, milestone: float) -> float | None:
        """The ``1 - 1/rf`` quantile of the finite rewards recorded at the rung; None when there are none."""
        values = [v for v in self.recorded[milestone].values() if math.isfinite(v)]
        return float(np.percentile(values, (1 - 1 / self.rf) * 100)) if values else None

    def settling(self, step: float, events: Iterable[float]) -> bool:
        return any(e <= step < e + self.settle_steps for e in events)

    def on_result(self, trial_id: str, step: float, reward: float, events: Iterable[float]) -> str:
        """Judge the trial at the highest rung it has reached and not yet passed; CONTINUE or STOP."""
        done = self.passed.setdefault(trial_id, set())
        reached = [m for m in self.milestones if m <= step and m not in done]
        if not reached:
            return TrialScheduler.CONTINUE
        milestone = max(reached)
        done.update(reached)
        self.changed = True
        if self.settle_steps and self.settling(step, events):
            self.skipped.setdefault(trial_id, []).append(milestone)
            log.info("trial %s: rung %g skipped at step %g, inside the settle window after an intro at %s",
                     trial_id, milestone, step, ", ".join(f"{e:g}" for e in events))
            return TrialScheduler.CONTINUE
        cutoff = self.cutoff(milestone)
        self.recorded[milestone][trial_id] = reward
        if cutoff is not None and reward < cutoff:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_str(self) -> str:
        return "Bracket: " + " | ".join(f"Iter {m:g}: {self.cutoff(m)}" for m in self.milestones)

    def state(self) -> dict:
        """JSON-ready: rungs as a list (their float milestones are no JSON keys), -inf kept as -Infinity."""
        return {"recorded": [[m, self.recorded[m]] for m in self.milestones],
                "passed": {t: sorted(p) for t, p in self.passed.items()}, "skipped": self.skipped}

    def load(self, state: dict) -> None:
        for milestone, values in state["recorded"]:
            rung = min(self.milestones, key=lambda m: abs(m - milestone))
            self.recorded[rung].update({t: float(v) for t, v in values.items()})
        self.passed.update({t: set(p) for t, p in state["passed"].items()})
        self.skipped.update(state["skipped"])

    def forget(self, trial_ids: set[str]) -> None:
        for rung in self.recorded.values():
            for t in trial_ids & rung.keys():
                del rung[t]
        for t in trial_ids:
            self.passed.pop(t, None)
            self.skipped.pop(t, None)


class SettleASHA(AsyncHyperBandScheduler):
    """``AsyncHyperBandScheduler`` on ``time_attr`` (the trainer's step) with settle windows after intros."""

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float = 2,
                 brackets: int = 1, settle_steps: int = 0, time_attr: str = names.STEP,
                 intro_keys: tuple[str, ...] = tuple(names.INTRO_STEP_NAMES.values()),
                 stop_log: StopLog | None = None, stop_at_max_t: bool = True,
                 request_stop: Callable[[object, int], bool] | None = None, persist: bool = False) -> None:
        if settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {settle_steps}")
        super().__init__(time_attr=time_attr, metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=brackets)
        self._brackets = [SettleBracket(grace_period, max_t, reduction_factor, s, settle_steps)
                          for s in range(brackets)]
        self._intro_keys = intro_keys
        self.settle_steps = settle_steps
        self.stop_log = stop_log if stop_log is not None else StopLog()
        self.stop_at_max_t = stop_at_max_t  # False: trials end themselves at max_t (and close their logs)
        self.request_stop = request_stop  # cooperative stops: the trial ends itself at once (see below)
        self.persist = persist
        self._state_path: Path | None = None  # found from the first trial's storage (the experiment may move)
        self._trial_bracket: dict[str, int] = {}
        self._loaded: set[str] = set()  # trial ids read from the state file, until the restored run is known

    def _reward(self, result: dict) -> float:
        """The metric signed so that higher is better; -inf (worst for either mode) where it does not exist."""
        return self._metric_op * value if (value := metric_value(result, self._metric)) is not None else -math.inf

    def _events(self, result: dict) -> list[float]:
        return [float(result[k]) for k in self._intro_keys if isinstance(result.get(k), (int, float)) and result[k] >= 0]

    def on_trial_add(self, tune_controller, trial) -> None:
        if self.persist and self._state_path is None:
            self._state_path = _experiment_file(trial)
            if self._state_path is not None and self._state_path.is_file():
                self._load(self._state_path)
        if trial.trial_id in self._trial_bracket:  # a restored trial keeps its bracket
            self._trial_info[trial.trial_id] = self._brackets[self._trial_bracket[trial.trial_id]]
            return
        super().on_trial_add(tune_controller, trial)
        self._trial_bracket[trial.trial_id] = self._brackets.index(self._trial_info[trial.trial_id])

    def choose_trial_to_run(self, tune_controller):
        if self._loaded:  # the restored run has re-added all its trials by now
            self._forget_lost({t.trial_id for t in tune_controller.get_trials()})
        return super().choose_trial_to_run(tune_controller)

    def _forget_lost(self, known: set[str]) -> None:
        """Drop what the state file holds of trials that the restored experiment does not know: trials
        started after Ray's last snapshot, lost with the killed driver and run again under new ids. Their
        values left in the rungs would count twice."""
        lost = self._loaded - known
        self._loaded = set()
        if lost:
            for bracket in self._brackets:
                bracket.forget(lost)
            self.stop_log.forget(lost)
            for t in lost:
                self._trial_bracket.pop(t, None)
            log.info("scheduler: forgot %d trial(s) lost with the killed driver", len(lost))
            self._save()

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            for bracket, saved in zip(self._brackets, state["brackets"]):
                bracket.load(saved)
            self._trial_bracket.update(state["trial_bracket"])
            self.stop_log.update(state["stopped"])
            self._num_stopped = int(state["num_stopped"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("scheduler: cannot read %s (%s); ASHA starts again with empty rungs", path, err)
            return
        self._loaded = set(self._trial_bracket) | set(state["stopped"])
        recorded = sum(len(r) for b in self._brackets for r in b.recorded.values())
        log.info("scheduler: restored %d rung record(s) and %d stop(s) from %s", recorded,
                 len(state["stopped"]), path)

    def _save(self) -> None:
        """Write the state atomically; a lagging file is warned about, never fatal to the search."""
        for bracket in self._brackets:
            bracket.changed = False
        if self._state_path is None:
            return
        state = {"brackets": [b.state() for b in self._brackets], "trial_bracket": self._trial_bracket,
                 "stopped": self.stop_log.stopped, "num_stopped": self._num_stopped}
        tmp = self._state_path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(state) + "\n")
            os.replace(tmp, self._state_path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.warning("scheduler: could not write %s (%s)", self._state_path, err)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._loaded:
            self._forget_lost({t.trial_id for t in tune_controller.get_trials()})
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        step = result[self._time_attr]
        if trial.trial_id in self.stop_log:  # asked to stop itself and still reporting: stop it here
            return TrialScheduler.STOP
        if step >= self._max_t:  # the natural end of a trial, not an early stop
            return TrialScheduler.STOP if self.stop_at_max_t else TrialScheduler.CONTINUE
        bracket = self._trial_info[trial.trial_id]
        action = bracket.on_result(trial.trial_id, step, self._reward(result), self._events(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
            self.stop_log.record(trial.trial_id, step)
            self._save()  # the record first, then the STOP file: a stop is never unexplained
            value = metric_value(result, self._metric)
            log.info("trial %s stopped by ASHA at step %d (%s %s)", trial.trial_id, step, self._metric,
                     "missing" if value is None else f"{value:.4g}")
            # A function trainable that Ray stops dies inside tune.report: the trainer writes no summary
            # and its W&B run is cut off. Asked instead, it ends itself right after this report.
            if self.request_stop is not None and self.request_stop(trial, step):
                return TrialScheduler.CONTINUE
        elif bracket.changed:
            self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is None or self._time_attr not in result:
            return
        bracket.on_result(trial.trial_id, result[self._time_attr], self._reward(result), self._events(result))
        if bracket.changed:
            self._save()

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"Using SettleASHA (settle {self.settle_steps} steps): num_stopped={self._num_stopped}\n" + "\n".join(
            b.debug_str() for b in self._brackets)
