"""Distributions of searched parameters: parsed strictly from YAML, sampled through an Optuna trial.

A searched parameter is written in a space file as a mapping with ``dist`` and its arguments::

    spectrum.intro_step: {dist: qrandint, low: 5000, high: 40000, q: 1000}
    spectrum.final_weight: {dist: uniform, low: 0.04, high: 0.25}
    optim.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}
    spectrum.ramp_steps: {dist: choice, values: [0, 5000, 10000]}

Bounds are inclusive for every kind (unlike ``tune.randint``, whose high is exclusive): what is
written is what can be drawn. ``grid`` lists values that a grid search visits in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from model.errors import InputError

KINDS = ("uniform", "loguniform", "quniform", "randint", "qrandint", "choice", "grid")
NUMERIC = ("uniform", "loguniform", "quniform", "randint", "qrandint")
INTEGER = ("randint", "qrandint")
ARGS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "randint": ("low", "high"),
    "qrandint": ("low", "high", "q"),
    "choice": ("values",),
    "grid": ("values",),
}


def _number(value: Any, file: object, key: str, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(file, key, f"expected a number, got {value!r}")
    try:
        number = float(value)  # YAML reads 1e-3 (no dot) as a string
    except OverflowError:  # an integer beyond any float
        number = math.inf
    except ValueError:
        raise InputError(file, key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(file, key, f"expected a finite number, got {value!r}")
    if integer:
        if not number.is_integer():
            raise InputError(file, key, f"expected an integer, got {value!r}")
        return int(number)
    return number


@dataclass(frozen=True)
class Distribution:
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    q: float | int | None = None
    values: tuple = ()

    @property
    def is_integer(self) -> bool:
        return self.kind in INTEGER or (
            self.kind in ("choice", "grid") and all(isinstance(v, int) and not isinstance(v, bool) for v in self.values)
        )

    def extent(self) -> tuple[float, float] | None:
        """Smallest and largest value it can draw (None for non-numeric choices)."""
        if self.kind in NUMERIC:
            return float(self.low), float(self.high)
        numbers = [v for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) != len(self.values):
            return None
        return float(min(numbers)), float(max(numbers))

    def candidates(self) -> list:
        """Every value, for choice and grid (a grid search enumerates these)."""
        return list(self.values)

    def scaled(self, factor: float) -> Distribution:
        """Step counts multiplied by ``factor``; integers stay integers and at least 1 apart."""
        if self.kind in ("choice", "grid"):
            return replace(self, values=tuple(_scale_value(v, factor) for v in self.values))
        if self.kind in INTEGER:
            q = max(1, round(self.q * factor)) if self.q is not None else None
            low = round(self.low * factor)
            high = round(self.high * factor)
            if q is not None:
                high = low + max(0, (high - low) // q) * q
            return replace(self, low=low, high=max(low, high), q=q)
        q = self.q * factor if self.q is not None else None
        return replace(self, low=self.low * factor, high=self.high * factor, q=q)

    def suggest(self, trial: Any, name: str, low: float | None = None, high: float | None = None) -> tuple[Any, str]:
        """Draw through an Optuna trial, kept within [low, high] where constraints narrow it (None: open).

        Numeric kinds draw from the narrowed range, so Optuna records the value that runs. Choices keep
        their full value list (Optuna's categorical distributions cannot change between trials): a drawn
        value outside the range is replaced by the nearest allowed one. Returns ``(value, note)``: note is
        ``""``, ``"clamped"`` (replaced) or ``"violated"`` (no allowed value: the own bound nearest the range).
        """
        if self.kind in ("choice", "grid"):
            value = trial.suggest_categorical(name, list(self.values))
            if _within(value, low, high):
                return value, ""
            allowed = [v for v in self.values if _within(v, low, high)]
            if not allowed:
                return value, "violated"
            return min(allowed, key=lambda v: abs(v - value)), "clamped"
        lo = float(self.low) if low is None else max(float(self.low), low)
        hi = float(self.high) if high is None else min(float(self.high), high)
        step = self.q
        if step is not None:  # onto the grid low + k * q, inward
            lo = self.low + math.ceil((lo - self.low) / step - 1e-9) * step
            hi = self.low + math.floor((hi - self.low) / step + 1e-9) * step
        note = ""
        if lo > hi:  # empty: take the own bound nearest to the wanted range, and say so
            lo = hi = float(self.high) if lo > float(self.high) else float(self.low)
            note = "violated"
        if self.kind in INTEGER:
            return trial.suggest_int(name, int(round(lo)), int(round(hi)), step=int(step or 1)), note
        if self.kind == "loguniform":
            return trial.suggest_float(name, lo, hi, log=True), note
        if self.kind == "quniform" and hi > lo:
            return trial.suggest_float(name, lo, hi, step=step), note
        return trial.suggest_float(name, lo, hi), note

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dist": self.kind}
        for arg in ARGS[self.kind]:
            value = getattr(self, arg)
            out[arg] = list(value) if arg == "values" else value
        return out


def _within(value: Any, low: float | None, high: float | None) -> bool:
    if low is None and high is None:
        return True
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return (low is None or value >= low - 1e-12) and (high is None or value <= high + 1e-12)


def _scale_value(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return max(0, round(value * factor))
    return value * factor


def parse_distribution(raw: Any, file: object, key: str) -> Distribution:
    """A distribution from its YAML mapping; unknown kinds and arguments, low > high and the like raise."""
    if not isinstance(raw, dict):
        raise InputError(file, key, f"expected a mapping like {{dist: uniform, low: 0.1, high: 0.2}}, got {raw!r}")
    kind = raw.get("dist")
    if kind not in KINDS:
        raise InputError(file, f"{key}.dist", f"unknown distribution {kind!r}; allowed: {', '.join(KINDS)}")
    allowed = ARGS[kind]
    for arg in raw:
        if arg != "dist" and arg not in allowed:
            raise InputError(file, f"{key}.{arg}", f"unknown argument for {kind}; allowed: {', '.join(allowed)}")
    for arg in allowed:
        if arg not in raw:
            raise InputError(file, f"{key}.{arg}", f"missing: {kind} needs {', '.join(allowed)}")
    if kind in ("choice", "grid"):
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise InputError(file, f"{key}.values", f"expected a non-empty list, got {values!r}")
        for i, v in enumerate(values):
            if v is None or isinstance(v, (dict, list)):
                raise InputError(file, f"{key}.values[{i}]", f"expected a number, string or boolean, got {v!r}")
        if len(set(map(repr, values))) != len(values):
            raise InputError(file, f"{key}.values", f"values repeat: {values!r}")
        return Distribution(kind, values=tuple(values))
    integer = kind in INTEGER
    low = _number(raw["low"], file, f"{key}.low", integer)
    high = _number(raw["high"], file, f"{key}.high", integer)
    if low > high:
        raise InputError(file, f"{key}.low", f"low ({low}) is above high ({high})")
    q = None
    if "q" in raw:
        q = _number(raw["q"], file, f"{key}.q", integer)
        if q <= 0:
            raise InputError(file, f"{key}.q", f"must be > 0, got {q}")
        span = (high - low) / q
        if abs(span - round(span)) > 1e-9:
            raise InputError(file, f"{key}.high", f"high - low ({high} - {low}) must be a multiple of q ({q})")
    if kind == "loguniform" and low <= 0:
        raise InputError(file, f"{key}.low", f"loguniform needs low > 0, got {low}")
    return Distribution(kind, low=low, high=high, q=q)
