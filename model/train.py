"""Train a de novo sequencing transformer under a loss curriculum.

    python -m model.train --config model/configs/tiny.yaml
    python -m model.train --config base --curriculum revised --out results/train/revised --max-steps 50000

Every ``train.eval_interval`` steps: validation metrics go to ``metrics.csv`` (and W&B), a checkpoint
is written atomically, and the caller's ``on_eval`` hook runs (the Ray trainable reports from it).
``--resume`` continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import argparse
import csv
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
from .config import TrainConfig, load_config, read_yaml, resolve_preset, to_dict
from .curriculum import AUX_LOSSES, Curriculum, CurriculumState, clean_ce, load_curriculum
from .data import collate, make_stream, open_mgf, validation_sets
from .errors import InputError, OneLineParser, exit_on_input_error
from .health import Health
from .losses import cross_entropy, hard_coverage, precursor_loss, spectrum_loss
from .network import Spec2Pep
from .schedule import get_lr

log = logging.getLogger(__name__)

OnEval = Callable[[dict[str, float], Path], "bool | None"]


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


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) teacher-forced argmax hits over non-PAD targets (STOP included)."""
    mask = targets != 0
    return int(((logits.argmax(dim=-1) == targets) & mask).sum()), int(mask.sum())


@torch.no_grad()
def evaluate(model: Spec2Pep, sets: dict[str, Batch], cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Teacher-forced token accuracy on every validation set; losses and coverage on ``val``."""
    model.eval()
    out: dict[str, float] = {}
    tol = cfg.loss.spectrum_tolerance_da
    for name, data in sets.items():
        correct = counted = 0
        ce_sum = spec_sum = prec_sum = 0.0
        cov: list[torch.Tensor] = []
        for start in range(0, len(data), 128):
            batch = data.select(slice(start, start + 128))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(batch, batch.tokens[:, :-1])
            c, n = token_accuracy(logits, batch.tokens)
            correct, counted = correct + c, counted + n
            if name == "val":
                k = len(batch)
                ce_sum += float(cross_entropy(logits, batch.tokens)) * k
                spec_sum += float(spectrum_loss(logits, batch, model.masses, tol, cfg.loss.spectrum_form)) * k
                prec_sum += float(precursor_loss(logits, batch, model.masses, cfg.loss.precursor_scale_da)) * k
                cov.append(hard_coverage(logits, batch, model.masses, tol))
        out[f"{name}/token_accuracy"] = correct / max(counted, 1)
        if name == "val_real":
            out.update(decoded_metrics(model, data))
        if name == "val":
            out[names.VAL_CE] = ce_sum / len(data)
            out[names.VAL_SPECTRUM] = spec_sum / len(data)
            out[names.VAL_PRECURSOR] = prec_sum / len(data)
            coverage = torch.cat(cov)
            out[names.VAL_COVERAGE] = float(coverage[~coverage.isnan()].mean()) if (~coverage.isnan()).any() else 0.0
    model.train()
    return out


def decoded_metrics(model: Spec2Pep, data: Batch) -> dict[str, float]:
    """Greedy-decode real validation spectra: the field's AA precision, AA recall and peptide recall."""
    from .decoding import greedy_decode
    from .metrics import aa_match_metrics
    from .tokenizer import decode

    predictions, truths = [], []
    for start in range(0, len(data), 128):
        batch = data.select(slice(start, start + 128))
        predictions += [p.peptide or None for p in greedy_decode(model, batch)]
        truths += [decode(row) for row in batch.tokens]
    scores = aa_match_metrics(predictions, truths)
    return {names.VAL_PEPTIDE_RECALL: scores["peptide_recall"], names.VAL_AA_PRECISION: scores["aa_precision"],
            names.VAL_AA_RECALL: scores["aa_recall"]}


def gradient_strength(model: Spec2Pep, losses: Losses, batch: Batch, state: CurriculumState,
                      device: torch.device) -> dict[str, float]:
    """Norm of each active auxiliary loss's weighted gradient relative to CE's, and their cosine."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    with torch.random.fork_rng(devices=[]):
        parts = losses(batch, state, device)
        flat = {}
        keys = ["ce"] + [k for k in AUX_LOSSES if k in parts]
        for i, key in enumerate(keys):
            grads = torch.autograd.grad(parts[key], params, retain_graph=i < len(keys) - 1, allow_unused=True)
            flat[key] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                   for g, p in zip(grads, params)])
    ce_norm = flat["ce"].norm()
    for loss in AUX_LOSSES:
        if loss not in flat:
            continue
        weight = getattr(state, f"{loss}_weight")
        ratio, cosine = names.GRAD_NAMES[loss]
        aux_norm = flat[loss].norm()
        out[ratio] = float(weight * aux_norm / ce_norm.clamp(min=1e-12))
        out[cosine] = float(flat[loss] @ flat["ce"] / (aux_norm * ce_norm).clamp(min=1e-12))
    return {k: (v if math.isfinite(v) else names.MISSING) for k, v in out.items()}


class MetricsFile:
    """metrics.csv: one row per evaluation; rewritten whole from the history, so a resume never duplicates rows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, rows: list[dict[str, float]]) -> None:
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



class Interval:
    """Running means of the training losses between two evaluations."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.correct = self.counted = 0

    def add(self, key: str, value: float) -> None:
        if math.isfinite(value):
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self, key: str) -> float:
        return self.sums[key] / self.counts[key] if self.counts.get(key) else names.MISSING


def _summary(rows: list[dict[str, float]], status: str, step: int, health: Health, steps_to_90: int | None,
             best: float) -> dict:
    last = rows[-1] if rows else {}
    summary = {names.STATUS: status, names.FINAL_STEP: step, **last}
    summary.update({
        names.NAN_COUNT: health.nan_count, names.SPIKE_COUNT: health.spike_count,
        names.STEPS_TO_90: steps_to_90 if steps_to_90 is not None else None,
        names.BEST_VAL_ACCURACY: best,
    })
    return summary


def train(
    cfg: TrainConfig,
    curriculum: Curriculum,
    out_dir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    on_eval: OnEval | None = None,
    wandb_run_id: str | None = None,
    wandb_run_name: str | None = None,
) -> dict:
    """Train under ``curriculum`` for ``cfg.optim.max_steps`` steps; returns the summary (also in summary.json).

    ``on_eval(row, checkpoint_dir)`` runs after every evaluation, once that step's checkpoint is on
    disk; returning True stops training there (status ``stopped``).
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    curriculum.validate_steps(cfg.optim.max_steps, curriculum.name)
    device = pick_device(cfg.train.device)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)

    model = Spec2Pep(cfg.model).to(device)
    optimizer = make_optimizer(model, cfg)
    losses = Losses(model, cfg)
    stream = make_stream(cfg, device)
    sets = validation_sets(cfg, curriculum, device)
    if cfg.data.val_files:
        real_val = open_mgf(cfg.data.val_files, cfg, "data.val_files")
        annotated = [i for i in range(len(real_val)) if real_val.peptides[i]]
        if not annotated:
            raise InputError(cfg.data.val_files[0], "data.val_files", "no annotated spectrum (SEQ=) to validate on")
        sets["val_real"] = collate([real_val[i] for i in annotated], cfg.model.max_peaks, device)
    health = Health(cfg.train.spike_factor, cfg.train.spike_window)
    metrics_file = MetricsFile(out_dir / "metrics.csv")

    step, gates, rows, elapsed = 0, {}, [], 0.0
    steps_to_90: int | None = None
    best = names.MISSING
    last_ckpt = ckpt_dir / "last.pt"
    if resume and last_ckpt.is_file():
        state = load_checkpoint(last_ckpt, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, gates, rows, elapsed = state["step"], state["gates"], state["rows"], state["elapsed"]
        steps_to_90, best = state["steps_to_90"], state["best"]
        health.load_state_dict(state["health"])
        torch.set_rng_state(state["rng"])
        wandb_run_id = wandb_run_id or state.get("wandb_run_id")
        log.info("resumed from %s at step %d", last_ckpt, step)
    elif resume:
        log.info("--resume: no checkpoint in %s, starting fresh", ckpt_dir)
    elif init_from is not None:
        state = load_checkpoint(Path(init_from), device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("initialised from %s at step %d with curriculum %s", init_from, step, curriculum.name)
    if cfg.train.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    metrics_file.write(rows)

    wb = None
    if cfg.wandb.mode != "disabled":
        from .wandb_log import WandbRun

        run_config = {"config": to_dict(cfg), "curriculum": curriculum.to_dict(), **curriculum.params()}
        wb = WandbRun(cfg.wandb, out_dir, wandb_run_id, wandb_run_name, run_config)

    try:
        progress = None
        if cfg.train.progress and sys.stderr.isatty():
            from tqdm import tqdm

            progress = tqdm(total=cfg.optim.max_steps, initial=step, desc=curriculum.name, unit="step", leave=False)

        status = "completed"
        interval = Interval()
        tick = time.perf_counter()
        interval_start, steps_in_interval = tick, 0
        debug_nan = cfg.train.debug_nonfinite_from_step
        while step < cfg.optim.max_steps:
            state = curriculum.at(step, gates)
            lr = get_lr(step, cfg.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = stream.batch(step, state)
            parts = losses(batch, state, device)
            total = parts["total"]
            if 0 <= debug_nan <= step:
                total = total * float("nan")  # fault injection for tests of the NaN guard
            finite = bool(torch.isfinite(total))
            if finite:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                finite = bool(torch.isfinite(grad_norm))
            if finite:
                optimizer.step()
            else:
                optimizer.zero_grad(set_to_none=True)
            health.observe(float(total.detach()), finite)
            if finite:
                interval.add(names.TRAIN_LOSS, float(total.detach()))
                interval.add(names.TRAIN_CE, float(parts["ce"].detach()))
                for loss, key in (("spectrum", names.TRAIN_SPECTRUM), ("precursor", names.TRAIN_PRECURSOR)):
                    if loss in parts:
                        interval.add(key, float(parts[loss].detach()))
                c, n = token_accuracy(parts["logits"].detach(), batch.tokens)
                interval.correct, interval.counted = interval.correct + c, interval.counted + n
            step += 1
            steps_in_interval += 1
            if progress is not None:
                progress.update(1)

            diverged = health.nonfinite_streak >= cfg.train.max_nonfinite_streak
            if step % cfg.train.eval_interval and step < cfg.optim.max_steps and not diverged:
                continue

            # Evaluation, checkpoint, hooks.
            now = time.perf_counter()
            elapsed += now - tick
            tick = now
            row: dict[str, float] = {names.STEP: step, names.ELAPSED_S: round(elapsed, 3)}
            for key in (names.TRAIN_LOSS, names.TRAIN_CE, names.TRAIN_SPECTRUM, names.TRAIN_PRECURSOR):
                row[key] = interval.mean(key)
            row[names.TRAIN_ACCURACY] = interval.correct / interval.counted if interval.counted else names.MISSING
            row[names.TRAIN_LR] = lr
            row[names.TRAIN_STEPS_PER_S] = steps_in_interval / max(now - interval_start, 1e-9)
            row.update(evaluate(model, sets, cfg, device))
            accuracy = row[names.VAL_ACCURACY]
            gates = curriculum.update_gates(gates, step, accuracy)
            if steps_to_90 is None and accuracy >= 0.90:
                steps_to_90 = step
            best = max(best, accuracy)
            row[names.BEST_VAL_ACCURACY] = best
            row[names.SPECTRUM_WEIGHT] = state.spectrum_weight
            row[names.PRECURSOR_WEIGHT] = state.precursor_weight
            row[names.MIN_LENGTH] = state.min_length
            row[names.MAX_LENGTH] = state.max_length
            row[names.NOISE_PEAKS] = state.noise_peaks
            for loss, key in names.INTRO_STEP_NAMES.items():
                intro = curriculum.intro_step(loss, gates)
                row[key] = float(intro) if intro is not None else names.MISSING
            for ratio, cosine in names.GRAD_NAMES.values():
                row[ratio] = row[cosine] = names.MISSING
            n_evals = len(rows) + 1
            active = state.spectrum_weight > 0 or state.precursor_weight > 0
            if active and not diverged and cfg.train.grad_strength_interval and n_evals % cfg.train.grad_strength_interval == 0:
                row.update(gradient_strength(model, losses, batch, state, device))
            row[names.NAN_COUNT] = health.nan_count
            row[names.SPIKE_COUNT] = health.spike_count
            row[names.STEPS_TO_90] = float(steps_to_90) if steps_to_90 is not None else names.MISSING
            row[names.NONFINITE_STREAK] = health.nonfinite_streak
            row = {k: (float(v) if math.isfinite(float(v)) else names.MISSING) for k, v in row.items()}
            row[names.STEP] = step
            rows.append(row)
            metrics_file.write(rows)
            if wb is not None:
                wb.log(row)
            interval = Interval()
            interval_start, steps_in_interval = time.perf_counter(), 0

            every = cfg.train.checkpoint_interval
            if not every or n_evals % max(1, every // cfg.train.eval_interval) == 0 or step >= cfg.optim.max_steps:
                save_checkpoint(last_ckpt, {
                    "model": (getattr(model, "_orig_mod", model)).state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "gates": gates, "rows": rows, "elapsed": elapsed, "steps_to_90": steps_to_90,
                    "best": best, "health": health.state_dict(), "rng": torch.get_rng_state(),
                    "wandb_run_id": wb.id if wb is not None else wandb_run_id,
                    "config": to_dict(cfg), "curriculum": curriculum.to_dict(),
                })
            log.info("step %d  val/token_accuracy %.4f  val_easy %.4f  nan %d  spikes %d", step, accuracy,
                     row[names.VAL_EASY_ACCURACY], health.nan_count, health.spike_count)
            if diverged:
                status = "diverged"
                break
            if on_eval is not None and on_eval(row, ckpt_dir):
                status = "stopped"
                break
            if cfg.train.stop_at_accuracy and accuracy >= cfg.train.stop_at_accuracy:
                status = "reached_target"
                break
            tick = time.perf_counter()

        if progress is not None:
            progress.close()
    except BaseException:
        if wb is not None:  # close the W&B run of a crashed or interrupted training, so its files are whole
            wb.run.finish(exit_code=1)
        raise
    summary = _summary(rows, status, step, health, steps_to_90, best)
    (out_dir / "summary.json").write_text(_json(summary))
    if wb is not None:
        wb.finish(summary)
    return summary


def _json(obj: dict) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="config YAML or preset name (tiny, base)")
    parser.add_argument("--curriculum", help="curriculum YAML or shipped name (original, delayed, current, revised, conservative)")
    parser.add_argument("--out", help="output directory (default results/train/<config>-<curriculum>-s<seed>)")
    parser.add_argument("--max-steps", type=int, help="override optim.max_steps")
    parser.add_argument("--seed", type=int, help="override seed")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    parser.add_argument("--init-from", help="start this curriculum from a checkpoint's weights, optimiser and step")
    parser.add_argument("--wandb-run-id", help="continue this W&B run (e.g. nbs1e6hk)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=5e-4 (repeatable)")
    return parser.parse_args(argv)


def build_run(args: argparse.Namespace) -> tuple[TrainConfig, Curriculum, Path]:
    """Config, curriculum and output directory from the command line; every input checked first."""
    import yaml

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise InputError("--set", item, "expected KEY=VALUE, e.g. optim.lr=5e-4")
        key, value = item.split("=", 1)
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError("--set", key, f"malformed YAML value {value!r}, e.g. optim.betas=[0.9,0.98]") from None
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise InputError("--max-steps", args.max_steps, "must be >= 1")
        overrides["optim.max_steps"] = args.max_steps
        if "optim.warmup_steps" not in overrides:  # a shorter run gets a warm-up that fits in it
            preset_warmup = read_yaml(resolve_preset(args.config)).get("optim", {}).get("warmup_steps", 0)
            if isinstance(preset_warmup, int) and preset_warmup > args.max_steps:
                overrides["optim.warmup_steps"] = args.max_steps // 10
    if args.seed is not None:
        overrides["seed"] = args.seed
    cfg = load_config(args.config, overrides)
    name = args.curriculum or cfg.curriculum
    curriculum = load_curriculum(name) if name else clean_ce(cfg.optim.max_steps)
    curriculum.validate_steps(cfg.optim.max_steps, args.curriculum or args.config)
    for loss, intro in curriculum.events().items():
        if intro >= cfg.optim.max_steps:
            log.warning("curriculum %s introduces the %s loss at step %d, after the last step (%d): "
                        "this run never uses it", curriculum.name, loss, intro, cfg.optim.max_steps)
    if args.init_from and not Path(args.init_from).is_file():
        raise InputError(args.init_from, "--init-from", "no such checkpoint file")
    if args.resume and args.init_from:
        raise InputError("--resume", "--init-from", "give one of them, not both")
    stem = Path(args.config).stem
    out = Path(args.out) if args.out else Path("results") / "train" / f"{stem}-{curriculum.name}-s{cfg.seed}"
    return cfg, curriculum, out


@exit_on_input_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg, curriculum, out = build_run(args)
    summary = train(cfg, curriculum, out, resume=args.resume, init_from=args.init_from,
                    wandb_run_id=args.wandb_run_id)
    steps_to_90 = summary.get(names.STEPS_TO_90)
    print(f"{summary[names.STATUS]} at step {summary[names.FINAL_STEP]}: "
          f"val/token_accuracy {summary.get(names.VAL_ACCURACY, float('nan')):.4f}, "
          f"steps to 90% {steps_to_90 if steps_to_90 is not None else 'never'}, "
          f"NaN steps {summary[names.NAN_COUNT]}, spikes {summary[names.SPIKE_COUNT]}; "
          f"metrics in {out / 'metrics.csv'}")
    return summary


if __name__ == "__main__":
    main()
