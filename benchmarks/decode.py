"""How many spectra per second greedy decoding and beam search (K=5, precursor filter) get through.

    python -m benchmarks.decode [--threads 2] [--checkpoint CKPT | --train-steps 150 | --random]

The model is the tiny preset (width 128, 2+2 layers). By default it is first trained for
``--train-steps`` steps of clean cross-entropy (150 reach ~90% teacher-forced token accuracy): the speed
of decoding depends on the weights through the length of what they decode (random weights rarely say
STOP, so every peptide runs to ``max_length``; ``--random`` measures that worst case). Times, on
``--threads`` CPU threads (or the GPU with ``--device cuda``): 256 synthetic clean 7-10 spectra and the
128 real spectra of tests/data/sample_preprocessed_spectra.mgf (collated with the checkpoint's
preprocessing; reading the file is not timed), in batches of ``--batch-size``. Prints the figures,
with peptide recall for context, and writes them as JSON.

On a machine busier than its cores (a search running beside it), OpenMP's spinning threads make
multi-threaded runs 10-30x slower and the figures meaningless; ``OMP_WAIT_POLICY=PASSIVE`` (set before
Python starts) or ``--threads 1`` avoids it. The JSON records the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import model.decoding as decoding
from model.batch import Batch
from model.checkpoint import load_checkpoint
from model.config import TrainConfig, build, load_config
from model.curriculum import clean_ce
from model.data import collate, open_mgf
from model.metrics import aa_match_metrics
from model.network import Spec2Pep
from model.synthetic import generate, step_generator
from model.tokenizer import decode
from model.train import train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_preprocessed_spectra.mgf"


def get_model(args: argparse.Namespace) -> tuple[Spec2Pep, TrainConfig, str]:
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        cfg = build(TrainConfig, state["config"], args.checkpoint)
        model = Spec2Pep(cfg.model)
        model.load_state_dict(state["model"])
        return model, cfg, f"checkpoint {args.checkpoint}"
    overrides = {"optim.max_steps": max(args.train_steps, 1), "optim.warmup_steps": min(20, args.train_steps),
                 "train.stop_at_accuracy": 0.0, "train.progress": False, "wandb.mode": "disabled",
                 "train.device": "cpu", "train.threads": args.threads, "train.eval_interval": 50,
                 "data.val_size": 64}
    cfg = load_config("tiny", overrides)
    if args.random:
        torch.manual_seed(0)
        return Spec2Pep(cfg.model), cfg, "random weights (seed 0)"
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, clean_ce(args.train_steps), tmp)
        state = load_checkpoint(Path(tmp) / "checkpoints" / "last.pt")
    model = Spec2Pep(cfg.model)
    model.load_state_dict(state["model"])
    accuracy = summary.get("val/token_accuracy")
    return model, cfg, f"trained {args.train_steps} steps (val token accuracy {accuracy:.3f})"


def time_decoding(model: Spec2Pep, batches: list[Batch], truths: list[str], method: str, repeats: int,
                  beam_size: int) -> dict:
    """Best of ``repeats`` wall times to decode every batch; spectra/s and peptide recall."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        preds = [p for b in batches for p in decoding.decode_batch(model, b, method, beam_size)]
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    n = len(preds)
    lengths = [len(p.tokens) for p in preds]
    return {
        "spectra": n,
        "seconds": round(best, 3),
        "spectra_per_s": round(n / best, 1),
        "mean_length": round(sum(lengths) / n, 2),
        "peptide_recall": round(aa_match_metrics([p.peptide for p in preds], truths)["peptide_recall"], 4),
        "precursor_match_rate": round(sum(p.precursor_match for p in preds) / n, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="decode with this checkpoint instead of training one")
    weights.add_argument("--random", action="store_true", help="random weights: every peptide runs to max length")
    parser.add_argument("--train-steps", type=int, default=150, help="steps to train the tiny preset first")
    parser.add_argument("--batch-size", type=int, default=64, help="spectra decoded at once")
    parser.add_argument("--spectra", type=int, default=256, help="synthetic spectra to decode")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "decode.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, cfg, weights_note = get_model(args)
    torch.set_num_threads(args.threads)  # train() sets its own
    model = model.to(args.device).eval()

    synthetic = generate(args.spectra, 7, 10, 0, cfg.data, step_generator(12345, 0, "cpu"))
    sets = {
        "synthetic_clean_7_10": (
            [synthetic.select(slice(i, i + args.batch_size)).to(args.device)
             for i in range(0, len(synthetic), args.batch_size)],
            [decode(t) for t in synthetic.tokens],
        ),
    }
    dataset = open_mgf([str(SAMPLE)], cfg, "sample")
    spectra = [dataset[i] for i in range(len(dataset))]
    sets["sample_mgf"] = (
        [collate(spectra[i: i + args.batch_size], cfg.model.max_peaks, args.device)
         for i in range(0, len(spectra), args.batch_size)],
        [s.peptide for s in spectra],
    )

    modes = [("greedy", "greedy"), (f"beam{args.beam_size}", "beam")]
    figures: dict = {
        "model": "tiny preset", "weights": weights_note, "threads": args.threads, "device": args.device,
        "batch_size": args.batch_size, "repeats": args.repeats,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
    }
    for set_name, (batches, truths) in sets.items():
        decoding.decode_batch(model, batches[0].select(slice(0, 4)), "greedy")  # warm-up
        for mode, method in modes:
            result = time_decoding(model, batches, truths, method, args.repeats, args.beam_size)
            figures[f"{set_name}/{mode}"] = result
            print(f"{set_name:22s} {mode:28s} {result['spectra_per_s']:8.1f} spectra/s  "
                  f"(mean length {result['mean_length']}, peptide recall {result['peptide_recall']:.3f}, "
                  f"precursor match {result['precursor_match_rate']:.3f})")
    print(f"model: tiny preset, {weights_note}; {args.threads} threads on {args.device}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
