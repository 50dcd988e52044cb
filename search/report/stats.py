"""Is the difference between curricula real? Group replicates, give each a 95% CI, test the best.

A curriculum run with several training seeds is one *group*. Each group gets its mean, standard
deviation (``ddof=1``) and a 95% confidence interval from the t distribution; the best group (highest
mean under ``mode="max"``, lowest under ``"min"``) is then compared with every other by Welch's t-test
(two-sided, unequal variances), and the result is said in one sentence: "revised beats original by 3.1
points, p = 0.02, 3 seeds each".

Accuracies are fractions in [0, 1] and their differences are said in percentage points (``scale=100``,
the default); other metrics (a loss) are said in their own units (``scale=1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

ALPHA = 0.05
CONFIDENCE = 0.95
GROUP_COLUMNS = ["group", "n", "mean", "std", "ci_low", "ci_high"]


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) of finite ``values``; std and CI are NaN below two values."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _finite(values)
    if x.size == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1)) * std / math.sqrt(x.size)
    return mean, std, mean - half, mean + half


def group_summary(frame: pd.DataFrame, value: str, by: str = "label",
                  bounds: tuple[float, float] | None = None, mode: str = "max") -> pd.DataFrame:
    """One row per group of ``frame[by]``: n, mean, std, 95% CI of ``frame[value]``, best mean first
    (highest for ``mode="max"``, lowest for ``"min"``).

    Rows whose value is NaN do not count towards n (a group can have n = 0). ``bounds``, when given,
    clips the CI to the values the quantity can take (an accuracy lies in [0, 1]; with two seeds
    the t interval easily runs past both ends).
    """
    _check_mode(mode)
    for column in (value, by):
        if column not in frame.columns:
            raise ValueError(f"column {column!r} not in frame; columns: {list(frame.columns)}")
    rows = []
    for name, part in frame.groupby(by, sort=False, dropna=False):
        x = _finite(part[value])
        mean, std, low, high = mean_ci(x)
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])  # NaN stays NaN
        rows.append({"group": name, "n": int(x.size), "mean": mean, "std": std, "ci_low": low, "ci_high": high})
    out = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    # Best mean first; empty groups last; equal means keep the order of first appearance.
    return out.sort_values("mean", ascending=mode == "min", na_position="last", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Comparison:
    """The best group against another: difference of means in points and Welch's p (NaN: no test)."""

    best: str
    other: str
    difference: float  # how much better best is: points for accuracies (scale 100), else the metric's units
    p_value: float
    n_best: int
    n_other: int
    note: str = ""  # why there is no test, when there is none
    unit: str = "points"  # "" for a metric said in its own units

    @property
    def tested(self) -> bool:
        return math.isfinite(self.p_value)

    @property
    def significant(self) -> bool:
        return self.tested and self.p_value < ALPHA

    def sentence(self) -> str:
        verb = "ties with" if self.difference == 0 else "beats"
        head = f"{self.best} {verb} {self.other}"
        if self.difference != 0:
            head += f" by {abs(self.difference):.1f} points" if self.unit == "points" else \
                f" by {abs(self.difference):.3g}{' ' + self.unit if self.unit else ''}"
        seeds = _seeds(self.n_best, self.n_other)
        if not self.tested:
            return f"{head}, {seeds}: no test ({self.note})."
        verdict = "" if self.significant else ": not significant at the 5% level"
        return f"{head}, {format_p(self.p_value)}, {seeds}{verdict}."


def welch(best: Sequence[float], other: Sequence[float], best_name: str, other_name: str, *,
          mode: str = "max", scale: float = 100.0) -> Comparison:
    """Welch's two-sided t-test of ``best`` against ``other``; the difference is how much better ``best``
    is (higher under ``mode="max"``, lower under ``"min"``) times ``scale`` (100: fractions to points)."""
    _check_mode(mode)
    a, b = _finite(best), _finite(other)
    sign = 1.0 if mode == "max" else -1.0
    diff = sign * scale * (a.mean() - b.mean()) if a.size and b.size else math.nan
    note = ""
    if a.size < 2 or b.size < 2:
        lone = [f"{name} has {n} seed{'s' if n != 1 else ''}" for name, n in ((best_name, a.size),
                                                                           (other_name, b.size)) if n < 2]
        note = " and ".join(lone) + "; a test needs at least 2 seeds per curriculum"
    elif a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        note = "every seed gave the same value, so there is no spread to test against"
    p = math.nan
    if not note:
        p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    unit = "points" if scale == 100.0 else ""
    return Comparison(best_name, other_name, round(diff, 10), p, int(a.size), int(b.size), note, unit)


def compare_groups(frame: pd.DataFrame, value: str, by: str = "label", *, mode: str = "max",
                   scale: float = 100.0) -> list[Comparison]:
    """The best group (best mean of ``value`` for ``mode``) against each other group with at least one value."""
    summary = group_summary(frame, value, by, mode=mode)
    summary = summary[summary["n"] > 0]
    if len(summary) < 2:
        return []
    best = summary["group"].iloc[0]
    values = {name: part[value] for name, part in frame.groupby(by, sort=False, dropna=False)}
    return [welch(values[best], values[other], str(best), str(other), mode=mode, scale=scale)
            for other in summary["group"].iloc[1:]]


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2g}" if p < 0.1 else f"p = {p:.2f}"


def binned_means(x: Sequence[float], y: Sequence[float], edges: Sequence[float]) -> pd.DataFrame:
    """Count, mean, median and 10th-90th percentiles of ``y`` in bins of ``x`` (left-closed; last closed)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must be at least 2 increasing values, got {edges.tolist()}")
    index = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, edges.size - 2)
    inside = (xs >= edges[0]) & (xs <= edges[-1])
    rows = []
    for i in range(edges.size - 1):
        part = ys[inside & (index == i)]
        empty = part.size == 0
        rows.append({
            "low": edges[i], "high": edges[i + 1], "n": int(part.size),
            "mean": math.nan if empty else float(part.mean()),
            "median": math.nan if empty else float(np.median(part)),
            "p10": math.nan if empty else float(np.percentile(part, 10)),
            "p90": math.nan if empty else float(np.percentile(part, 90)),
        })
    return pd.DataFrame(rows)


def _seeds(n_best: int, n_other: int) -> str:
    if n_best == n_other:
        return f"{n_best} seed{'s' if n_best != 1 else ''} each"
    return f"{n_best} and {n_other} seeds"


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]
