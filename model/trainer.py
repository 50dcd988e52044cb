"""The training loop: a ``Trainer`` holds one run's model, optimiser, data and counters.

    trainer = Trainer(cfg, curriculum, out_dir, resume=True)
    summary = trainer.fit(on_eval)

``fit`` is the loop: ``step`` until an evaluation is due, then ``evaluate`` (one metrics.csv row, also to
W&B), ``checkpoint`` (atomic) and the caller's ``on_eval`` hook. Training batches are a pure function of
(seed, step) and the checkpoint holds all the rest (weights, optimiser, gates, rows, health, random
state), so a resumed run continues exactly as an uninterrupted one would have.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import names
from .batch import Batch
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, to_dict
from .curriculum import Curriculum, CurriculumState
from .data import fingerprint, make_stream, validation_sets
from .errors import InputError
from .gradients import gradient_strength
from .health import Health
from .losses import cross_entropy, precursor_loss, spectrum_loss
from .network import Spec2Pep
from .schedule import get_lr
from .validation import Hits, decoded, evaluate, hits

log = logging.getLogger(__name__)

Row = dict[str, float | str]  # every value a finite float (MISSING where none), but VAL_FINGERPRINT: a str
OnEval = Callable[[Row, Path], "bool | None"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("<config>", "train.device", f"{name!r} asked for, but no CUDA device is available")
    return torch.device(name)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norms, biases or embeddings of size 1)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))


class Losses:
    """The three losses of one forward pass, weighted by the curriculum."""

    def __init__(self, model: Spec2Pep, cfg: TrainConfig) -> None:
        self.model, self.cfg = model, cfg

    def __call__(self, batch: Batch, state: CurriculumState, device: torch.device) -> dict[str, torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = self.model(batch, batch.tokens[:, :-1])  # (B, L+1, V)
        masses = self.model.masses
        out = {"logits": logits, "ce": cross_entropy(logits, batch.tokens, self.cfg.optim.label_smoothing)}
        total = out["ce"]
        if state.spectrum_weight > 0:
            out["spectrum"] = spectrum_loss(logits, batch, masses, self.cfg.loss.spectrum_tolerance_da,
                                            self.cfg.loss.spectrum_form)
            total = total + state.spectrum_weight * out["spectrum"]
        if state.precursor_weight > 0:
            out["precursor"] = precursor_loss(logits, batch, masses, self.cfg.loss.precursor_scale_da)
            total = total + state.precursor_weight * out["precursor"]
        out["total"] = total
        return out


class Interval:
    """Running means of the training losses and accuracies between two evaluations (finite steps only)."""

    KEYS = {"total": names.TRAIN_LOSS, "ce": names.TRAIN_CE, "spectrum": names.TRAIN_SPECTRUM,
            "precursor": names.TRAIN_PRECURSOR}

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS.values(), 0.0)
        self.counts = dict.fromkeys(self.KEYS.values(), 0)
        self.hits = Hits()
        self.steps = 0  # every step, finite or not

    def add(self, parts: dict[str, torch.Tensor], tokens: torch.Tensor) -> None:
        for part, key in self.KEYS.items():
            if part in parts:
                self.sums[key] += float(parts[part].detach())
                self.counts[key] += 1
        self.hits = self.hits + hits(parts["logits"].detach(), tokens)

    def row(self) -> Row:
        out: Row = {k: self.sums[k] / self.counts[k] if self.counts[k] else names.MISSING for k in self.sums}
        out[names.TRAIN_ACCURACY] = self.hits.token_accuracy
        out[names.TRAIN_RESIDUE_ACCURACY] = self.hits.residue_accuracy
        return out


class MetricsFile:
    """metrics.csv: one row per evaluation; rewritten whole from the history, so a resume never duplicates rows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        columns = list(dict.fromkeys(k for row in rows for k in row))
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v == names.MISSING else v) for k, v in row.items()})
        os.replace(tmp, self.path)


def _finite(row: Row) -> Row:
    """Every number as a finite float (NaN and inf become MISSING); strings (the fingerprint) as they are."""
    out: Row = {}
    for key, value in row.items():
        out[key] = value if isinstance(value, str) else float(value) if math.isfinite(float(value)) else names.MISSING
    return out


class Trainer:
    """One training run under ``curriculum``: set up (fresh, resumed or initialised from a checkpoint), then ``fit``."""

    def __init__(self, cfg: TrainConfig, curriculum: Curriculum, out_dir: str | Path, *, resume: bool = False,
                 init_from: str | Path | None = None, wandb_run_id: str | None = None) -> None:
        self.cfg, self.curriculum = cfg, curriculum
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        curriculum.validate_steps(cfg.optim.max_steps, curriculum.name)
        self.device = pick_device(cfg.train.device)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)

        self.model = Spec2Pep(cfg.model).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.losses = Losses(self.model, cfg)
        self.stream = make_stream(cfg, self.device)
        self.sets = validation_sets(cfg, curriculum, self.device)
        self.fingerprint = fingerprint(self.sets)
        self.health = Health(cfg.train.spike_factor, cfg.train.spike_window)
        self.metrics_file = MetricsFile(self.out_dir / "metrics.csv")
        self.wandb_run_id = wandb_run_id
        self.wb = None

        self.iter_num, self.gates, self.rows, self.elapsed = 0, {}, [], 0.0
        self.steps_to_90: int | None = None
        self.best = self.best_token = names.MISSING  # best val residue / token accuracy
        self.state = curriculum.at(0)
        self.lr = get_lr(0, cfg.optim)
        self.interval = Interval()
        self.seconds = dict.fromkeys(("train", "evaluate", "decode", "grad_strength", "checkpoint"), 0.0)
        self._restore(resume, init_from)
        if cfg.train.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]
        self.metrics_file.write(self.rows)

    def _restore(self, resume: bool, init_from: str | Path | None) -> None:
        """``resume``: everything from checkpoints/last.pt, if there is one; else ``init_from``: weights, optimiser, step."""
        last = self.ckpt_dir / "last.pt"
        if resume and not last.is_file():
            log.info("--resume: no checkpoint in %s, starting fresh", self.ckpt_dir)
            return
        if not resume and init_from is None:
            return
        state = load_checkpoint(last if resume else Path(init_from), self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iter_num = state["step"]
        if not resume:
            log.info("initialised from %s at step %d with curriculum %s", init_from, self.iter_num, self.curriculum.name)
            return
        self.gates, self.rows, self.elapsed = state["gates"], state["rows"], state["elapsed"]
        self.steps_to_90, self.best = state["steps_to_90"], state["best"]
        self.best_token = state.get("best_token", names.MISSING)  # not in checkpoints from before residue accuracy
        self.health.load_state_dict(state["health"])
        torch.set_rng_state(state["rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.wandb_run_id = self.wandb_run_id or state.get("wandb_run_id")
        log.info("resumed from %s at step %d", last, self.iter_num)

    @property
    def diverged(self) -> bool:
        return self.health.nonfinite_streak >= self.cfg.train.max_nonfinite_streak

    def step(self) -> None:
        """One optimiser step; a non-finite loss or gradient leaves weights and optimiser untouched and is counted."""
        cfg, step = self.cfg, self.iter_num
        self.state = self.curriculum.at(step, self.gates)
        self.lr = get_lr(step, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        batch = self.stream.batch(step, self.state)
        parts = self.losses(batch, self.state, self.device)
        if 0 <= cfg.train.debug_nonfinite_from_step <= step:  # fault injection: tests of the NaN guard
            parts["total"] = parts["total"] * float("nan")
        if step == cfg.train.debug_spike_at_step:  # fault injection: tests of the spike counter
            parts["total"] = parts["total"] * (2 * cfg.train.spike_factor)
        total = parts["total"]
        finite = bool(torch.isfinite(total))
        self.optimizer.zero_grad(set_to_none=True)
        if finite:
            total.backward()
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)))
        if finite:
            self.optimizer.step()
            self.interval.add(parts, batch.tokens)
        self.optimizer.zero_grad(set_to_none=True)
        self.health.observe(float(total.detach()), finite)
        self.interval.steps += 1
        self.iter_num += 1

    def eval_due(self) -> bool:
        return self.iter_num % self.cfg.train.eval_interval == 0 or self.iter_num >= self.cfg.optim.max_steps \
            or self.diverged

    def evaluate(self, train_seconds: float) -> Row:
        """Validate, and append the row of the interval just ended (``train_seconds`` of training) to metrics.csv."""
        cfg, state, n_evals = self.cfg, self.state, len(self.rows) + 1
        row: Row = {names.STEP: self.iter_num, names.ELAPSED_S: round(self.elapsed, 3), **self.interval.row(),
                    names.TRAIN_LR: self.lr, names.TRAIN_STEPS_PER_S: self.interval.steps / max(train_seconds, 1e-9)}
        with self._timed("evaluate"):
            row.update(evaluate(self.model, self.sets, cfg, self.device))
        residue = row[names.VAL_RESIDUE_ACCURACY]
        target = cfg.train.stop_at_accuracy
        last = self.iter_num >= cfg.optim.max_steps or (target > 0 and residue >= target)
        k = cfg.train.decode_interval
        with self._timed("decode"):  # at every k-th evaluation, and at the last of a run that ends by plan
            row.update(decoded(self.model, self.sets, bool(k) and (n_evals % k == 0 or last) and not self.diverged))
        self.gates = self.curriculum.update_gates(self.gates, self.iter_num, residue)
        if self.steps_to_90 is None and residue >= 0.90:
            self.steps_to_90 = self.iter_num
        self.best, self.best_token = max(self.best, residue), max(self.best_token, row[names.VAL_ACCURACY])
        row[names.BEST_VAL_RESIDUE_ACCURACY], row[names.BEST_VAL_ACCURACY] = self.best, self.best_token
        row.update({names.SPECTRUM_WEIGHT: state.spectrum_weight, names.PRECURSOR_WEIGHT: state.precursor_weight,
                    names.MIN_LENGTH: state.min_length, names.MAX_LENGTH: state.max_length,
                    names.NOISE_PEAKS: state.noise_peaks})
        for loss, key in names.INTRO_STEP_NAMES.items():
            intro = self.curriculum.intro_step(loss, self.gates)
            row[key] = float(intro) if intro is not None else names.MISSING
        for loss in names.GRAD_NAMES:
            row.update(dict.fromkeys(names.GRAD_NAMES[loss] + names.GRAD_STD_NAMES[loss], names.MISSING))
        every = cfg.train.grad_strength_interval
        active = state.spectrum_weight > 0 or state.precursor_weight > 0
        if active and not self.diverged and every and n_evals % every == 0:
            # The batches the stream gives at the next steps: distinct, deterministic, and not consumed.
            batches = [self.stream.batch(self.iter_num + i, state) for i in range(cfg.train.grad_strength_batches)]
            with self._timed("grad_strength"):
                row.update(gradient_strength(self.model, self.losses, batches, state, self.device))
        row.update({names.NAN_COUNT: self.health.nan_count, names.SPIKE_COUNT: self.health.spike_count,
                    names.STEPS_TO_90: float(self.steps_to_90) if self.steps_to_90 is not None else names.MISSING,
                    names.NONFINITE_STREAK: self.health.nonfinite_streak, names.VAL_FINGERPRINT: self.fingerprint})
        row = {**_finite(row), names.STEP: self.iter_num}
        self.rows.append(row)
        self.metrics_file.write(self.rows)
        if self.wb is not None:
            self.wb.log(row)
        self.interval = Interval()
        return row

    def checkpoint_due(self) -> bool:
        every = self.cfg.train.checkpoint_interval
        n_evals = len(self.rows)
        return not every or n_evals % max(1, every // self.cfg.train.eval_interval) == 0 \
            or self.iter_num >= self.cfg.optim.max_steps

    def checkpoint(self) -> None:
        """Write checkpoints/last.pt atomically: everything a resume needs to continue exactly."""
        with self._timed("checkpoint"):
            save_checkpoint(self.ckpt_dir / "last.pt", {
                "model": getattr(self.model, "_orig_mod", self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.iter_num, "gates": self.gates,
                "rows": self.rows, "elapsed": self.elapsed, "steps_to_90": self.steps_to_90, "best": self.best,
                "best_token": self.best_token, "health": self.health.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "wandb_run_id": self.wb.id if self.wb is not None else self.wandb_run_id,
                "config": to_dict(self.cfg), "curriculum": self.curriculum.to_dict(),
            })

    def fit(self, on_eval: OnEval | None = None, wandb_run_name: str | None = None) -> dict:
        """Train to ``optim.max_steps``, or until diverged, stopped by ``on_eval`` or at ``stop_at_accuracy``.

        ``on_eval(row, checkpoint_dir)`` runs after every evaluation, once that step's checkpoint is on disk;
        returning True stops training there (status ``stopped``). Returns the summary (also summary.json).
        """
        cfg, status = self.cfg, "completed"
        self._open_wandb(wandb_run_name)
        bar = None
        if cfg.train.progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=cfg.optim.max_steps, initial=self.iter_num, desc=self.curriculum.name, unit="step",
                       leave=False)
        try:
            tick = time.perf_counter()
            while self.iter_num < cfg.optim.max_steps:
                self.step()
                if bar is not None:
                    bar.update(1)
                if not self.eval_due():
                    continue
                train_seconds = time.perf_counter() - tick
                self.elapsed += train_seconds
                self.seconds["train"] += train_seconds
                row = self.evaluate(train_seconds)
                if self.checkpoint_due():
                    self.checkpoint()
                log.info("step %d  val/residue_accuracy %.4f  val/token_accuracy %.4f  val_easy/residue_accuracy "
                         "%.4f  val/peptide_recall %s  nan %d  spikes %d", self.iter_num,
                         row[names.VAL_RESIDUE_ACCURACY], row[names.VAL_ACCURACY], row[names.VAL_EASY_RESIDUE_ACCURACY],
                         _fmt(row[names.VAL_PEPTIDE_RECALL]), self.health.nan_count, self.health.spike_count)
                if self.diverged:
                    status = "diverged"
                    break
                if on_eval is not None and on_eval(row, self.ckpt_dir):
                    status = "stopped"
                    break
                if cfg.train.stop_at_accuracy and row[names.VAL_RESIDUE_ACCURACY] >= cfg.train.stop_at_accuracy:
                    status = "reached_target"
                    break
                tick = time.perf_counter()
        except BaseException:
            if self.wb is not None:  # close the W&B run of a crashed or interrupted training, so its files are whole
                self.wb.run.finish(exit_code=1)
            raise
        finally:
            if bar is not None:
                bar.close()
        summary = self.summary(status)
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if self.wb is not None:
            self.wb.finish(summary)
        return summary

    def summary(self, status: str) -> dict:
        """The last row, with the run's status and health; steps to 90% is an int, or None if never."""
        last = self.rows[-1] if self.rows else {}
        return {names.STATUS: status, names.FINAL_STEP: self.iter_num, **last,
                names.NAN_COUNT: self.health.nan_count, names.SPIKE_COUNT: self.health.spike_count,
                names.STEPS_TO_90: self.steps_to_90, names.BEST_VAL_ACCURACY: self.best_token,
                names.BEST_VAL_RESIDUE_ACCURACY: self.best, names.VAL_FINGERPRINT: self.fingerprint}

    def _open_wandb(self, run_name: str | None) -> None:
        if self.cfg.wandb.mode == "disabled":
            return
        from .wandb_log import WandbRun

        run_config = {"config": to_dict(self.cfg), "curriculum": self.curriculum.to_dict(), **self.curriculum.params()}
        self.wb = WandbRun(self.cfg.wandb, self.out_dir, self.wandb_run_id, run_name, run_config)

    def _timed(self, key: str) -> _Timer:
        return _Timer(self.seconds, key)


class _Timer:
    """``with`` block that adds its wall time to ``seconds[key]`` (what the trainer benchmark reads)."""

    def __init__(self, seconds: dict[str, float], key: str) -> None:
        self.seconds, self.key = seconds, key

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.seconds[self.key] += time.perf_counter() - self.start


def _fmt(value: float | str) -> str:
    return "-" if value == names.MISSING else f"{value:.4f}"
