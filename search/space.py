"""A search space, read from ``spaces/*.yaml`` by one strict loader.

A space names the metric, the trainer preset and its overrides, the fixed part of the curriculum, the
searched parameters (``search.distributions``) and the constraints between them (``search.constraints``),
the named curricula to run first, the one validation set every trial is judged on, the searcher, the
training seeds per configuration, the scheduler, the resources per trial and W&B. Every error is an ``InputError`` naming the space file and the key,
raised before Ray starts. ``Space.scaled`` and ``Space.smoke`` shrink a space for laptops and tests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import names
from model.config import build, load_config, read_yaml
from model.curriculum import AUX_LOSSES, Curriculum, LossSchedule, curriculum_from_dict, load_curriculum
from model.errors import InputError

from .command_spec import CommandSpec, parse_command
from .constraints import Constraint, parse_constraint
from .distributions import Distribution, parse_distribution

SPACE_DIR = Path(__file__).resolve().parent.parent / "spaces"
SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(LossSchedule))
CURRICULUM_KEYS = tuple(f"{loss}.{key}" for loss in AUX_LOSSES for key in SCHEDULE_KEYS)
STEP_SCHEDULE_KEYS = ("intro_step", "ramp_steps")
# Trainer settings counted in steps: --scale multiplies them with everything else.
STEP_CONFIG_KEYS = ("optim.max_steps", "optim.warmup_steps", "train.eval_interval", "train.checkpoint_interval")
# Set per trial by the search itself; a space may not search or override them.
RESERVED_CONFIG_PREFIXES = ("seed", "wandb.", "train.device", "train.threads", "curriculum")
# Numeric metrics a space may rank by (the validation fingerprint is a hex string, not a metric).
METRICS = sorted(v for k, v in vars(names).items()
                 if k.isupper() and isinstance(v, str) and "/" in v and v != names.VAL_FINGERPRINT)
DEFAULT_METRIC = names.VAL_RESIDUE_ACCURACY
SMOKE_STEPS = 40
SMOKE_EVAL_INTERVAL = 10
SMOKE_VAL_SIZE = 64


@dataclass
class TrainerSpec:
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    command: CommandSpec | None = None  # bring your own trainer (search.command_spec); then no preset


@dataclass
class NamedSpec:
    curricula: list[str] = field(default_factory=list)
    scale: float = 1.0  # the shipped curricula are written for 100K steps; 0.01 fits them to 1K


@dataclass
class ValidationSpec:
    """The one synthetic validation set of a search, passed to every trial as ``data.val_*``.

    Left out (None): lengths and noise of the hardest stage over all the space's curricula (the fixed
    stages and every named curriculum), size and seed of the preset with its overrides
    (``search.validation.resolve_validation`` fills them when the space loads).
    """

    min_length: int | None = None
    max_length: int | None = None
    noise_peaks: int | None = None
    size: int | None = None
    seed: int | None = None

    def overrides(self) -> dict[str, int]:
        """Trainer overrides: ``data.val_min_length`` ... ``data.val_seed`` (the values set so far)."""
        return {f"data.val_{k}": v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class SearcherSpec:
    algorithm: str = "tpe"  # tpe | random | grid
    seed: int = 0
    num_samples: int = -1  # searched configurations; -1: the grid's size for grid, else 8
    max_concurrent: int = 2
    startup_trials: int = 10  # TPE draws this many at random before it models


@dataclass
class SchedulerSpec:
    type: str = "asha"  # asha | fifo
    max_t: int = 0  # steps; 0: the trainer's optim.max_steps
    grace_period: int = 0  # steps; 0: max_t / reduction_factor ** 2
    reduction_factor: float = 2.0
    brackets: int = 1
    settle_steps: int = 0  # a rung this soon after one of the trial's intro events is skipped


@dataclass
class ResourcesSpec:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass
class FailureSpec:
    max_failures: int = 2
    num_to_keep: int = 2


@dataclass
class WandbSpec:
    project: str = "curriculum-search"
    mode: str = "offline"  # offline | online | disabled


SECTIONS = {
    "named": NamedSpec,
    "validation": ValidationSpec,
    "searcher": SearcherSpec,
    "scheduler": SchedulerSpec,
    "resources": ResourcesSpec,
    "failure": FailureSpec,
    "wandb": WandbSpec,
}
TOP_KEYS = ("name", "description", "metric", "mode", "trainer", "curriculum", "search", "constraints", "seeds",
            *SECTIONS)


@dataclass
class Space:
    file: str
    name: str
    description: str
    metric: str
    mode: str
    trainer: TrainerSpec
    curriculum: dict[str, Any]  # the fixed part: stages, and schedule keys that are not searched
    params: dict[str, Distribution]  # dotted key -> distribution, in the order they are drawn
    constraints: list[Constraint]
    named: NamedSpec
    validation: ValidationSpec
    seeds: list[int]
    searcher: SearcherSpec
    scheduler: SchedulerSpec
    resources: ResourcesSpec
    failure: FailureSpec
    wandb: WandbSpec
    max_steps: int = 0
    eval_interval: int = 0

    @property
    def num_configurations(self) -> int:
        return len(self.named.curricula) + self.searcher.num_samples

    @property
    def num_trials(self) -> int:
        return self.num_configurations * len(self.seeds)

    def curriculum_params(self) -> list[str]:
        return [k for k in self.params if k in CURRICULUM_KEYS]

    def fixed_values(self) -> dict[str, Any]:
        """Schedule values the fixed curriculum sets (``spectrum.intro_step`` ...), for constraints."""
        out = {}
        for loss in AUX_LOSSES:
            for key, value in (self.curriculum.get(loss) or {}).items():
                out[f"{loss}.{key}"] = value
        return out

    def curriculum_for(self, values: dict[str, Any], name: str = "searched") -> Curriculum:
        """The fixed curriculum with the searched schedule values filled in."""
        data = {"name": name, "stages": self.curriculum.get("stages"),
                "description": self.curriculum.get("description", "")}
        for loss in AUX_LOSSES:
            schedule = dict(self.curriculum.get(loss) or {})
            for key in SCHEDULE_KEYS:
                if f"{loss}.{key}" in values:
                    schedule[key] = values[f"{loss}.{key}"]
                    if key == "intro_step":
                        schedule.pop("intro_accuracy", None)
                    elif key == "intro_accuracy":
                        schedule.pop("intro_step", None)
            if schedule:
                data[loss] = schedule
        return curriculum_from_dict(data, self.file, default_name=name)

    def named_curriculum(self, name: str) -> Curriculum:
        curriculum = load_curriculum(name)
        return curriculum if self.named.scale == 1.0 else curriculum.scaled(self.named.scale)

    def trainer_overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """The preset overrides, every searched key that is a trainer setting, and the validation set."""
        searched = {k: v for k, v in values.items() if k not in CURRICULUM_KEYS}
        return {**self.trainer.overrides, **searched, **self.validation.overrides()}

    def scaled(self, factor: float) -> Space:
        """Every step count times ``factor``: stages, intro and ramp steps, max_t, grace period, evaluation."""
        if factor == 1.0:
            return self

        def steps(n: int, least: int = 1) -> int:
            return max(least, round(n * factor))

        overrides = dict(self.trainer.overrides)
        base = load_config(self.trainer.preset, overrides)
        for key in STEP_CONFIG_KEYS:
            section, attr = key.split(".")
            value = getattr(getattr(base, section), attr)
            least = 0 if key in ("optim.warmup_steps", "train.checkpoint_interval") else 1
            overrides[key] = steps(value, least) if value else value
        curriculum = dict(self.curriculum)
        if curriculum.get("stages"):
            curriculum["stages"] = [{**s, "steps": steps(s["steps"])} for s in curriculum["stages"]]
        for loss in AUX_LOSSES:
            if curriculum.get(loss):
                curriculum[loss] = {k: (steps(v, 0) if k in STEP_SCHEDULE_KEYS and v is not None else v)
                                    for k, v in curriculum[loss].items()}
        params = {k: (d.scaled(factor) if _is_step_key(k) else d) for k, d in self.params.items()}
        constraints = [dataclasses.replace(c, offset=c.offset * factor) if _is_step_key(c.left) else c
                       for c in self.constraints]
        sched = self.scheduler
        scheduler = dataclasses.replace(sched, max_t=steps(sched.max_t), grace_period=steps(sched.grace_period),
                                        settle_steps=steps(sched.settle_steps, 0))
        named = dataclasses.replace(self.named, scale=self.named.scale * factor)
        out = dataclasses.replace(self, trainer=TrainerSpec(self.trainer.preset, overrides), curriculum=curriculum,
                                  params=params, constraints=constraints, scheduler=scheduler, named=named)
        if self.trainer.command is not None:  # a command's own step counts
            out.trainer = dataclasses.replace(self.trainer, command=self.trainer.command.scaled(factor))
        return validate(out)

    def smoke(self) -> Space:
        """The same space shrunk to seconds: tiny model, a few dozen steps, two configurations, one seed."""
        space = self.scaled(SMOKE_STEPS / self.max_steps) if self.max_steps > SMOKE_STEPS else self
        overrides = {k: v for k, v in space.trainer.overrides.items() if not k.startswith(("model.", "data."))}
        overrides.update({"train.eval_interval": min(SMOKE_EVAL_INTERVAL, space.max_steps), "data.batch_size": 16})
        # The validation set stays the full space's (its curricula, not the two kept here), only smaller.
        validation = dataclasses.replace(space.validation, size=min(space.validation.size or SMOKE_VAL_SIZE,
                                                                    SMOKE_VAL_SIZE))
        if "optim.warmup_steps" in overrides:
            overrides["optim.warmup_steps"] = min(overrides["optim.warmup_steps"], space.max_steps)
        params = {k: (dataclasses.replace(d, values=d.values[:2]) if d.kind == "grid" else d)
                  for k, d in space.params.items()}
        grid = space.searcher.algorithm == "grid"
        searcher = dataclasses.replace(space.searcher, max_concurrent=min(2, space.searcher.max_concurrent),
                                       num_samples=-1 if grid else min(2, space.searcher.num_samples))
        sched = space.scheduler
        grace = min(max(sched.grace_period, SMOKE_EVAL_INTERVAL), sched.max_t)
        scheduler = dataclasses.replace(sched, grace_period=grace)
        out = dataclasses.replace(
            space, trainer=TrainerSpec("tiny", overrides), params=params, searcher=searcher, scheduler=scheduler,
            validation=validation,
            named=dataclasses.replace(space.named, curricula=space.named.curricula[:2]), seeds=space.seeds[:1],
            resources=ResourcesSpec(cpu=1.0, gpu=0.0))
        if space.trainer.command is not None:  # a command's own step counts
            out.trainer = dataclasses.replace(space.trainer, command=space.trainer.command.smoke(SMOKE_EVAL_INTERVAL))
        return validate(out)


def _is_step_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in STEP_SCHEDULE_KEYS or key in STEP_CONFIG_KEYS


def resolve_space(name_or_path: str | Path) -> Path:
    """A path to a space YAML, or the name of a shipped one (``quickstart``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = SPACE_DIR / f"{name_or_path}.yaml"
    return shipped if shipped.is_file() else path


def load_space(path: str | Path, *, scale: float = 1.0, smoke: bool = False, num_samples: int | None = None) -> Space:
    """Read and validate a space file; then apply ``--scale``, ``--smoke`` and ``--num-samples``."""
    path = resolve_space(path)
    data = read_yaml(path)
    space = parse_space(data, str(path))
    if num_samples is not None:
        if num_samples < 0:
            raise InputError(path, "--num-samples", f"must be >= 0, got {num_samples}")
        space = validate(dataclasses.replace(space, searcher=dataclasses.replace(space.searcher,
                                                                                 num_samples=num_samples)))
    if not (scale > 0 and math.isfinite(scale)):
        raise InputError(path, "--scale", f"must be a number > 0, got {scale}")
    space = space.scaled(scale)
    return space.smoke() if smoke else space


def parse_space(data: dict[str, Any], file: str) -> Space:
    for key in data:
        if key not in TOP_KEYS:
            raise InputError(file, key, f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    for required in ("name", "trainer"):
        if required not in data:
            raise InputError(file, required, "missing")
    name = data["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise InputError(file, "name", f"expected a short name without spaces or slashes, got {name!r}")
    sections = {}
    for key, cls in SECTIONS.items():
        raw = data.get(key) or {}
        if not isinstance(raw, dict):
            raise InputError(file, key, f"expected a mapping, got {raw!r}")
        sections[key] = build(cls, raw, file, key)
    trainer_raw = data["trainer"]
    if not isinstance(trainer_raw, dict):
        raise InputError(file, "trainer", f"expected a mapping with preset and overrides, got {trainer_raw!r}")
    command = parse_command(trainer_raw, file) if "command" in trainer_raw else None
    if command is not None:
        trainer_raw = {}
    for key in trainer_raw:
        if key not in ("preset", "overrides"):
            raise InputError(file, f"trainer.{key}", "unknown key; allowed: preset, overrides")
    preset = trainer_raw.get("preset", "tiny")
    if not isinstance(preset, str) or not preset:
        raise InputError(file, "trainer.preset", f"expected a preset name or path, got {preset!r}")
    overrides = trainer_raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise InputError(file, "trainer.overrides", f"expected a mapping of dotted keys, got {overrides!r}")
    curriculum = data.get("curriculum") or {}
    if not isinstance(curriculum, dict):
        raise InputError(file, "curriculum", f"expected a mapping with stages, got {curriculum!r}")
    search_raw = data.get("search") or {}
    if not isinstance(search_raw, dict):
        raise InputError(file, "search", f"expected a mapping of dotted keys to distributions, got {search_raw!r}")
    params = {str(k): parse_distribution(v, file, f"search.{k}") for k, v in search_raw.items()}
    constraints_raw = data.get("constraints") or []
    if not isinstance(constraints_raw, list):
        raise InputError(file, "constraints", f"expected a list of strings, got {constraints_raw!r}")
    constraints = [parse_constraint(c, file, f"constraints[{i}]") for i, c in enumerate(constraints_raw)]
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise InputError(file, "seeds", f"expected a non-empty list of integer training seeds, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(file, "seeds", f"seeds repeat: {seeds}")
    metric = data.get("metric", DEFAULT_METRIC)
    mode = data.get("mode", "max")
    space = Space(file=file, name=name, description=str(data.get("description") or ""), metric=metric, mode=mode,
                  trainer=TrainerSpec(preset, dict(overrides), command), curriculum=curriculum, params=params,
                  constraints=constraints, seeds=list(seeds), **sections)
    return validate(space)


def validate(space: Space) -> Space:
    """Check every rule that needs more than one key (``search.space_rules``); fills defaults, then the
    validation set (``search.validation``)."""
    from .space_rules import validate_space
    from .validation import resolve_validation

    return resolve_validation(validate_space(space))
