"""Trainer benchmark: synthetic generation speed, training speed, time to 90% residue accuracy on clean 7-10
peptides, and what evaluation, decoding and gradient strength cost beside training.

    python benchmarks/trainer.py            # tiny preset, 2 threads
    python benchmarks/trainer.py --threads 1 --config tiny
    python benchmarks/trainer.py --decode-interval 1   # decode at every evaluation, to time each decode

Prints the figures and writes them to results/benchmarks/trainer.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from model import names
from model.config import load_config
from model.curriculum import clean_ce
from model.network import Spec2Pep
from model.synthetic import generate, step_generator
from model.trainer import Losses, Trainer, make_optimizer


def generator_rate(cfg, n_batches: int = 200) -> float:
    """Synthetic spectra per second, generated alone (clean 7-10, the training batch size)."""
    for step in range(5):
        generate(cfg.data.batch_size, 7, 10, 0, cfg.data, step_generator(0, step, "cpu"))
    start = time.perf_counter()
    for step in range(n_batches):
        generate(cfg.data.batch_size, 7, 10, 0, cfg.data, step_generator(0, step, "cpu"))
    return n_batches * cfg.data.batch_size / (time.perf_counter() - start)


def step_rate(cfg, n_steps: int = 60) -> float:
    """Training steps per second (forward, backward, optimiser step), on pre-generated batches."""
    model = Spec2Pep(cfg.model)
    optimizer = make_optimizer(model, cfg)
    losses = Losses(model, cfg)
    from model.curriculum import CurriculumState

    state = CurriculumState("bench", 7, 10, 0, 0.0, 0.0)
    batches = [generate(cfg.data.batch_size, 7, 10, 0, cfg.data, step_generator(0, s, "cpu")) for s in range(n_steps)]
    for i, batch in enumerate(batches):
        if i == 10:
            start = time.perf_counter()
        parts = losses(batch, state, torch.device("cpu"))
        optimizer.zero_grad()
        parts["total"].backward()
        optimizer.step()
    return (n_steps - 10) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-interval", type=int, help="override train.decode_interval")
    parser.add_argument("--out", default="results/benchmarks/trainer.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {"wandb.mode": "disabled", "train.progress": False, "train.threads": args.threads}
    if args.decode_interval is not None:
        overrides["train.decode_interval"] = args.decode_interval
    cfg = load_config(args.config, overrides)

    gen = generator_rate(cfg)
    steps = step_rate(cfg)
    consumed = steps * cfg.data.batch_size
    print(f"synthetic spectra/s generated alone:   {gen:,.0f}")
    print(f"synthetic spectra/s consumed training: {consumed:,.0f}  ({steps:.2f} steps/s x batch {cfg.data.batch_size})")
    print(f"generator headroom:                    {gen / consumed:,.0f}x")

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(cfg, clean_ce(cfg.optim.max_steps), Path(tmp))
        summary = trainer.fit()
        wall = time.perf_counter() - start
    reached = summary[names.STEPS_TO_90]
    print(f"time to val/residue_accuracy >= 0.90 (clean 7-10, {cfg.optim.max_steps} step budget): "
          f"{'never' if reached is None else f'{reached} steps'}, {wall / 60:.2f} wall minutes "
          f"(final residue accuracy {summary[names.VAL_RESIDUE_ACCURACY]:.4f}, token accuracy "
          f"{summary[names.VAL_ACCURACY]:.4f}, status {summary[names.STATUS]})")

    seconds = trainer.seconds
    evals = len(trainer.rows)
    decodes = sum(row[names.VAL_PEPTIDE_RECALL] != names.MISSING for row in trainer.rows)
    per_decode = seconds["decode"] / decodes if decodes else float("nan")
    train_per_eval = seconds["train"] / max(evals, 1)
    print(f"seconds: training {seconds['train']:.1f}, teacher-forced evaluation {seconds['evaluate']:.1f} "
          f"({evals} evaluations), decoding {seconds['decode']:.1f} ({decodes} decodes of {cfg.data.val_size} "
          f"spectra, {per_decode:.2f} s each), gradient strength {seconds['grad_strength']:.1f}, "
          f"checkpoints {seconds['checkpoint']:.1f}")
    print(f"decoding's share of training time: {seconds['decode'] / seconds['train']:.1%} at decode_interval "
          f"{cfg.train.decode_interval}; one decode per {cfg.train.eval_interval}-step evaluation would be "
          f"{per_decode / train_per_eval:.1%}")
    figures = {
        "config": args.config, "threads": args.threads, "batch_size": cfg.data.batch_size,
        "generator_spectra_per_s": gen, "training_spectra_per_s": consumed, "training_steps_per_s": steps,
        "generator_headroom": gen / consumed, "steps_to_90": reached, "wall_minutes_to_stop": wall / 60,
        "final_val_residue_accuracy": summary[names.VAL_RESIDUE_ACCURACY],
        "final_val_token_accuracy": summary[names.VAL_ACCURACY], "status": summary[names.STATUS],
        "seconds": seconds, "evaluations": evals, "decodes": decodes, "seconds_per_decode": per_decode,
        "decode_interval": cfg.train.decode_interval,
        "decode_share_of_training": seconds["decode"] / seconds["train"],
        "one_decode_per_evaluation_share": per_decode / train_per_eval,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
