"""Checkpoints written atomically: a crash mid-write never leaves a half-written last.pt."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import InputError


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(path, "checkpoint", f"cannot read checkpoint: {err}") from None
