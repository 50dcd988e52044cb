"""Curricula: when each auxiliary loss switches on, how strongly, and how hard the data is.

Two forms, both read from YAML and both compiled to one pure function of (step, gate state):

* the seeds' stage list: each stage has ``steps``, a length range, ``noise_peaks`` and the two loss
  weights, held for the whole stage;
* a parametric form for search: the same stage list with only the data difficulty, plus per auxiliary
  loss an intro (a step, or an accuracy gate that opens when validation token accuracy first reaches a
  threshold), a start weight, a final weight and a linear ramp between them.

The last stage holds after its end, so a curriculum never runs out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import build, read_yaml, resolve_shipped
from .errors import InputError

CURRICULUM_DIR = Path(__file__).parent / "configs" / "curricula"
AUX_LOSSES = ("spectrum", "precursor")
MAX_PEPTIDE_LENGTH = 30


@dataclass
class Stage:
    name: str
    steps: int
    min_length: int
    max_length: int
    noise_peaks: int = 0
    spectrum_loss_weight: float | None = None
    precursor_loss_weight: float | None = None


@dataclass
class LossSchedule:
    """Intro and ramp of one auxiliary loss: 0 before the intro, then start -> final over ramp_steps."""

    intro_step: int | None = None
    intro_accuracy: float | None = None
    start_weight: float = 0.0
    final_weight: float = 0.0
    ramp_steps: int = 0

    def weight(self, step: int, opened_at: int | None) -> float:
        """The weight at ``step``; ``opened_at`` is the step its gate opened (None: not yet)."""
        intro = self.intro_step if self.intro_accuracy is None else opened_at
        if intro is None or step < intro:
            return 0.0
        if self.ramp_steps <= 0:
            return self.final_weight
        frac = min(1.0, (step - intro) / self.ramp_steps)
        return self.start_weight + (self.final_weight - self.start_weight) * frac


@dataclass(frozen=True)
class CurriculumState:
    """What the trainer needs at one step."""

    stage: str
    min_length: int
    max_length: int
    noise_peaks: int
    spectrum_weight: float
    precursor_weight: float


@dataclass
class Curriculum:
    name: str
    stages: list[Stage]
    spectrum: LossSchedule | None = None
    precursor: LossSchedule | None = None
    description: str = ""
    boundaries: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.boundaries = []
        total = 0
        for stage in self.stages:
            total += stage.steps
            self.boundaries.append(total)

    @property
    def total_steps(self) -> int:
        return self.boundaries[-1]

    @property
    def max_length(self) -> int:
        return max(s.max_length for s in self.stages)

    def stage_at(self, step: int) -> Stage:
        for stage, end in zip(self.stages, self.boundaries):
            if step < end:
                return stage
        return self.stages[-1]

    def _weight(self, loss: str, step: int, gates: dict[str, int | None]) -> float:
        schedule: LossSchedule | None = getattr(self, loss)
        if schedule is not None:
            return schedule.weight(step, gates.get(loss))
        return getattr(self.stage_at(step), f"{loss}_loss_weight") or 0.0

    def at(self, step: int, gates: dict[str, int | None] | None = None) -> CurriculumState:
        """Weights and data difficulty at ``step``: a pure function of the step and the gate state."""
        gates = gates or {}
        stage = self.stage_at(step)
        return CurriculumState(
            stage=stage.name,
            min_length=stage.min_length,
            max_length=stage.max_length,
            noise_peaks=stage.noise_peaks,
            spectrum_weight=self._weight("spectrum", step, gates),
            precursor_weight=self._weight("precursor", step, gates),
        )

    def gated(self) -> list[str]:
        return [loss for loss in AUX_LOSSES if (s := getattr(self, loss)) is not None and s.intro_accuracy is not None]

    def update_gates(self, gates: dict[str, int | None], step: int, val_accuracy: float) -> dict[str, int | None]:
        """Open every accuracy gate whose threshold ``val_accuracy`` reaches; returns the new gate state."""
        new = dict(gates)
        for loss in self.gated():
            threshold = getattr(self, loss).intro_accuracy
            if new.get(loss) is None and math.isfinite(val_accuracy) and val_accuracy >= threshold:
                new[loss] = step
        return new

    def intro_step(self, loss: str, gates: dict[str, int | None] | None = None) -> int | None:
        """First step at which ``loss`` has a positive weight (None: never, or its gate is still shut)."""
        schedule: LossSchedule | None = getattr(self, loss)
        if schedule is not None:
            if schedule.final_weight <= 0 and schedule.start_weight <= 0:
                return None
            if schedule.intro_accuracy is not None:
                return (gates or {}).get(loss)
            return schedule.intro_step
        start = 0
        for stage, end in zip(self.stages, self.boundaries):
            if (getattr(stage, f"{loss}_loss_weight") or 0.0) > 0:
                return start
            start = end
        return None

    def events(self, gates: dict[str, int | None] | None = None) -> dict[str, int]:
        """Intro step of every auxiliary loss that has one, e.g. ``{"spectrum": 15000}``."""
        return {loss: s for loss in AUX_LOSSES if (s := self.intro_step(loss, gates)) is not None}

    def scaled(self, factor: float) -> Curriculum:
        """The same curriculum with every step count multiplied by ``factor`` (at least 1 step a stage)."""

        def scale(n: int | None) -> int | None:
            return None if n is None else max(0, round(n * factor))

        stages = [dataclasses.replace(s, steps=max(1, round(s.steps * factor))) for s in self.stages]
        out = {}
        for loss in AUX_LOSSES:
            s = getattr(self, loss)
            out[loss] = None if s is None else dataclasses.replace(
                s, intro_step=scale(s.intro_step), ramp_steps=scale(s.ramp_steps)
            )
        return Curriculum(self.name, stages, out["spectrum"], out["precursor"], self.description)

    def params(self) -> dict[str, Any]:
        """Flat, readable parameters (``spectrum.intro_step``, ...) for tables and W&B."""
        flat: dict[str, Any] = {"curriculum": self.name}
        for loss in AUX_LOSSES:
            s = getattr(self, loss)
            if s is not None:
                for key, value in dataclasses.asdict(s).items():
                    if value is not None:
                        flat[f"{loss}.{key}"] = value
            else:
                flat[f"{loss}.intro_step"] = self.intro_step(loss)
        return flat

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out["stages"] = [{k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in self.stages]
        for loss in AUX_LOSSES:
            s = getattr(self, loss)
            if s is not None:
                out[loss] = {k: v for k, v in dataclasses.asdict(s).items() if v is not None}
        return out

    def to_yaml(self) -> str:
        """The curriculum as YAML that ``load_curriculum`` (and ``docs/curriculum_schema.md``'s reader) reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate_steps(self, max_steps: int, file: object) -> None:
        """Reject an intro step at or beyond the last training step."""
        for loss in AUX_LOSSES:
            s = getattr(self, loss)
            if s is not None and s.intro_step is not None and s.intro_step >= max_steps:
                raise InputError(file, f"{loss}.intro_step",
                                 f"{s.intro_step} is not before the last step (max_steps={max_steps})")


def curriculum_from_dict(data: dict[str, Any], file: object, default_name: str = "curriculum") -> Curriculum:
    """Build and validate a curriculum from a parsed YAML mapping."""
    allowed = {"name", "description", "stages", *AUX_LOSSES}
    for key in data:
        if key not in allowed:
            raise InputError(file, key, f"unknown key; allowed: {', '.join(sorted(allowed))}")
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise InputError(file, "stages", "missing or empty: a curriculum needs a list of at least one stage")
    stages = []
    for i, raw in enumerate(stages_raw):
        where = f"stages[{i}]"
        if not isinstance(raw, dict):
            raise InputError(file, where, f"expected a mapping, got {raw!r}")
        for required in ("name", "steps", "min_length", "max_length"):
            if required not in raw:
                raise InputError(file, f"{where}.{required}", "missing")
        stage = build(Stage, raw, file, where)
        stages.append(stage)
        if stage.steps < 1:
            raise InputError(file, f"{where}.steps", f"a stage needs at least 1 step, got {stage.steps}")
        if not 1 <= stage.min_length <= stage.max_length <= MAX_PEPTIDE_LENGTH:
            raise InputError(file, f"{where}.min_length",
                             f"need 1 <= min_length <= max_length <= {MAX_PEPTIDE_LENGTH}, "
                             f"got {stage.min_length}..{stage.max_length}")
        if stage.noise_peaks < 0:
            raise InputError(file, f"{where}.noise_peaks", f"must be >= 0, got {stage.noise_peaks}")
        for loss in AUX_LOSSES:
            w = getattr(stage, f"{loss}_loss_weight")
            if w is not None and not (w >= 0 and math.isfinite(w)):
                raise InputError(file, f"{where}.{loss}_loss_weight", f"must be a finite weight >= 0, got {w}")
    schedules: dict[str, LossSchedule | None] = {}
    for loss in AUX_LOSSES:
        raw = data.get(loss)
        if raw is None:
            schedules[loss] = None
            continue
        if not isinstance(raw, dict):
            raise InputError(file, loss, f"expected a mapping of intro and weights, got {raw!r}")
        s = build(LossSchedule, raw, file, loss)
        if any(getattr(st, f"{loss}_loss_weight") is not None for st in stages):
            raise InputError(file, loss, f"given both here and as stages' {loss}_loss_weight; use one form")
        if (s.intro_step is None) == (s.intro_accuracy is None):
            raise InputError(file, f"{loss}.intro_step", "give exactly one of intro_step and intro_accuracy")
        if s.intro_step is not None and s.intro_step < 0:
            raise InputError(file, f"{loss}.intro_step", f"must be >= 0, got {s.intro_step}")
        if s.intro_accuracy is not None and not 0.0 < s.intro_accuracy <= 1.0:
            raise InputError(file, f"{loss}.intro_accuracy", f"must be in (0, 1], got {s.intro_accuracy}")
        for key in ("start_weight", "final_weight"):
            w = getattr(s, key)
            if not (w >= 0 and math.isfinite(w)):
                raise InputError(file, f"{loss}.{key}", f"must be a finite weight >= 0, got {w}")
        if s.ramp_steps < 0:
            raise InputError(file, f"{loss}.ramp_steps", f"must be >= 0, got {s.ramp_steps}")
        schedules[loss] = s
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise InputError(file, "name", f"expected a non-empty string, got {name!r}")
    description = data.get("description", "")
    return Curriculum(name, stages, schedules["spectrum"], schedules["precursor"], str(description or ""))


def shipped_curricula() -> list[str]:
    return sorted(p.stem for p in CURRICULUM_DIR.glob("*.yaml"))


def resolve_curriculum(name_or_path: str | Path) -> Path:
    return resolve_shipped(name_or_path, CURRICULUM_DIR, "curriculum")


def load_curriculum(name_or_path: str | Path) -> Curriculum:
    """Load a curriculum YAML, or a shipped one by name (``original``, ``revised``, ...)."""
    path = resolve_curriculum(name_or_path)
    return curriculum_from_dict(read_yaml(path), path, default_name=path.stem)


def clean_ce(max_steps: int, min_length: int = 7, max_length: int = 10) -> Curriculum:
    """Pure cross-entropy on clean peptides: the default when a config names no curriculum."""
    return Curriculum("clean_ce", [Stage("clean_ce", max_steps, min_length, max_length, 0, 0.0, 0.0)])
