"""``python -m search.run`` with scripted trials, for the fault tests: a process to SIGKILL and resume.

    PYTHONPATH=. python tests/fault_search.py --space SPACE.yaml --storage DIR [--resume]

Each trial reports every 10 steps up to the space's max_t, a value that depends only on its
configuration id, seed and step (so an interrupted search can be compared with an uninterrupted one),
with a checkpoint holding its step (and ``FAULT_CKPT_BYTES`` of padding); it resumes from that checkpoint,
sleeps ``FAULT_STEP_S`` seconds per report (time to kill things mid-training) and ends itself on its STOP
file, as the real trainable does.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ray import tune

from model import names
from search.scheduler import stop_requested
from search.trainable import trial_output_dir
from search.trials import DIVERGED_KEY

# Config id -> accuracy at steps 10..40; seed 1 adds its offset. Trials run one at a time in config order,
# so ASHA (rungs 10 and 20) judges each against those before it: config 1 is stopped at 20, config 2 at
# 10, and config 3's seed 1, but not its seed 0, at 10.
CURVES = {0: (0.30, 0.50, 0.55, 0.60), 1: (0.32, 0.40, 0.60, 0.70), 2: (0.10, 0.20, 0.30, 0.40),
          3: (0.35, 0.55, 0.80, 0.90)}
SEED_OFFSET = {0: 0.02, 1: 0.02, 2: 0.02, 3: -0.20}
SPACE = {
    "name": "faults",
    "trainer": {"preset": "tiny", "overrides": {"optim.max_steps": 40, "optim.warmup_steps": 4,
                                                "train.eval_interval": 10}},
    "curriculum": {"stages": [{"name": "a", "steps": 40, "min_length": 7, "max_length": 10}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1}},
    "search": {"spectrum.intro_step": {"dist": "qrandint", "low": 5, "high": 35, "q": 5}},
    "named": {"curricula": ["original", "revised"], "scale": 0.0004},
    "searcher": {"algorithm": "tpe", "seed": 3, "num_samples": 2, "startup_trials": 2, "max_concurrent": 1},
    "seeds": [0, 1],
    "scheduler": {"type": "asha", "max_t": 40, "grace_period": 10, "reduction_factor": 2},
    "wandb": {"mode": "disabled"},
}


def value(config_id: int, seed: int, step: int) -> float:
    return CURVES[config_id][step // 10 - 1] + SEED_OFFSET[config_id] * seed


def scripted_with(pause: float, checkpoint_bytes: int):
    """The trainable, with its pace and checkpoint size fixed in the driver (workers do not see its env)."""

    def scripted(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as ckpt:
                start = json.loads((Path(ckpt) / "state.json").read_text())["step"]
        out = trial_output_dir(tune.get_context())
        if stop_requested(out, start):  # stopped at the step of its checkpoint: nothing left to do
            return
        for step in range(start + 10, int(config["max_t"]) + 1, 10):
            time.sleep(pause)
            row = {names.STEP: step, names.VAL_RESIDUE_ACCURACY: value(config["config_id"], config["seed"], step),
                   names.SPECTRUM_INTRO_STEP: names.MISSING, names.PRECURSOR_INTRO_STEP: names.MISSING,
                   names.NAN_COUNT: 0.0, names.SPIKE_COUNT: 0.0, DIVERGED_KEY: 0.0}
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "state.json").write_text(json.dumps({"step": step}))
                (Path(tmp) / "weights.bin").write_bytes(b"w" * checkpoint_bytes)
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))
            if stop_requested(out, step):
                return

    return scripted


if __name__ == "__main__":
    from search.run import main

    trainable = scripted_with(float(os.environ.get("FAULT_STEP_S", "0.3")), int(os.environ.get("FAULT_CKPT_BYTES", "0")))
    sys.exit(main(sys.argv[1:], trainable=trainable))
