"""Decode MGF spectra with a trained checkpoint, score the annotated ones, and write one row per spectrum.

    python -m model.evaluate --checkpoint results/train/tiny-clean_ce-s0/checkpoints/last.pt \
        --mgf tests/data/sample_preprocessed_spectra.mgf --out predictions.csv

The checkpoint's own config decides the model and how the MGF peaks are preprocessed. ``--beam-size 1``
(the default, as Casanovo's) decodes greedily; ``--beam-size K`` > 1 runs beam search with Casanovo
v4's precursor filter (50 ppm, isotopes 0 and 1), which is slower by about K but finds more peptides.

Prints AA precision, AA recall and peptide recall over the annotated spectra (DESIGN section 3), and
writes ``--out`` (CSV: file, index, title, charge, precursor_mz, truth, prediction, score,
precursor_match, peptide_match; truth and peptide_match empty for unannotated spectra) and, beside it,
``<out stem>.metrics.json`` with the metrics and counts. A file with no annotated spectrum gets
predictions only. Bad input is one line ``error: <file>: <key>: <message>`` and exit code 2, before
anything is written.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import TrainConfig, build
from .data import open_mgf
from .decoding import decode_dataset
from .errors import InputError, OneLineParser, exit_on_input_error
from .metrics import aa_match, aa_match_metrics
from .network import Spec2Pep

log = logging.getLogger(__name__)

COLUMNS = ("file", "index", "title", "charge", "precursor_mz", "truth", "prediction", "score",
           "precursor_match", "peptide_match")
PRECURSOR_TOL_PPM = 50.0
ISOTOPES = (0, 1)
MAX_LENGTH = 63  # the decoder's position embedding has 64 slots (the start token takes one)


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; InputError for anything else."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise InputError("--device", name, "allowed: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device", name, "no CUDA device is available; use auto or cpu")
    return torch.device(name)


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[Spec2Pep, TrainConfig]:
    """The model of a training checkpoint (a ``last.pt`` or a training output directory), in eval mode."""
    path = Path(checkpoint)
    if path.is_dir() and (path / "checkpoints" / "last.pt").is_file():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise InputError(path, "checkpoint", "no such file; give a checkpoint written by model.train (last.pt)")
    try:
        state = load_checkpoint(path, "cpu")
    except InputError:
        raise
    except Exception as err:  # unpickling arbitrary bytes can raise almost anything
        message = " ".join(str(err).split()) or type(err).__name__
        raise InputError(path, "checkpoint", f"not a checkpoint written by model.train ({message})") from None
    if not isinstance(state, dict) or not {"model", "config"} <= state.keys():
        raise InputError(path, "checkpoint", "not a checkpoint written by model.train (needs 'model' and 'config')")
    cfg = build(TrainConfig, state["config"], path, "config")
    model = Spec2Pep(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(path, "model", f"weights do not fit the checkpoint's config: {first}") from None
    return model.to(device).eval(), cfg


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise InputError(out, "--out", "is a directory; give a CSV file path")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(out, "--out", f"cannot write under {parent}")


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        write(fh)
    os.replace(tmp, path)


def evaluate_file(
    checkpoint: str | Path,
    mgf_paths: Sequence[str | Path],
    out: str | Path | None = "predictions.csv",
    beam_size: int = 1,
    batch_size: int = 64,
    device: str = "auto",
    max_length: int = 30,
) -> dict:
    """Decode every usable spectrum of ``mgf_paths`` and score the annotated ones.

    Returns ``aa_precision``, ``aa_recall``, ``peptide_recall`` (None when no spectrum is annotated),
    ``spectra``, ``annotated``, ``precursor_match_rate``, ``spectra_per_s``, ``beam_size`` and ``out``.
    Writes the CSV (and its ``.metrics.json``) unless ``out`` is None. Raises InputError for bad input
    before any work.
    """
    if beam_size < 1:
        raise InputError("--beam-size", beam_size, "must be >= 1 (1 decodes greedily)")
    if batch_size < 1:
        raise InputError("--batch-size", batch_size, "must be >= 1")
    if not 1 <= max_length <= MAX_LENGTH:
        raise InputError("--max-length", max_length, f"must be in 1..{MAX_LENGTH}")
    if not mgf_paths:
        raise InputError("--mgf", "[]", "give at least one MGF file")
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_out(out_path)
    torch_device = pick_device(device)
    model, cfg = load_model(checkpoint, torch_device)
    dataset = open_mgf([str(p) for p in mgf_paths], cfg, "--mgf")

    method = "greedy" if beam_size == 1 else "beam"
    chunks = range(0, len(dataset), batch_size)
    if sys.stderr.isatty():
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="decoding", unit="batch", leave=False)
    start = time.perf_counter()
    rows, scored, truths = [], [], []
    for first in chunks:
        spectra = [dataset[j] for j in range(first, min(first + batch_size, len(dataset)))]
        predictions = decode_dataset(model, spectra, method, beam_size, batch_size, None, max_length,
                                     PRECURSOR_TOL_PPM, ISOTOPES)
        for spectrum, pred in zip(spectra, predictions):
            truth = spectrum.peptide or ""
            peptide_match: bool | str = ""
            if truth:
                peptide_match = aa_match(pred.peptide or None, truth)[1]
                scored.append(pred.peptide)
                truths.append(truth)
            rows.append({
                "file": spectrum.file, "index": spectrum.index, "title": spectrum.title,
                "charge": spectrum.charge, "precursor_mz": spectrum.precursor_mz, "truth": truth,
                "prediction": pred.peptide, "score": round(pred.score, 6) if math.isfinite(pred.score) else pred.score,
                "precursor_match": pred.precursor_match, "peptide_match": peptide_match,
            })
    seconds = time.perf_counter() - start

    metrics: dict = {"aa_precision": None, "aa_recall": None, "peptide_recall": None}
    if truths:
        metrics = aa_match_metrics(scored, truths)
    summary = {
        **metrics,
        "spectra": len(rows),
        "annotated": len(truths),
        "precursor_match_rate": sum(r["precursor_match"] for r in rows) / max(len(rows), 1),
        "spectra_per_s": len(rows) / max(seconds, 1e-9),
        "beam_size": beam_size,
        "checkpoint": str(checkpoint),
        "mgf": [str(p) for p in mgf_paths],
        "out": str(out_path) if out_path is not None else None,
    }
    if out_path is not None:
        def write_csv(fh) -> None:
            writer = csv.DictWriter(fh, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

        _write_atomic(out_path, write_csv)
        _write_atomic(out_path.with_name(out_path.stem + ".metrics.json"),
                      lambda fh: fh.write(json.dumps(summary, indent=2) + "\n"))
    log.info("decoded %d spectra in %.1f s (%.1f spectra/s)", len(rows), seconds, summary["spectra_per_s"])
    return summary


def parse_args(argv: list[str] | None = None):
    parser = OneLineParser(prog="model.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="last.pt written by model.train, or its output dir")
    parser.add_argument("--mgf", required=True, action="append", help="MGF file to decode (repeatable)")
    parser.add_argument("--out", default="predictions.csv", help="CSV of predictions (default predictions.csv)")
    parser.add_argument("--beam-size", type=int, default=1,
                        help="1: greedy (default); K > 1: beam search with the precursor filter")
    parser.add_argument("--batch-size", type=int, default=64, help="spectra decoded at once (default 64)")
    parser.add_argument("--max-length", type=int, default=30, help="most tokens per peptide (default 30)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default); 1 is fastest on a busy machine")
    return parser.parse_args(argv)


@exit_on_input_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads < 0:
        raise InputError("--threads", args.threads, "must be >= 0 (0: torch's default)")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    summary = evaluate_file(args.checkpoint, args.mgf, args.out, args.beam_size, args.batch_size, args.device,
                            args.max_length)
    decoder = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}"
    print(f"{summary['spectra']} spectra decoded ({decoder}), {summary['annotated']} annotated; "
          f"precursor match {summary['precursor_match_rate']:.4f}; {summary['spectra_per_s']:.1f} spectra/s")
    if summary["annotated"]:
        print(f"aa_precision {summary['aa_precision']:.4f}  aa_recall {summary['aa_recall']:.4f}  "
              f"peptide_recall {summary['peptide_recall']:.4f}")
    else:
        print("no annotated spectra (no SEQ=): no metrics could be computed; predictions only")
    print(f"predictions in {summary['out']}")
    return summary


if __name__ == "__main__":
    main()
