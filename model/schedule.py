"""The learning rate as a pure function of the step: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

from .config import OptimConfig


def get_lr(step: int, cfg: OptimConfig) -> float:
    """Learning rate at ``step`` (0-based)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))
