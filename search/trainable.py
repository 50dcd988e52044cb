"""The Ray Tune function trainable: one trial runs the real trainer on its configuration.

It reports every evaluation row (every ``model.names`` metric, all finite, plus ``search/diverged``), and
with a row the checkpoint the trainer wrote at that evaluation (``last.pt`` and its step; none where
``train.checkpoint_interval`` skipped it), so Ray keeps it and a restarted trial (after a failure, or
after ``--resume`` of a killed search) continues from it exactly: ``last.pt`` holds the model,
optimizer, RNG, data stream, gate state, counters and metric history.

The trainer writes into the trial's directory under the experiment (``metrics.csv``, ``summary.json``,
``checkpoints/``, ``wandb/``), beside Ray's ``params.json``, ``result.json`` and ``checkpoint_*/``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from model import names
from model.checkpoint import previous_path
from model.config import load_config
from model.curriculum import curriculum_from_dict

from .scheduler import stop_requested
from .trials import DIVERGED_KEY, REPORT_S_KEY

log = logging.getLogger(__name__)


def trial_overrides(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Trainer overrides for one trial: the space's, then seed, W&B, device and threads."""
    resources = config.get("resources", {})
    wandb = config["wandb"]
    tags = [config["label"][:64]] + ([config["family"]] if config["family"] != config["label"] else [])
    overrides = {
        **config["trainer"]["overrides"],
        "seed": config["seed"],
        "wandb.mode": wandb["mode"],
        "wandb.project": wandb["project"],
        "wandb.group": wandb["group"],
        "wandb.tags": tags,
        "wandb.dir": str(out_dir),
        "train.progress": False,
        "train.threads": max(1, int(resources.get("cpu", 1))),
    }
    if not resources.get("gpu"):
        overrides["train.device"] = "cpu"
    return overrides


def run_trial(config: dict[str, Any]) -> None:
    """The trainable: build the config and curriculum, restore if Ray hands a checkpoint, train, report."""
    from model.train import train  # torch and the model load in the worker, not in the driver

    context = tune.get_context()
    out_dir = trial_output_dir(context)
    cfg = load_config(config["trainer"]["preset"], trial_overrides(config, out_dir))
    curriculum = curriculum_from_dict(config["curriculum"], "params.json", default_name=config["family"])

    resume, start = False, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt:
            resume, start = restore_checkpoint(Path(ckpt), out_dir / "checkpoints")
        log.info("trial %s: restoring from %s at step %d", context.get_trial_id(), checkpoint.path, start)
        if resume and stop_requested(out_dir, start):  # stopped by ASHA at this step before the driver died
            log.info("trial %s: stopped at step %d already; not training on", context.get_trial_id(), start)
            return
    reporter = CheckpointReporter(out_dir / "checkpoints", out_dir / ".checkpoint_staging")

    limit = cfg.train.max_nonfinite_streak

    max_t = min(config.get("max_t") or cfg.optim.max_steps, cfg.optim.max_steps)

    in_report = [0.0]  # seconds inside tune.report so far: Ray's share of the trial (benchmarks/)

    def on_eval(row: dict[str, float], checkpoint_dir: Path) -> bool:
        t0 = time.perf_counter()
        step = int(row[names.STEP])
        with reporter.new_checkpoint(step) as written:
            tune.report({**reportable(row, limit), REPORT_S_KEY: round(in_report[0], 3)},
                        checkpoint=tune.Checkpoint.from_directory(str(written)) if written else None)
        in_report[0] += time.perf_counter() - t0
        # The trial ends itself at max_t, or when the scheduler asks (a STOP file), so that the trainer
        # writes its summary and closes its W&B run instead of dying inside tune.report.
        return (max_t <= step < cfg.optim.max_steps) or stop_requested(out_dir, step)

    run_name = f"{context.get_trial_id()} {config['label']} s{config['seed']}"
    try:
        summary = train(cfg, curriculum, out_dir, resume=resume, on_eval=on_eval,
                        wandb_run_id=_wandb_id(context.get_trial_id()), wandb_run_name=run_name)
    except SystemExit:  # Ray stops the trial (ASHA, or the search ends) from inside tune.report
        _finish_wandb("stopped")
        _drop_own_checkpoint(out_dir)
        raise
    except BaseException:
        _finish_wandb("errored")
        raise
    _drop_own_checkpoint(out_dir)
    if summary.get(names.STATUS) == "diverged":
        # The trainer's last evaluation of a diverged run comes after its last on_eval: report it here,
        # so the scheduler, the searcher and the report see the trial's end and its NaN count.
        last = last_row(out_dir / "metrics.csv")
        if last is not None:
            last[DIVERGED_KEY] = 1.0
            tune.report(reportable(last, limit))
    # Nothing returned: Ray would log a returned dict as one more result row (the summary is in
    # summary.json).


STEP_FILE = "step.json"  # beside last.pt in a checkpoint handed to Ray: the step it was written at


def restore_checkpoint(ckpt: Path, target: Path) -> tuple[bool, int]:
    """Copy Ray's checkpoint into the trainer's directory: (whether there is one to resume, its step)."""
    if not (ckpt / "last.pt").is_file():  # a checkpoint reported before any was written (older versions)
        log.warning("checkpoint %s holds no last.pt; the trial starts from step 0", ckpt)
        return False, 0
    target.mkdir(parents=True, exist_ok=True)
    previous_path(target / "last.pt").unlink(missing_ok=True)  # may be ahead of Ray's: never fall back to it
    shutil.copy2(ckpt / "last.pt", target / "last.pt")
    try:
        return True, int(json.loads((ckpt / STEP_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return True, 0  # unknown: the trainer knows; a stopped trial then ends at its next evaluation


class CheckpointReporter:
    """Hands Ray the trainer's ``last.pt`` only when it was written since the last report.

    The trainer checkpoints every ``train.checkpoint_interval`` steps, evaluates every ``eval_interval``;
    reporting its directory at every evaluation would hand Ray a stale checkpoint as a new one, or an
    empty directory before the first (a trial restored from that has nothing to load). A new file is a
    new (inode, mtime, size): ``save_checkpoint`` renames a fresh file over ``last.pt``. The checkpoint
    is staged as a hard link with its step beside it, so Ray copies ``last.pt`` alone, not the previous
    one the trainer keeps.
    """

    def __init__(self, ckpt_dir: Path, staging: Path) -> None:
        self.ckpt_dir, self.staging = ckpt_dir, staging
        self.reported = self._signature()  # a restored last.pt is Ray's already

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.ckpt_dir / "last.pt")
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @contextlib.contextmanager
    def new_checkpoint(self, step: int):
        """Yields the staged checkpoint directory, or None when the trainer wrote none at this evaluation."""
        signature = self._signature()
        if signature is None or signature == self.reported:
            yield None
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        try:
            os.link(self.ckpt_dir / "last.pt", self.staging / "last.pt")
        except OSError:
            shutil.copy2(self.ckpt_dir / "last.pt", self.staging / "last.pt")
        (self.staging / STEP_FILE).write_text(json.dumps({"step": int(step)}) + "\n")
        try:
            yield self.staging
            self.reported = signature
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)


# Every numeric metric name in model.names: each row reports all of them (absent ones, such as decoded
# recall without real validation files, as names.MISSING), so every result.json row has the same keys.
METRICS = tuple(v for k, v in vars(names).items()
                if k.isupper() and isinstance(v, str) and "/" in v and v != names.VAL_FINGERPRINT)
TEXT_KEYS = (names.VAL_FINGERPRINT,)  # reported as they are: the report checks trials sat one exam


def reportable(row: dict[str, Any], nonfinite_limit: int) -> dict[str, Any]:
    """Every value a finite float (NaN and None become ``names.MISSING``), the validation fingerprint as
    its hex string where the trainer gives one, plus the diverged flag."""
    out = {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else names.MISSING)
           for k, v in row.items() if k not in TEXT_KEYS}
    out.update({k: row[k] for k in TEXT_KEYS if isinstance(row.get(k), str) and row[k]})
    for metric in METRICS:
        out.setdefault(metric, names.MISSING)
    out[names.STEP] = int(row[names.STEP])
    out.setdefault(DIVERGED_KEY, 1.0 if out.get(names.NONFINITE_STREAK, 0) >= nonfinite_limit else 0.0)
    return out


def last_row(metrics_csv: Path) -> dict[str, Any] | None:
    """The last row of metrics.csv: numbers as floats, empty cells (the trainer's missing values) as
    ``names.MISSING``, the validation fingerprint as its text."""
    if not metrics_csv.is_file():
        return None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {k: (v if k in TEXT_KEYS else _number(v)) for k, v in rows[-1].items()}


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in ("", None) else names.MISSING
    except ValueError:
        return names.MISSING


def trial_output_dir(context: Any) -> Path:
    """Where the trainer writes: the trial's own directory under the experiment on the (shared) storage,
    so metrics.csv, summary.json and the W&B offline run land there as they are written (W&B writes from
    its own process, after the fact, which a copy-on-report sync would miss). Falls back to Ray's working
    directory (synced into the trial directory) when the storage is not a mounted file system."""
    try:
        import pyarrow.fs

        storage = context.get_storage()
        if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            path = Path(storage.trial_fs_path)
            path.mkdir(parents=True, exist_ok=True)
            return path
    except Exception as err:  # a Ray without get_storage: the working directory still works
        log.debug("trial directory on storage not available (%s); using the working directory", err)
    return Path(context.get_trial_dir())


def _drop_own_checkpoint(out_dir: Path) -> None:
    """Ray keeps the trial's checkpoints (checkpoint_NNNNNN/last.pt); the trainer's working copy is a
    duplicate once the trial has ended. At the base preset's size that halves the disk a search needs."""
    (out_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)
    previous_path(out_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)


def _finish_wandb(status: str) -> None:
    """Close the W&B run that the trainer left open when Ray stopped it mid-run (ASHA, or the search
    ending): its last rows are flushed and the actor can be reused for the next trial. A worker runs one
    trial at a time, so the process's active runs are this trial's."""
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    try:
        setup = wandb.setup()
        run = setup.most_recent_active_run
        if run is not None:
            run.summary[names.STATUS] = status
        setup.finish_all_active_runs()
    except Exception as err:  # closing the log must not mask why the trial ended
        log.warning("could not finish the W&B run: %s", err)


def _wandb_id(trial_id: str) -> str:
    """A W&B run id per trial that stays the same when the trial resumes."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in trial_id)


def trial_dirname(trial) -> str:
    """``<trial id>_<curriculum slug>``: unique and readable in a directory listing."""
    from .trials import slug

    config = trial.config or {}
    return f"{trial.trial_id}_{slug(str(config.get('label', 'trial')))}_s{config.get('seed', 0)}"


def trial_name(trial) -> str:
    config = trial.config or {}
    return f"{config.get('label', trial.trial_id)} s{config.get('seed', 0)}"
