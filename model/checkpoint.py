"""Checkpoints written atomically, with the previous one kept to fall back on.

``save_checkpoint`` writes ``last.pt.tmp``, syncs it and renames it over ``last.pt``, so a crash mid-write
never leaves half a ``last.pt``; before the rename, the current ``last.pt`` is kept as ``last.prev.pt``
(a hard link, no copy). ``load_checkpoint`` reads ``last.pt`` and, where that file is truncated or
otherwise unreadable (a disk that filled up, a copy cut short, a file system that lost the rename's
data), falls back to ``last.prev.pt`` with a warning: training goes on from one checkpoint earlier.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import torch

from .errors import InputError

log = logging.getLogger(__name__)
# What torch.load raises on a truncated, empty or foreign file (measured: zip errors, pickle errors, EOF).
UNREADABLE = (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError)


def previous_path(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``: the checkpoint before the current one."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except (OSError, RuntimeError):  # a full disk: leave no half-written file to fill it further
        tmp.unlink(missing_ok=True)
        raise
    if path.is_file():
        keep_previous(path)
    os.replace(tmp, path)


def keep_previous(path: Path) -> None:
    """Make ``last.prev.pt`` the current ``last.pt``: a hard link where the file system has them (no copy,
    no read: a save costs what it did), else a copy."""
    previous = previous_path(path)
    tmp = previous.with_name(previous.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, previous)


def _read(path: Path, device: torch.device | str = "cpu") -> dict | None:
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except UNREADABLE:
        return None
    return state if isinstance(state, dict) else None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint at ``path``, else the previous one (with a warning); InputError if neither loads."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a checkpoint")
        return state
    except UNREADABLE as err:
        problem = " ".join(str(err).split())[:200] or type(err).__name__
    previous = previous_path(path)
    state = _read(previous, device) if previous.is_file() else None
    if state is None:
        raise InputError(path, "checkpoint", f"cannot read checkpoint: {problem}")
    log.warning("checkpoint %s cannot be read (%s); going on from the previous one, %s (step %s)",
                path, problem, previous, state.get("step", "?"))
    return state
