"""Fault 2: a trial's worker process SIGKILLed mid-training. Ray restarts the trial from the last checkpoint
the trainer wrote, and on the CPU it ends with exactly the metrics of a trial never interrupted.

With ``train.checkpoint_interval`` above ``eval_interval`` the trainer writes no checkpoint at some
evaluations; the trial must then hand Ray none (a stale or empty directory restores wrongly or not at all).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

import model.train as trainer
from model import names
from model.config import load_config
from model.curriculum import curriculum_from_dict
from search.trainable import STEP_FILE, trial_overrides

TIMING = {names.ELAPSED_S, names.TRAIN_STEPS_PER_S}
SPACE = {
    "name": "worker",
    "trainer": {"preset": "tiny", "overrides": {
        "optim.max_steps": 40, "optim.warmup_steps": 4, "train.eval_interval": 10, "train.stop_at_accuracy": 0.0,
        "model.dim": 32, "model.n_head": 4, "model.dim_feedforward": 64, "model.encoder_layers": 1,
        "model.decoder_layers": 1, "data.batch_size": 16, "data.val_size": 48}},
    "named": {"curricula": ["revised"], "scale": 0.001},
    "searcher": {"algorithm": "tpe", "seed": 0, "num_samples": 0, "max_concurrent": 1},
    "scheduler": {"type": "fifo"},
    "failure": {"max_failures": 2, "num_to_keep": 10},
    "wandb": {"mode": "disabled"},
}


def rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(fh)]


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_interval,kill_after", [(0, 20), (20, 10)])
def test_a_killed_worker_restarts_from_its_checkpoint_to_the_same_metrics(ray_head, tmp_path, checkpoint_interval,
                                                                           kill_after):
    space = {**SPACE, "trainer": {**SPACE["trainer"], "overrides": {
        **SPACE["trainer"]["overrides"], "train.checkpoint_interval": checkpoint_interval}}}
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    exp = tmp_path / "results" / "worker"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "search.run", "--space", str(path), "--storage",
                                   str(tmp_path / "results"), "--live-interval", "60", "--no-report"],
                                  env=ray_head.client_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while True:  # SIGKILL the trial's worker as soon as the driver has its row at kill_after
        assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
        trial_dir = next((p for p in exp.glob("*_revised_s0") if p.is_dir()), None)
        history = rows(trial_dir) if trial_dir else []
        if history and history[-1][names.STEP] >= kill_after:
            killed_at, pid = history[-1][names.STEP], history[-1]["pid"]
            break
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # the worker process of our own head that ran this trial
    t_kill, recovery = time.time(), None
    while driver.poll() is None:
        if recovery is None and sum(r["iterations_since_restore"] == 1 for r in rows(trial_dir)) == 2:
            recovery = time.time() - t_kill  # to the restarted trial's first evaluation
        time.sleep(0.1)
    assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]

    history = rows(trial_dir)
    restarts = [r for r in history if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2, (exp / "trials.json").read_text()  # the first start and one restart
    restart = restarts[1]
    restored_from = restart[names.STEP] - 10
    retrained = killed_at - restored_from  # steps trained twice: these, and those after killed_at (< 10)
    print(f"interval {checkpoint_interval}: killed after step {killed_at}, restored from step {restored_from}, "
          f"{retrained}-{retrained + 9} steps trained twice, {recovery:.1f} s to the restarted trial's first row")
    assert 0 <= retrained <= max(checkpoint_interval, 10) - 10
    assert history[-1][names.STEP] == 40
    # Every checkpoint handed to Ray holds the trainer's last.pt of the step of the row it came with.
    for row in history:
        if row.get("checkpoint_dir_name"):
            ckpt = trial_dir / row["checkpoint_dir_name"]
            assert json.loads((ckpt / STEP_FILE).read_text())["step"] == row[names.STEP]
            assert torch.load(ckpt / "last.pt", weights_only=False)["step"] == row[names.STEP]
    every = checkpoint_interval or 10
    assert sorted({r[names.STEP] for r in history if r.get("checkpoint_dir_name")}) == list(range(every, 50, every))

    # The same trial, never interrupted, in this process: the same rows to the last digit.
    config = json.loads((trial_dir / "params.json").read_text())
    cfg = load_config(config["trainer"]["preset"], trial_overrides(config, tmp_path / "alone"))
    curriculum = curriculum_from_dict(config["curriculum"], "params.json", default_name=config["family"])
    trainer.train(cfg, curriculum, tmp_path / "alone")
    assert metrics(trial_dir / "metrics.csv") == metrics(tmp_path / "alone" / "metrics.csv")
