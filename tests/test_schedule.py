"""The learning rate at fixed steps: linear warm-up, cosine decay, a floor that holds."""

from __future__ import annotations

import math

import pytest

from model.config import OptimConfig, load_config
from model.schedule import get_lr

CFG = OptimConfig(lr=1e-3, warmup_steps=100, max_steps=1100, min_lr_ratio=0.1)


def test_warm_up_is_linear_from_the_first_step() -> None:
    assert get_lr(0, CFG) == pytest.approx(1e-3 / 100)  # step 0 already trains: never a zero lr
    assert get_lr(49, CFG) == pytest.approx(1e-3 * 50 / 100)
    assert get_lr(99, CFG) == pytest.approx(1e-3)
    warm = [get_lr(s, CFG) for s in range(100)]
    assert all(b > a for a, b in zip(warm, warm[1:]))


def test_cosine_peak_midpoint_and_floor() -> None:
    floor = 1e-3 * 0.1
    assert get_lr(100, CFG) == pytest.approx(1e-3)  # the end of the warm-up is the peak
    assert get_lr(600, CFG) == pytest.approx(floor + 0.5 * (1e-3 - floor))  # halfway through the decay
    assert get_lr(350, CFG) == pytest.approx(floor + 0.5 * (1e-3 - floor) * (1 + math.cos(math.pi / 4)))
    assert get_lr(1100, CFG) == pytest.approx(floor)
    assert get_lr(1099, CFG) == pytest.approx(floor, rel=1e-4)
    assert get_lr(50_000, CFG) == pytest.approx(floor)  # past max_steps the floor holds
    decay = [get_lr(s, CFG) for s in range(100, 1200)]
    assert all(b <= a for a, b in zip(decay, decay[1:]))
    assert min(decay) == pytest.approx(floor)


def test_no_warm_up_starts_at_the_peak() -> None:
    cfg = OptimConfig(lr=5e-4, warmup_steps=0, max_steps=1000, min_lr_ratio=0.0)
    assert get_lr(0, cfg) == pytest.approx(5e-4)
    assert get_lr(500, cfg) == pytest.approx(2.5e-4)
    assert get_lr(1000, cfg) == pytest.approx(0.0, abs=1e-15)


def test_ratio_one_is_constant_after_warm_up() -> None:
    cfg = OptimConfig(lr=2e-3, warmup_steps=10, max_steps=100, min_lr_ratio=1.0)
    assert {round(get_lr(s, cfg), 12) for s in range(9, 300)} == {2e-3}


def test_warm_up_as_long_as_the_run() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_steps=50, max_steps=50, min_lr_ratio=0.1)
    lrs = [get_lr(s, cfg) for s in range(60)]
    assert all(math.isfinite(x) and 0 < x <= 1e-3 for x in lrs)
    assert lrs[49] == pytest.approx(1e-3)


@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_presets_schedule_is_positive_and_bounded(preset: str) -> None:
    cfg = load_config(preset).optim
    lrs = [get_lr(s, cfg) for s in range(0, cfg.max_steps + 1, max(1, cfg.max_steps // 500))]
    assert all(cfg.lr * min(cfg.min_lr_ratio, 1 / max(cfg.warmup_steps, 1)) * 0.999 <= x <= cfg.lr for x in lrs)
    assert max(lrs) == pytest.approx(cfg.lr, rel=1e-3)
