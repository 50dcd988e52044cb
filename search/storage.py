"""The storage a search writes to: writable before Ray starts, and never filled to the last byte.

A disk that fills up mid-search does more than fail the write at hand: Ray rewrites its experiment
snapshot (``experiment_state-*.json``, the searcher's state) in place, so a full disk leaves it cut
short and ``--resume`` has nothing to resume from. ``StorageGuard`` watches the free space from the
driver; when it falls below what the next snapshot and checkpoints need, it interrupts the search the
way Ctrl+C does (Ray's SIGUSR1): Tune stops, writes one last whole snapshot with the unfinished trials
still unfinished, and the command ends with one line saying how much space is free and what to do.
Everything written before stays readable, and ``--resume`` goes on once there is space.

Best effort: another process that fills the disk faster than the guard looks (every ``every_s``) can
still cut a file; then the error line says so as well.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from ray.tune import Callback

from model.errors import InputError

log = logging.getLogger(__name__)
HEADROOM = 256 * 1024  # bytes kept free beyond the estimate: logs, trials.json, the report's first files
_tripped: list[str] = []  # set in the driver process when the guard stopped the search (callbacks are copied)


def check_writable(storage: str) -> None:
    """InputError unless the storage path (or the nearest folder above it that exists) can be written to."""
    if "://" in storage:
        return
    path = Path(storage)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not a folder" if not existing.is_dir() else "cannot be written to (read-only or no permission)"
        raise InputError(storage, "--storage", f"{existing} {problem}; give a --storage folder this user can write")


def _size(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    except OSError:
        return 0


def space_needed(exp_dir: Path, live_trials: int) -> int:
    """Bytes the next round of writes may need: Ray's snapshot twice (it is written, then synced), and two
    copies of the largest checkpoint (the trainer's own and Ray's) for every live trial."""
    snapshot = sum(_size(p) for p in exp_dir.glob("*-state-*")) + max(
        (_size(p) for p in exp_dir.glob("experiment_state-*.json")), default=0)
    checkpoint = max((_size(p) for p in exp_dir.glob("*/checkpoint_*")), default=0)
    return 2 * snapshot + 2 * checkpoint * max(1, live_trials) + HEADROOM


def low_space(exp_dir: Path, live_trials: int = 1) -> str | None:
    """A one-line description of the shortfall, or None when there is room."""
    try:
        usage = shutil.disk_usage(exp_dir)
    except OSError:
        return None
    needed = space_needed(exp_dir, live_trials)
    if usage.free >= needed:
        return None
    return (f"only {usage.free / 2**20:.2f} MiB free of {usage.total / 2**20:.2f} MiB, less than the next snapshots "
            f"and checkpoints need (about {needed / 2**20:.2f} MiB)")


class StorageGuard(Callback):
    """Interrupts the search (as Ctrl+C does) before the storage fills up; see the module docstring."""

    def __init__(self, exp_dir: str | Path, every_s: float = 0.5) -> None:
        self.exp_dir, self.every_s = Path(exp_dir), every_s
        self._last = 0.0

    def on_step_begin(self, iteration, trials, **info):
        if _tripped or time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        live = sum(1 for t in trials if t.status in ("RUNNING", "PENDING"))
        problem = low_space(self.exp_dir, live)
        if problem is not None:
            _tripped.append(problem)
            log.warning("storage %s: %s; stopping the search while its state can still be written", self.exp_dir,
                        problem)
            if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
                log.error("Tune does not listen for SIGUSR1 here (fit outside the main thread); not stopping")
                return
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own interrupt: one last snapshot, trials left unfinished


def storage_error(exp_dir: Path, err: BaseException | None = None) -> InputError | None:
    """The one-line error for a search stopped by a full disk (by the guard, or a write that failed)."""
    full = err is not None and _is_disk_full(err)
    if not _tripped and not full:
        return None
    problem = _tripped[0] if _tripped else f"a write failed: {os.strerror(errno.ENOSPC)}"
    return InputError(exp_dir, "storage", f"{problem}; the search stopped with what it had written; free some "
                      "space (or give the experiment a larger disk), then run the same command with --resume")


def _is_disk_full(err: BaseException) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
