"""Training health: non-finite steps and loss spikes, counted as the trainer goes."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median


@dataclass
class Health:
    """Counters the trainer keeps and checkpoints.

    A spike is a finite step whose loss exceeds ``factor`` times the median of the last ``window``
    finite losses (a robust running baseline: one spike does not raise the bar for the next).
    """

    factor: float = 3.0
    window: int = 50
    nan_count: int = 0
    spike_count: int = 0
    nonfinite_streak: int = 0
    recent: deque = field(default_factory=deque)

    def observe(self, loss: float, finite: bool) -> bool:
        """Record one step's loss; returns True if the step counts as a spike."""
        if not finite or not math.isfinite(loss):
            self.nan_count += 1
            self.nonfinite_streak += 1
            return False
        self.nonfinite_streak = 0
        spike = len(self.recent) >= self.window // 2 and loss > self.factor * median(self.recent)
        self.spike_count += spike
        self.recent.append(loss)
        while len(self.recent) > self.window:
            self.recent.popleft()
        return spike

    def state_dict(self) -> dict:
        return {"nan_count": self.nan_count, "spike_count": self.spike_count,
                "nonfinite_streak": self.nonfinite_streak, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.nan_count = state["nan_count"]
        self.spike_count = state["spike_count"]
        self.nonfinite_streak = state["nonfinite_streak"]
        self.recent = deque(state["recent"])
