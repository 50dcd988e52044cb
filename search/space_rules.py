"""The rules a search space must keep beyond its types: checked by name, before Ray starts.

``validate_space`` fills what a space may leave out (max_t, grace period, num_samples of a grid) and
raises ``InputError`` naming the space file and key for anything impossible: unknown metrics, trainer
overrides the preset rejects, intro steps at or beyond the last step, negative weights, constraints
that can never hold, unknown curricula, a grace period above max_t, GPU fractions above one, and
searched schedule keys that cannot change what the trainer does (``_check_keys_take_effect``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from model.config import load_config
from model.curriculum import AUX_LOSSES, LossSchedule, load_curriculum
from model.errors import InputError

from .command_spec import check_command_space
from .distributions import Distribution
from .space import CURRICULUM_KEYS, METRICS, RESERVED_CONFIG_PREFIXES, SCHEDULE_KEYS, Space


def validate_space(space: Space) -> Space:
    """Check every rule that needs more than one key; fills max_steps, eval_interval and defaults."""
    file = space.file

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise InputError(file, key, message)

    need(space.metric in METRICS, "metric", f"unknown metric {space.metric!r}; allowed: {', '.join(METRICS)}")
    need(space.mode in ("max", "min"), "mode", f"must be max or min, got {space.mode!r}")

    # Trainer: the preset and overrides must load, and every searched trainer key must accept its range.
    for key in space.trainer.overrides:
        need(not str(key).startswith(RESERVED_CONFIG_PREFIXES), f"trainer.overrides.{key}",
             "is set by the search for every trial (seeds, W&B, device, threads, curriculum)")
    cfg = _load_trainer(space, space.trainer.overrides, "trainer.overrides")
    space.max_steps, space.eval_interval = cfg.optim.max_steps, cfg.train.eval_interval
    if space.trainer.command is not None:  # bring your own trainer: its own steps and settings
        space.max_steps, space.eval_interval = check_command_space(space)
    for key, dist in space.params.items():
        if key in CURRICULUM_KEYS:
            continue
        need(not key.startswith(RESERVED_CONFIG_PREFIXES), f"search.{key}",
             "is set by the search for every trial; search curriculum keys or trainer settings")
        if space.trainer.command is not None:
            continue
        if "." not in key:
            raise InputError(file, f"search.{key}", "unknown key; search spectrum.* or precursor.* "
                             f"({', '.join(SCHEDULE_KEYS)}) or a dotted trainer setting such as optim.lr")
        for value in _probe_values(dist):
            _load_trainer(space, {**space.trainer.overrides, key: value}, f"search.{key}")

    # Curriculum: searched schedule values in range, the fixed part complete.
    for key, dist in space.params.items():
        if key not in CURRICULUM_KEYS:
            continue
        attr = key.split(".", 1)[1]
        extent = dist.extent()
        need(extent is not None, f"search.{key}", "expected numbers")
        lo, hi = extent
        if attr.endswith("_weight"):
            need(lo >= 0, f"search.{key}.low", f"weights must be >= 0, got {lo}")
        elif attr == "intro_step":
            need(lo >= 0, f"search.{key}.low", f"must be >= 0, got {lo}")
            need(hi < space.max_steps, f"search.{key}.high",
                 f"{hi:g} is not before the last step (optim.max_steps={space.max_steps})")
        elif attr == "ramp_steps":
            need(lo >= 0, f"search.{key}.low", f"must be >= 0, got {lo}")
        elif attr == "intro_accuracy":
            need(0 < lo and hi <= 1, f"search.{key}", f"must lie in (0, 1], got {lo:g}..{hi:g}")
        if attr in ("intro_step", "ramp_steps"):
            need(dist.is_integer, f"search.{key}.dist", f"step counts need randint, qrandint or integer choices, "
                                                        f"got {dist.kind}")
    if space.params.keys() & set(CURRICULUM_KEYS):
        need(bool(space.curriculum.get("stages")), "curriculum.stages",
             "missing: searched curriculum keys need the fixed part (length and noise stages)")
        for probe in ("low", "high"):
            values = {k: _bound(d, probe) for k, d in space.params.items() if k in CURRICULUM_KEYS}
            try:
                space.curriculum_for(values).validate_steps(space.max_steps, file)
            except InputError as err:
                key = f"search.{err.key}" if err.key in space.params else f"curriculum.{err.key}"
                raise InputError(file, key, err.message) from None
    elif space.curriculum:
        need(False, "curriculum", "a fixed curriculum with nothing searched: list it under named.curricula instead")

    # Constraints refer to searched or fixed values and can hold at all.
    fixed = space.fixed_values()
    for i, c in enumerate(space.constraints):
        for side in (c.left, c.right):
            need(side in space.params or side in fixed, f"constraints[{i}]",
                 f"{side!r} is neither searched nor set in the fixed curriculum")
        need(c.left in space.params or c.right in space.params, f"constraints[{i}]",
             f"{c.text!r} ties two fixed values; nothing to constrain")
        a, b = _extent(space, c.left, fixed), _extent(space, c.right, fixed)
        if a and b:
            ok = a[1] >= b[0] + c.offset if c.op == ">=" else a[0] <= b[1] + c.offset
            need(ok, f"constraints[{i}]", f"{c.text!r} can never hold: {c.left} spans {a[0]:g}..{a[1]:g}, "
                                          f"{c.right} spans {b[0]:g}..{b[1]:g}")

    # Named curricula exist.
    for i, name in enumerate(space.named.curricula):
        try:
            load_curriculum(name)
        except InputError as err:
            raise InputError(file, f"named.curricula[{i}]", f"{name!r}: {err.message}") from None
    need(space.named.scale > 0, "named.scale", f"must be > 0, got {space.named.scale}")
    need(len(set(space.named.curricula)) == len(space.named.curricula), "named.curricula", "names repeat")

    # Searcher.
    s = space.searcher
    need(s.algorithm in ("tpe", "random", "grid"), "searcher.algorithm",
         f"must be tpe, random or grid, got {s.algorithm!r}")
    for key, dist in space.params.items():
        if s.algorithm == "grid":
            need(dist.kind in ("grid", "choice"), f"search.{key}.dist",
                 f"searcher.algorithm grid needs grid (or choice) values, got {dist.kind}")
        else:
            need(dist.kind != "grid", f"search.{key}.dist",
                 f"grid values need searcher.algorithm: grid (this space uses {s.algorithm})")
    if s.algorithm == "grid":
        size = math.prod(len(d.values) for d in space.params.values()) if space.params else 0
        need(s.num_samples in (-1, size), "searcher.num_samples",
             f"a grid search runs its {size} points; leave num_samples out or set it to {size}")
        space.searcher = dataclasses.replace(s, num_samples=size)
    elif s.num_samples == -1:
        space.searcher = dataclasses.replace(s, num_samples=8 if space.params else 0)
    s = space.searcher
    need(s.num_samples >= 0, "searcher.num_samples", f"must be >= 0, got {s.num_samples}")
    need(s.num_samples == 0 or bool(space.params), "searcher.num_samples",
         f"is {s.num_samples} but nothing is searched (no search: keys)")
    need(s.max_concurrent >= 1, "searcher.max_concurrent", f"must be >= 1, got {s.max_concurrent}")
    need(s.startup_trials >= 0, "searcher.startup_trials", f"must be >= 0, got {s.startup_trials}")
    need(space.num_configurations > 0, "searcher.num_samples",
         "nothing to run: no named curricula and no searched configurations")

    # Scheduler.
    sc = space.scheduler
    need(sc.type in ("asha", "fifo"), "scheduler.type", f"must be asha or fifo, got {sc.type!r}")
    if sc.max_t == 0:
        space.scheduler = sc = dataclasses.replace(sc, max_t=space.max_steps)
    need(0 < sc.max_t <= space.max_steps, "scheduler.max_t",
         f"must be in 1..optim.max_steps ({space.max_steps}), got {sc.max_t}")
    need(sc.reduction_factor > 1, "scheduler.reduction_factor", f"must be > 1, got {sc.reduction_factor}")
    if sc.grace_period == 0:
        grace = max(space.eval_interval, round(sc.max_t / sc.reduction_factor ** 2))
        space.scheduler = sc = dataclasses.replace(sc, grace_period=min(grace, sc.max_t))
    need(sc.grace_period >= 1, "scheduler.grace_period", f"must be >= 1, got {sc.grace_period}")
    need(sc.grace_period <= sc.max_t, "scheduler.grace_period",
         f"{sc.grace_period} is above max_t ({sc.max_t}): no trial could ever be judged")
    need(sc.brackets >= 1, "scheduler.brackets", f"must be >= 1, got {sc.brackets}")
    need(sc.settle_steps >= 0, "scheduler.settle_steps", f"must be >= 0, got {sc.settle_steps}")
    _check_keys_take_effect(space)

    # Resources, failures, W&B.
    r = space.resources
    need(r.cpu > 0, "resources.cpu", f"must be > 0, got {r.cpu}")
    need(r.gpu >= 0, "resources.gpu", f"must be >= 0, got {r.gpu}")
    need(r.gpu <= 1 or float(r.gpu).is_integer(), "resources.gpu",
         f"a trial takes a fraction of one GPU (0 < gpu <= 1) or whole GPUs, got {r.gpu}")
    need(space.failure.max_failures >= 0, "failure.max_failures", f"must be >= 0, got {space.failure.max_failures}")
    need(space.failure.num_to_keep >= 1, "failure.num_to_keep", f"must be >= 1, got {space.failure.num_to_keep}")
    need(space.wandb.mode in ("offline", "online", "disabled"), "wandb.mode",
         f"must be offline, online or disabled, got {space.wandb.mode!r}")
    need(bool(space.wandb.project), "wandb.project", "must not be empty")
    return space


def _check_keys_take_effect(space: Space) -> None:
    """Refuse a searched schedule key that no value in its range could make matter (``LossSchedule.weight``).

    Per auxiliary loss with a searched key: the weight is 0 before the intro, ``final_weight`` from the
    intro on when ``ramp_steps`` is 0, else a ramp from ``start_weight`` to ``final_weight``. So a searched
    start weight needs a ramp, a searched ramp needs two different weights, any searched key needs a
    loss that can be on, and the intro must come before the last step a trial trains (``scheduler.max_t``).
    """
    for loss in AUX_LOSSES:
        searched = [k.split(".", 1)[1] for k in space.params if k.startswith(f"{loss}.")]
        if searched:
            _check_loss_takes_effect(space, loss, searched)


def _check_loss_takes_effect(space: Space, loss: str, searched: list[str]) -> None:
    fixed = space.curriculum.get(loss) or {}

    def extent(attr: str) -> tuple[Any, Any]:
        """(low, high) of a schedule value: its searched range, or its fixed (or default) value twice."""
        if attr in searched:
            return space.params[f"{loss}.{attr}"].extent()
        value = fixed.get(attr, getattr(LossSchedule(), attr))
        return value, value

    def refuse(attr: str, message: str) -> None:
        raise InputError(space.file, f"search.{loss}.{attr}", f"cannot change training: {message}")

    ramp, start, final = extent("ramp_steps"), extent("start_weight"), extent("final_weight")
    never_on = final[1] <= 0 and (ramp[1] <= 0 or start[1] <= 0)
    if "start_weight" in searched and ramp[1] <= 0:
        refuse("start_weight", f"{loss}.ramp_steps is 0 (fixed), so the weight is final_weight ({final[0]:g}) "
                               "from the intro on" + (": the loss is never on" if never_on else ""))
    weights_fixed = not {"start_weight", "final_weight"} & set(searched)
    if "ramp_steps" in searched and weights_fixed and start[0] == final[0]:
        refuse("ramp_steps", f"{loss}.start_weight and final_weight are both {start[0]:g} (fixed): nothing to "
                             "ramp" + (", and the loss is never on" if never_on else ""))
    if never_on:
        refuse(searched[0], f"the {loss} loss is never on: final_weight is 0 and "
                            + ("ramp_steps is 0" if ramp[1] <= 0 else "start_weight is 0"))
    if "intro_accuracy" in searched:
        return
    low, high = extent("intro_step")
    max_t = space.scheduler.max_t
    if high is not None and high >= max_t:
        key = f"search.{loss}.intro_step.high" if "intro_step" in searched else f"curriculum.{loss}.intro_step"
        raise InputError(space.file, key, f"{high:g} is not before scheduler.max_t ({max_t}), the last step a "
                                          f"trial trains: the searched {loss} keys would never take effect")


def _load_trainer(space: Space, overrides: dict[str, Any], where: str):
    """Load the preset with overrides; an error names the space file and ``where`` (plus the key)."""
    try:
        return load_config(space.trainer.preset, overrides)
    except InputError as err:
        if err.key == "preset":
            raise InputError(space.file, "trainer.preset", err.message) from None
        key = where if where.startswith("search.") else f"{where}.{err.key}"
        raise InputError(space.file, key, f"{err.message} (checked against preset {err.file})") from None


def _probe_values(dist: Distribution) -> list[Any]:
    if dist.kind in ("choice", "grid"):
        return list(dist.values)
    return [dist.low, dist.high]


def _bound(dist: Distribution, which: str) -> Any:
    if dist.kind in ("choice", "grid"):
        numbers = sorted(dist.values, key=lambda v: (isinstance(v, str), v))
        return numbers[0] if which == "low" else numbers[-1]
    return dist.low if which == "low" else dist.high


def _extent(space: Space, key: str, fixed: dict[str, Any]) -> tuple[float, float] | None:
    if key in space.params:
        return space.params[key].extent()
    value = fixed.get(key)
    return (float(value), float(value)) if isinstance(value, (int, float)) else None
