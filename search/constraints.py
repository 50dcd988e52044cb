"""Constraints between searched parameters: ``a >= b``, ``a <= b``, optionally with ``+ c`` or ``- c``.

Written in a space file as a list of strings::

    constraints:
      - precursor.intro_step >= spectrum.intro_step
      - precursor.intro_step >= spectrum.intro_step + 5000

A constraint is kept while sampling rather than checked afterwards: parameters are drawn in the order
the space lists them, and a parameter that a constraint ties to one already drawn has its range narrowed
to the values that keep it (``bounds``). That is repair by clamping the range, and Optuna records the
value that actually runs, so TPE learns from the true configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from model.errors import InputError

_PATTERN = re.compile(
    r"^\s*(?P<left>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=)\s*(?P<right>[A-Za-z_][\w.]*)"
    r"\s*(?:(?P<sign>[+-])\s*(?P<offset>[0-9.eE+-]+))?\s*$"
)


@dataclass(frozen=True)
class Constraint:
    """``left op right + offset``, with op one of ``>=``, ``<=``."""

    left: str
    op: str
    right: str
    offset: float = 0.0
    text: str = ""

    def holds(self, values: dict[str, Any]) -> bool:
        a, b = values.get(self.left), values.get(self.right)
        if a is None or b is None:  # a loss with no intro step at all puts nothing in order
            return True
        return a >= b + self.offset - 1e-9 if self.op == ">=" else a <= b + self.offset + 1e-9

    def bounds(self, name: str, drawn: dict[str, Any]) -> tuple[float | None, float | None]:
        """The (low, high) this constraint sets on ``name`` given the values drawn so far."""
        if name == self.left and self.right in drawn and drawn[self.right] is not None:
            limit = drawn[self.right] + self.offset
            return (limit, None) if self.op == ">=" else (None, limit)
        if name == self.right and self.left in drawn and drawn[self.left] is not None:
            limit = drawn[self.left] - self.offset
            return (None, limit) if self.op == ">=" else (limit, None)
        return None, None


def parse_constraint(text: Any, file: object, key: str) -> Constraint:
    if not isinstance(text, str):
        raise InputError(file, key, f"expected a string like 'a.b >= c.d', got {text!r}")
    match = _PATTERN.match(text)
    if not match:
        raise InputError(file, key, f"cannot read {text!r}; allowed: '<key> >= <key>' or '<key> <= <key>', "
                                    "optionally followed by '+ <number>' or '- <number>'")
    offset = 0.0
    if match["offset"] is not None:
        try:
            offset = float(match["offset"])
        except ValueError:
            raise InputError(file, key, f"cannot read the number in {text!r}") from None
        if match["sign"] == "-":
            offset = -offset
    if match["left"] == match["right"]:
        raise InputError(file, key, f"{text!r} compares a key with itself")
    return Constraint(match["left"], match["op"], match["right"], offset, text.strip())


def narrowed(name: str, constraints: list[Constraint], drawn: dict[str, Any]) -> tuple[float | None, float | None]:
    """Intersection of every constraint's bounds on ``name``."""
    low = high = None
    for c in constraints:
        lo, hi = c.bounds(name, drawn)
        if lo is not None:
            low = lo if low is None else max(low, lo)
        if hi is not None:
            high = hi if high is None else min(high, hi)
    return low, high
