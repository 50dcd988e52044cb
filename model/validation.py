"""Validation metrics: teacher-forced accuracies, the validation losses and coverage, and decoded metrics.

Teacher-forced accuracy is the argmax against the target at every position, counted three ways:
token (every non-PAD target, STOP included: the seeds' figure), residue (residues only: what gates,
steps to 90% and rankings use, since STOP is ~9% of the targets and easy) and STOP (STOP positions only).
Decoded metrics greedy-decode a set and score the peptides with ``model.metrics.aa_match_metrics``,
with the decoding settings of ``model.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import names
from .batch import Batch
from .config import TrainConfig
from .losses import cross_entropy, hard_coverage, precursor_loss, spectrum_loss
from .tokenizer import PAD, STOP

CHUNK = 128  # spectra per teacher-forced forward pass
DECODE_CHUNK = 512  # spectra decoded at once: on 1 CPU thread ~20% faster than 128 (fewer small decoder calls)


@dataclass
class Hits:
    """Teacher-forced argmax hits, split by the kind of target; add them up over batches."""

    residue_correct: int = 0
    residues: int = 0
    stop_correct: int = 0
    stops: int = 0

    def __add__(self, other: Hits) -> Hits:
        return Hits(self.residue_correct + other.residue_correct, self.residues + other.residues,
                    self.stop_correct + other.stop_correct, self.stops + other.stops)

    @property
    def token_accuracy(self) -> float:
        return _ratio(self.residue_correct + self.stop_correct, self.residues + self.stops)

    @property
    def residue_accuracy(self) -> float:
        return _ratio(self.residue_correct, self.residues)

    @property
    def stop_accuracy(self) -> float:
        return _ratio(self.stop_correct, self.stops)


def _ratio(a: int, b: int) -> float:
    return a / b if b else names.MISSING


def hits(logits: torch.Tensor, targets: torch.Tensor) -> Hits:
    """Hits of logits (B, T, V) against targets (B, T)."""
    correct = logits.argmax(dim=-1) == targets  # (B, T)
    residue = (targets != PAD) & (targets != STOP)
    stop = targets == STOP
    return Hits(int((correct & residue).sum()), int(residue.sum()), int((correct & stop).sum()), int(stop.sum()))


def decoded_metrics(model, data: Batch) -> dict[str, float]:
    """Greedy-decode every spectrum of ``data``: ``aa_precision``, ``aa_recall`` and ``peptide_recall``."""
    from .decoding import greedy_decode
    from .evaluate import ISOTOPES, PRECURSOR_TOL_PPM
    from .metrics import aa_match_metrics
    from .tokenizer import decode

    predictions: list[str | None] = []
    for start in range(0, len(data), DECODE_CHUNK):
        batch = data.select(slice(start, start + DECODE_CHUNK))
        decoded = greedy_decode(model, batch, precursor_tol_ppm=PRECURSOR_TOL_PPM, isotopes=ISOTOPES)
        predictions += [p.peptide or None for p in decoded]
    return aa_match_metrics(predictions, [decode(row) for row in data.tokens])


def decoded(model, sets: dict[str, Batch], run: bool = True) -> dict[str, float]:
    """Decoded metrics of ``val`` and ``val_real`` (where present); all ``names.MISSING`` unless ``run``."""
    out = {}
    for name, keys in names.DECODED_NAMES.items():
        if name in sets:
            scores = decoded_metrics(model, sets[name]) if run else {}
            for key, metric in zip(keys, ("peptide_recall", "aa_precision", "aa_recall")):
                out[key] = scores.get(metric, names.MISSING)
    return out


@torch.no_grad()
def evaluate(model, sets: dict[str, Batch], cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Teacher-forced accuracies on every set; losses, STOP accuracy and hard coverage on ``val``.

    The model is evaluated in eval mode and left in training mode.
    """
    model.eval()
    out: dict[str, float] = {}
    tol = cfg.loss.spectrum_tolerance_da
    for name, data in sets.items():
        total = Hits()
        ce_sum = spec_sum = prec_sum = 0.0
        cov: list[torch.Tensor] = []
        for start in range(0, len(data), CHUNK):
            batch = data.select(slice(start, start + CHUNK))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(batch, batch.tokens[:, :-1])  # (B, L+1, V)
            total = total + hits(logits, batch.tokens)
            if name == "val":
                k = len(batch)
                ce_sum += float(cross_entropy(logits, batch.tokens)) * k
                spec_sum += float(spectrum_loss(logits, batch, model.masses, tol, cfg.loss.spectrum_form)) * k
                prec_sum += float(precursor_loss(logits, batch, model.masses, cfg.loss.precursor_scale_da)) * k
                cov.append(hard_coverage(logits, batch, model.masses, tol))  # (B,), NaN where no ions
        token, residue = names.ACCURACY_NAMES[name]
        out[token], out[residue] = total.token_accuracy, total.residue_accuracy
        if name == "val":
            out[names.VAL_STOP_ACCURACY] = total.stop_accuracy
            out[names.VAL_CE] = ce_sum / len(data)
            out[names.VAL_SPECTRUM] = spec_sum / len(data)
            out[names.VAL_PRECURSOR] = prec_sum / len(data)
            coverage = torch.cat(cov)
            known = ~coverage.isnan()
            out[names.VAL_COVERAGE] = float(coverage[known].mean()) if known.any() else 0.0
    model.train()
    return out
