"""What one trial runs: its configuration dict (Ray's ``params.json``) and its short curriculum label.

A trial configuration is self-contained, so a trial directory says exactly what ran::

    {"label": "spec@12k w.08-.18 r5k | prec@30k w.01-.08", "family": "searched",
     "curriculum": {...Curriculum.to_dict()...}, "params": {dotted key: value},
     "seed": 0, "replicate": 0, "config_id": 7, "repairs": [...],
     "trainer": {"preset": "tiny", "overrides": {..., "data.val_min_length": 7, ...}},
     "wandb": {"project", "mode", "group"}}

The overrides always carry the search's one validation set (``search.validation``).
"""

from __future__ import annotations

import re
from typing import Any

from model.curriculum import AUX_LOSSES, Curriculum

from .space import CURRICULUM_KEYS, Space

SEARCHED = "searched"
# Reported by the trainable with every row: 1.0 on the last row of a trial that diverged (model.names has
# no such metric: it is the search's verdict on the trial, not something the trainer measures).
DIVERGED_KEY = "search/diverged"
# Also with every row: seconds the trial has spent inside tune.report (Ray's reporting and checkpoint copy).
REPORT_S_KEY = "search/report_s"
SHORT = {"spectrum": "spec", "precursor": "prec"}


def steps_label(n: float) -> str:
    """12000 -> 12k, 1500 -> 1.5k, 300 -> 300."""
    n = float(n)
    if abs(n) >= 1000:
        text = f"{n / 1000:.1f}".rstrip("0").rstrip(".")
        return f"{text}k"
    return f"{n:g}"


def weight_label(w: float) -> str:
    """0.08 -> .08, 0.1893 -> .19, 1.5 -> 1.5: two significant digits."""
    text = f"{w:.2g}"
    return text[1:] if text.startswith("0.") else text


def curriculum_label(curriculum: Curriculum) -> str:
    """A short label: the name of a stage-list curriculum, the intros and weights of a parametric one."""
    parts = []
    for loss in AUX_LOSSES:
        s = getattr(curriculum, loss)
        if s is None:
            continue
        if s.final_weight <= 0 and s.start_weight <= 0:
            parts.append(f"{SHORT[loss]} off")
            continue
        when = f"{s.intro_accuracy * 100:g}%" if s.intro_accuracy is not None else steps_label(s.intro_step)
        weights = weight_label(s.final_weight)
        if s.ramp_steps > 0 and s.start_weight != s.final_weight:
            weights = f"{weight_label(s.start_weight)}-{weights} r{steps_label(s.ramp_steps)}"
        parts.append(f"{SHORT[loss]}@{when} w{weights}")
    return " | ".join(parts) if parts else curriculum.name


def slug(text: str, limit: int = 48) -> str:
    """A file-system-safe short form of a label, for trial directory names."""
    text = text.replace("|", "_").replace("@", "").replace("%", "pct")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-_")[:limit] or "trial"


def base_config(space: Space, experiment: str) -> dict[str, Any]:
    config = {
        "trainer": {"preset": space.trainer.preset},
        "wandb": {"project": space.wandb.project, "mode": space.wandb.mode, "group": experiment},
        "resources": {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
        "max_t": space.scheduler.max_t,
    }
    if space.trainer.command is not None:  # bring your own trainer: what search.command runs
        config["trainer"] = {"command": space.trainer.command.to_dict(), "metric": space.metric}
    return config


def named_config(space: Space, experiment: str, name: str, replicate: int, config_id: int) -> dict[str, Any]:
    curriculum = space.named_curriculum(name)
    config = base_config(space, experiment)
    config["trainer"]["overrides"] = space.trainer_overrides({})  # the preset's, and the validation set
    config.update(label=name, family=name, curriculum=curriculum.to_dict(), params=curriculum.params(),
                  seed=space.seeds[replicate], replicate=replicate, config_id=config_id, repairs=[])
    return config


def searched_config(space: Space, experiment: str, values: dict[str, Any], replicate: int, config_id: int,
                    repairs: list[str] | None = None) -> dict[str, Any]:
    curriculum = space.curriculum_for({k: v for k, v in values.items() if k in CURRICULUM_KEYS})
    config = base_config(space, experiment)
    config["trainer"]["overrides"] = space.trainer_overrides(values)
    label = curriculum_label(curriculum) if space.curriculum_params() else ""
    others = [f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in values.items() if k not in CURRICULUM_KEYS]
    label = " | ".join(p for p in [label, *others] if p) or f"config {config_id}"
    config.update(label=label, family=SEARCHED, curriculum=curriculum.to_dict(),
                  params={**values, **curriculum.params()}, seed=space.seeds[replicate], replicate=replicate,
                  config_id=config_id, repairs=list(repairs or []))
    return config


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
