"""A compact live view of a search, in place of Ray's default output.

Every ``interval_s`` seconds, and whenever a trial starts or ends, one table::

    [  2m31s] 12 trials: 2 running, 3 pending, 5 completed, 2 stopped | best 0.842 revised s0
      trial        curriculum                               step  residue acc  status
      5c1d2_00003  revised                                   300       0.8420  completed
      5c1d2_00007  spec@150 w.08-.18 r50 | prec@250 w.02      200       0.7310  stopped@200

Ray calls it as a ``tune.ProgressReporter`` (the legacy output path, ``RAY_AIR_NEW_OUTPUT=0``); it
writes through the ``search.live`` logger, so a log file gets the same lines as the terminal.
"""

from __future__ import annotations

import logging
import math
import time

from ray.tune import ProgressReporter
from ray.tune.experiment import Trial

from model import names

from .layout import trial_status
from .scheduler import StopLog, metric_value

log = logging.getLogger(__name__)
ORDER = {"running": 0, "pending": 1, "completed": 2, "stopped": 3, "diverged": 4, "errored": 5}


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def metric_of(trial: Trial, metric: str) -> float | None:
    """The trial's last value of the metric; None where it does not exist (NaN, MISSING, not reported)."""
    return metric_value(trial.last_result or {}, metric)


class LiveView(ProgressReporter):
    """Trial, curriculum, step, metric and status of every trial, best first within each status."""

    def __init__(self, metric: str, mode: str, stop_log: StopLog, interval_s: float = 30.0, max_rows: int = 16,
                 label_width: int = 44) -> None:
        self.metric, self.mode, self.stop_log = metric, mode, stop_log
        self.interval_s, self.max_rows, self.label_width = interval_s, max_rows, label_width
        self._start = time.time()
        self._last = 0.0
        self._last_states: dict[str, str] = {}

    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs) -> None:
        self._start = start_time or time.time()

    def states(self, trials: list[Trial]) -> dict[str, str]:
        return {t.trial_id: trial_status(t, self.stop_log) for t in trials}

    def should_report(self, trials: list[Trial], done: bool = False) -> bool:
        changed = self.states(trials) != self._last_states
        if done:  # the last table, unless the one just shown says the same
            return changed or time.time() - self._last > 1.0
        return changed or time.time() - self._last >= self.interval_s

    def report(self, trials: list[Trial], done: bool, *sys_info: str) -> None:
        self._last = time.time()
        self._last_states = self.states(trials)
        log.info("%s", self.render(trials))

    def _sign(self) -> float:
        return 1.0 if self.mode == "max" else -1.0

    def render(self, trials: list[Trial]) -> str:
        states = self.states(trials)
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=ORDER.get))
        scored = [t for t in trials if metric_of(t, self.metric) is not None]
        best = max(scored, key=lambda t: self._sign() * metric_of(t, self.metric), default=None)
        head = f"[{duration(time.time() - self._start):>7}] {len(trials)} trials: {summary}"
        if best is not None:
            head += f" | best {metric_of(best, self.metric):.3f} {_label(best)}"
        def order(t: Trial) -> tuple[int, float]:  # best first within a status; missing last
            value = metric_of(t, self.metric)
            return ORDER.get(states[t.trial_id], 9), math.inf if value is None else -self._sign() * value

        rows = sorted(trials, key=order)
        w = self.label_width
        short = self.metric.split("/")[-1].replace("_accuracy", " acc").replace("token ", "")[:11]
        lines = [head, f"  {'trial':<12} {'curriculum':<{w}} {'step':>7} {short:>11}  status"]
        for t in rows[: self.max_rows]:
            status = states[t.trial_id]
            if status == "stopped":
                status = f"stopped@{self.stop_log.step(t.trial_id)}"
            value = metric_of(t, self.metric)
            step = int((t.last_result or {}).get(names.STEP, 0))
            label = _label(t)
            label = label if len(label) <= w else label[: w - 1] + "~"
            lines.append(f"  {_short_id(t):<12} {label:<{w}} {step:>7} "
                         f"{'' if value is None else f'{value:.4f}':>11}  {status}")
        if len(rows) > self.max_rows:
            lines.append(f"  ... {len(rows) - self.max_rows} more")
        return "\n".join(lines)


def _label(trial: Trial) -> str:
    config = trial.config or {}
    seed = f" s{config['seed']}" if "seed" in config else ""
    return f"{config.get('label', trial.trial_id)}{seed}"


def _short_id(trial: Trial) -> str:
    return trial.trial_id[-11:]
