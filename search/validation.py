"""One validation set per search: every trial is judged on the same synthetic spectra.

The trainer builds ``val`` from the curriculum's hardest stage unless told otherwise; in a search whose
curricula differ in their hardest stage (``original`` ends at 5 noise peaks, ``revised`` at 8), trials
would then sit different exams and their accuracies could not be ranked together. So the search fixes
the set once, from the space's ``validation:`` section or, where that leaves a value out, from the
hardest stage over *all* the space's curricula (the fixed stages and every named curriculum) and the
preset's ``data.val_size`` and ``data.val_seed``; every trial gets it as ``data.val_*`` overrides.
Real validation files stay where they were: ``trainer.overrides: {data.val_files: [...]}``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from model.config import load_config
from model.curriculum import MAX_PEPTIDE_LENGTH, Stage, curriculum_from_dict
from model.errors import InputError

if TYPE_CHECKING:
    from .space import Space, ValidationSpec

# The trainer's keys that the search sets from ``validation:``, by the section's key.
TRAINER_KEYS = {"min_length": "data.val_min_length", "max_length": "data.val_max_length",
                "noise_peaks": "data.val_noise_peaks", "size": "data.val_size", "seed": "data.val_seed"}
CLEAN = (7, 10, 0)  # the trainer's curriculum when none is given (model.curriculum.clean_ce)


def hardest_stage(space: Space) -> tuple[int, int, int]:
    """(min_length, max_length, noise_peaks) of the hardest data over all the space's curricula."""
    stages: list[Stage] = []
    if space.curriculum.get("stages"):
        fixed = curriculum_from_dict({"name": "fixed", "stages": space.curriculum["stages"]}, space.file)
        stages += fixed.stages
    for name in space.named.curricula:
        stages += space.named_curriculum(name).stages
    if not stages:
        return CLEAN
    return (min(s.min_length for s in stages), max(s.max_length for s in stages),
            max(s.noise_peaks for s in stages))


def resolve_validation(space: Space) -> Space:
    """The space with every ``validation`` value filled; ``InputError`` naming the key for a bad one."""
    file, given, overrides = space.file, space.validation, space.trainer.overrides

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise InputError(file, key, message)

    for attr, key in TRAINER_KEYS.items():
        need(key not in space.params, f"search.{key}",
             f"one validation set per search, or trials cannot be ranked together; set validation.{attr} instead")
        if attr in ("min_length", "max_length", "noise_peaks"):
            need(key not in overrides, f"trainer.overrides.{key}",
                 f"the search sets it for every trial; set validation.{attr} instead")
    data = load_config(space.trainer.preset, overrides).data  # the space's checks have passed by now
    for attr in ("size", "seed"):
        key, value = TRAINER_KEYS[attr], getattr(given, attr)
        need(value is None or key not in overrides or overrides[key] == value, f"validation.{attr}",
             f"{value} differs from trainer.overrides {key}={overrides.get(key)}; state it in one place")
    low, high, noise = hardest_stage(space)
    filled = dataclasses.replace(
        given,
        min_length=low if given.min_length is None else given.min_length,
        max_length=high if given.max_length is None else given.max_length,
        noise_peaks=noise if given.noise_peaks is None else given.noise_peaks,
        size=data.val_size if given.size is None else given.size,
        seed=data.val_seed if given.seed is None else given.seed,
    )
    check(filled, file)
    try:
        load_config(space.trainer.preset, {**overrides, **filled.overrides()})
    except InputError as err:
        attr = next((a for a, k in TRAINER_KEYS.items() if k == err.key), None)
        raise InputError(file, f"validation.{attr}" if attr else f"trainer.overrides.{err.key}",
                         f"{err.message} (checked against preset {err.file})") from None
    return dataclasses.replace(space, validation=filled)


def check(v: ValidationSpec, file: str) -> None:
    """The rules of a filled validation set, by key."""
    if not 1 <= v.min_length <= v.max_length <= MAX_PEPTIDE_LENGTH:
        key = "validation.min_length" if v.min_length < 1 or v.min_length > v.max_length else "validation.max_length"
        raise InputError(file, key, f"need 1 <= min_length <= max_length <= {MAX_PEPTIDE_LENGTH}, "
                                    f"got {v.min_length}..{v.max_length}")
    if v.noise_peaks < 0:
        raise InputError(file, "validation.noise_peaks", f"must be >= 0, got {v.noise_peaks}")
    if v.size < 1:
        raise InputError(file, "validation.size", f"must be >= 1 spectra, got {v.size}")
    if v.seed < 0:
        raise InputError(file, "validation.seed", f"must be >= 0, got {v.seed}")
