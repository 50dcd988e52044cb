"""Fault 4: a checkpoint write killed half-way, or a truncated last.pt. The previous checkpoint is used
(with a warning), training goes on, and it ends with exactly the metrics of a run never interrupted."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_train import SMALL, TIMING

import model.train as trainer
from model import names
from model.checkpoint import load_checkpoint, previous_path, save_checkpoint
from model.config import load_config
from model.curriculum import load_curriculum
from model.errors import InputError

REPO = Path(__file__).resolve().parent.parent
CURRICULUM = "revised"  # the spectrum loss from step 15, the precursor loss from 31 (scaled 0.001)


def _cfg(max_steps: int):
    return load_config("tiny", {**SMALL, "optim.max_steps": max_steps})


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("full")
    trainer.train(_cfg(40), load_curriculum(CURRICULUM).scaled(0.001), out)
    return _rows(out)


def test_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    for step in (10, 20, 30):
        save_checkpoint(path, {"step": step})
    assert torch.load(path)["step"] == 30 and torch.load(previous_path(path))["step"] == 20
    assert previous_path(path).name == "last.prev.pt"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_truncated_last_pt_falls_back_to_the_previous_with_a_warning(tmp_path, uninterrupted, caplog):
    curriculum = load_curriculum(CURRICULUM).scaled(0.001)
    trainer.train(_cfg(40), curriculum, tmp_path, on_eval=lambda row, _: row[names.STEP] >= 30)
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a disk that filled up, a copy cut short
    with caplog.at_level(logging.WARNING, logger="model.checkpoint"):
        summary = trainer.train(_cfg(40), curriculum, tmp_path, resume=True)
    assert "cannot be read" in caplog.text and "last.prev.pt (step 20)" in caplog.text
    assert summary[names.STATUS] == "completed"
    assert _rows(tmp_path) == uninterrupted  # steps 21-30 trained again, to the same numbers


def test_neither_checkpoint_readable_is_one_input_error(tmp_path):
    last = tmp_path / "last.pt"
    last.write_bytes(b"PK\x03\x04 not a checkpoint")
    previous_path(last).write_bytes(b"")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_checkpoint(last)
    torch.save([1, 2], last)  # loads, but is no checkpoint
    with pytest.raises(InputError, match="holds a list"):
        load_checkpoint(last)


def _train_cli(out: Path, curriculum: Path, *more: str, wait: bool = True):
    """``python -m model.train`` with the tests' small model to 40 steps."""
    sets = [f"--set={k}={v}" for k, v in SMALL.items()]
    cmd = [sys.executable, "-m", "model.train", "--config", "tiny", "--curriculum", str(curriculum), *sets,
           "--out", str(out), "--max-steps", "40", *more]
    if wait:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _drain(fifo: Path, count: int, writer: subprocess.Popen, timeout: float = 120) -> bytes:
    """Read ``count`` bytes of what ``writer`` writes into ``fifo``; it blocks on the rest."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    data, deadline = b"", time.time() + timeout
    try:
        while len(data) < count:
            assert writer.poll() is None and time.time() < deadline, "the trainer never wrote its checkpoint"
            try:
                data += os.read(fd, count - len(data))
            except BlockingIOError:
                time.sleep(0.01)
            else:
                time.sleep(0.001)
    finally:
        os.close(fd)
    return data


@pytest.mark.slow
def test_a_checkpoint_write_killed_half_way_leaves_the_last_one_whole(tmp_path, uninterrupted):
    curriculum = load_curriculum(CURRICULUM).scaled(0.001)
    path = tmp_path / "curriculum.yaml"
    path.write_text(yaml.safe_dump(curriculum.to_dict()))
    out = tmp_path / "run"
    trainer.train(_cfg(40), curriculum, out, on_eval=lambda row, _: row[names.STEP] >= 20)
    size = (out / "checkpoints" / "last.pt").stat().st_size
    # Resumed, the trainer writes step 30's checkpoint into a pipe; half of it read, the trainer is SIGKILLed.
    tmp = out / "checkpoints" / "last.pt.tmp"
    os.mkfifo(tmp)
    writer = _train_cli(out, path, "--resume", wait=False)
    written = _drain(tmp, size // 2, writer)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    tmp.unlink()
    tmp.write_bytes(written)  # what a write killed half-way leaves on disk
    assert [r[names.STEP] for r in _rows(out)] == ["10", "20", "30"]  # killed after step 30's evaluation
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 20  # whole
    resumed = _train_cli(out, path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 20" in resumed.stderr
    assert _rows(out) == uninterrupted
    assert not tmp.exists()
