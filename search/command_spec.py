"""``trainer.command``: search the curricula of a training command of your own (bring your own trainer).

    trainer:
      command: "python train.py --curriculum {curriculum} --out {trial_dir} --seed {seed} {resume:--resume}"
      metrics: "{trial_dir}/metrics.jsonl"   # .csv or .jsonl: one row per evaluation, with a step column
      steps: {max_steps: 3000, eval_interval: 100}
      workdir: .                             # relative to the space file; default: the space file's folder
      env: {WANDB_RUN_GROUP: "{experiment}"}
      metric_names: {iter: step, acc: val/residue_accuracy}
      metrics_timeout_s: 600                 # the metrics file must appear this soon after the command starts
      stop_grace_s: 10                       # SIGTERM, then SIGKILL this much later

The command runs without a shell (``bash -c '...'`` if it needs one). ``steps`` names the step counts the
command takes: ``max_steps`` (required: how long it trains) bounds intro steps and ASHA's ``max_t``, and
``--scale`` and ``--smoke`` multiply every entry. Everything is checked here, before Ray starts: an
``InputError`` names the space file and the key. ``search.command`` runs the trials.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model import names
from model.config import coerce
from model.errors import InputError

if TYPE_CHECKING:
    from .space import Space

# Placeholders every trial fills; besides these, each ``steps`` entry and each searched trainer setting.
BUILTINS = {
    "curriculum": "the trial's curriculum YAML (docs/curriculum_schema.md)",
    "trial_dir": "the trial's own directory",
    "seed": "the training seed",
    "experiment": "the experiment's name",
    "trial_id": "Ray's trial id",
    "cpus": "CPUs per trial, an integer >= 1",
    "python": "the Python interpreter of the search",
}
WITH_TEXT = {"resume": "{resume:TEXT}: TEXT when the trial restarts, else nothing",
             "env": "{env:NAME}: the variable NAME of the command's environment"}
METRICS_PLACEHOLDERS = ("trial_dir", "trial_id", "experiment", "seed")
METRICS_FORMATS = (".csv", ".jsonl")
KEYS = ("command", "metrics", "steps", "workdir", "env", "metric_names", "metrics_timeout_s", "stop_grace_s")
STEP_TARGETS = sorted({names.STEP, *(v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and "/" in v)})
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class CommandSpec:
    command: str
    steps: dict[str, int]
    metrics: str = "{trial_dir}/metrics.csv"
    workdir: str = ""  # absolute once parsed
    env: dict[str, str] = field(default_factory=dict)
    metric_names: dict[str, str] = field(default_factory=dict)  # the command's column -> this project's name
    metrics_timeout_s: float = 600.0
    stop_grace_s: float = 10.0

    @property
    def max_steps(self) -> int:
        return self.steps["max_steps"]

    def scaled(self, factor: float) -> CommandSpec:
        """Every step count times ``factor`` (at least 1 where it was positive)."""
        steps = {k: (max(1, round(v * factor)) if v else 0) for k, v in self.steps.items()}
        return dataclasses.replace(self, steps=steps)

    def smoke(self, eval_interval: int) -> CommandSpec:
        if "eval_interval" not in self.steps:
            return self
        return dataclasses.replace(self, steps={**self.steps, "eval_interval": min(eval_interval, self.max_steps)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandSpec:
        return cls(**data)


def placeholders(text: str) -> list[tuple[str, str | None]]:
    """``(name, text)`` of every ``{name}`` or ``{name:text}`` in ``text``; ``{{`` and ``}}`` are literal."""
    out = []
    for m in _TOKEN.finditer(text):
        if m.group(0) in ("{{", "}}"):
            continue
        if m.group(1) is None:
            raise ValueError(f"unbalanced {m.group(0)!r}; write {{{{ or }}}} for a literal brace")
        name, sep, arg = m.group(1).partition(":")
        out.append((name, arg if sep else None))
    return out


def render(text: str, values: Mapping[str, str], *, resume: bool = False, env: Mapping[str, str] | None = None,
           quote: bool = False) -> str:
    """Fill the placeholders; ``quote`` shell-quotes each value (not ``{resume:TEXT}``'s text)."""

    def sub(m: re.Match) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name, _, arg = m.group(1).partition(":")
        if name == "resume":
            return arg if resume else ""
        if name == "env":
            if env is None or arg not in env:
                raise KeyError(f"{{env:{arg}}}: {arg} is not set in the command's environment")
            value = env[arg]
        else:
            value = values[name]
        return shlex.quote(value) if quote else value

    return _TOKEN.sub(sub, text)


def parse_command(raw: dict[str, Any], file: str) -> CommandSpec:
    """The ``trainer`` section of a space that names a command."""
    for key in raw:
        if key not in KEYS:
            extra = " (a command takes its settings on its command line)" if key in ("preset", "overrides") else ""
            raise InputError(file, f"trainer.{key}", f"unknown key for a command trainer{extra}; allowed: "
                             f"{', '.join(KEYS)}")

    def string(key: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise InputError(file, f"trainer.{key}", f"expected a non-empty string, got {value!r}")
        return value

    command = string("command")
    try:
        placeholders(command)
        shlex.split(command)
    except ValueError as err:
        raise InputError(file, "trainer.command", str(err)) from None
    metrics = string("metrics", CommandSpec.metrics)
    steps = _mapping(raw, "steps", file, required=True)
    for key, value in steps.items():
        if not _NAME.fullmatch(key) or key in BUILTINS or key in WITH_TEXT:
            raise InputError(file, f"trainer.steps.{key}", "expected a name of letters, digits and _ that is not "
                             f"a built-in placeholder ({', '.join([*BUILTINS, *WITH_TEXT])})")
        steps[key] = coerce(value, int, file, f"trainer.steps.{key}")
        if steps[key] < 0:
            raise InputError(file, f"trainer.steps.{key}", f"a step count must be >= 0, got {steps[key]}")
    if steps.get("max_steps", 0) < 1:
        raise InputError(file, "trainer.steps.max_steps", "missing or 0: how many steps the command trains "
                         "(it bounds intro steps and the scheduler's max_t)")
    env = _mapping(raw, "env", file)
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise InputError(file, f"trainer.env.{key}", "not a valid environment variable name")
        if isinstance(value, (dict, list)) or value is None:
            raise InputError(file, f"trainer.env.{key}", f"expected a string, got {value!r}")
        env[key] = str(value).lower() if isinstance(value, bool) else str(value)
    metric_names = _mapping(raw, "metric_names", file)
    for column, ours in metric_names.items():
        if ours not in STEP_TARGETS:
            raise InputError(file, f"trainer.metric_names.{column}",
                             f"unknown name {ours!r}; map a column to one of: {', '.join(STEP_TARGETS)}")
    targets = list(metric_names.values())
    for ours in set(targets):
        if targets.count(ours) > 1:
            raise InputError(file, "trainer.metric_names", f"two columns map to {ours}")
    workdir = Path(string("workdir", ".")).expanduser()
    workdir = (Path(file).resolve().parent / workdir) if not workdir.is_absolute() else workdir
    if not workdir.is_dir():
        raise InputError(file, "trainer.workdir", f"{workdir} is not a directory")
    spec = CommandSpec(command=command, steps=steps, metrics=metrics, workdir=str(workdir.resolve()), env=env,
                       metric_names={str(k): str(v) for k, v in metric_names.items()})
    for key in ("metrics_timeout_s", "stop_grace_s"):
        if key in raw:
            setattr(spec, key, coerce(raw[key], float, file, f"trainer.{key}"))
    if not spec.metrics_timeout_s > 0:
        raise InputError(file, "trainer.metrics_timeout_s", f"must be > 0 seconds, got {spec.metrics_timeout_s}")
    if not spec.stop_grace_s >= 0:
        raise InputError(file, "trainer.stop_grace_s", f"must be >= 0 seconds, got {spec.stop_grace_s}")
    _check_metrics_path(spec, file)
    return spec


def check_command_space(space: Space) -> tuple[int, int]:
    """Rules that need the whole space; returns (max_steps, eval_interval) for the scheduler's defaults."""
    from .space import CURRICULUM_KEYS

    spec, file = space.trainer.command, space.file
    settings = [k for k in space.params if k not in CURRICULUM_KEYS]
    known = {*BUILTINS, *spec.steps, *settings}
    for key, text in [("trainer.command", spec.command), *((f"trainer.env.{k}", v) for k, v in spec.env.items())]:
        for name, arg in placeholders(text):
            if name in WITH_TEXT:
                if arg is None or (name == "env" and not _ENV_NAME.fullmatch(arg)):
                    raise InputError(file, key, f"{{{name}}} needs its text: {WITH_TEXT[name]}")
                if name == "env" and key != "trainer.command":
                    raise InputError(file, key, "{env:NAME} is for the command line; set the variable directly")
            elif name not in known or arg is not None:
                raise InputError(file, key, f"unknown placeholder {{{name}{'' if arg is None else ':' + arg}}}; "
                                 f"allowed: {_allowed(spec, settings)}")
    for key in settings:
        if f"{{{key}}}" not in spec.command and not any(f"{{{key}}}" in v for v in spec.env.values()):
            raise InputError(file, f"search.{key}", f"a command trainer gets searched settings through its command "
                             f"line: put {{{key}}} in trainer.command (or search curriculum keys only)")
    if settings and space.named.curricula:
        raise InputError(file, "named.curricula", f"named curricula have no value for the searched settings "
                         f"({', '.join(settings)}) that the command needs; drop named.curricula or those settings")
    try:
        program = render(shlex.split(spec.command)[0], {**{k: "x" for k in known}, "python": sys.executable},
                         env={**os.environ, **spec.env})
    except KeyError:  # {env:NAME} that only the trial's environment has: the trial tells
        program = sys.executable
    if "/" in program:
        if not (Path(spec.workdir) / program).exists():
            raise InputError(file, "trainer.command", f"no program {program} (relative to {spec.workdir})")
    elif shutil.which(program) is None:
        raise InputError(file, "trainer.command", f"program {program!r} not found on PATH")
    return spec.max_steps, spec.steps.get("eval_interval", 0)


def _allowed(spec: CommandSpec, settings: list[str]) -> str:
    return ", ".join([*(f"{{{k}}}" for k in (*BUILTINS, *spec.steps, *settings)), "{resume:TEXT}", "{env:NAME}"])


def _check_metrics_path(spec: CommandSpec, file: str) -> None:
    try:
        found = placeholders(spec.metrics)
    except ValueError as err:
        raise InputError(file, "trainer.metrics", str(err)) from None
    for name, arg in found:
        if name not in METRICS_PLACEHOLDERS or arg is not None:
            raise InputError(file, "trainer.metrics", f"unknown placeholder {{{name}}} in a metrics path; allowed: "
                             f"{', '.join('{' + p + '}' for p in METRICS_PLACEHOLDERS)}")
    if not spec.metrics.endswith(METRICS_FORMATS):
        raise InputError(file, "trainer.metrics", f"{spec.metrics!r}: the metrics file must be .csv (a header row) "
                         "or .jsonl (one JSON object a line)")
    names_used = {n for n, _ in found}
    if Path(spec.metrics).is_absolute() and not names_used & {"trial_dir", "trial_id"}:
        raise InputError(file, "trainer.metrics", f"{spec.metrics!r} would be one file for every trial; put it "
                         "under {trial_dir} (a relative path is taken from there)")


def _mapping(raw: dict[str, Any], key: str, file: str, required: bool = False) -> dict[str, Any]:
    value = raw.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or (required and not value):
        raise InputError(file, f"trainer.{key}", f"expected a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}
