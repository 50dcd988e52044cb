"""The three losses: cross-entropy, spectrum (soft b/y coverage) and precursor (soft total mass).

The auxiliary losses read the model's *soft* predicted sequence: at each residue position of the
target, the expected residue mass under the softmax. PAD and STOP positions are masked (the seeds'
spectrum loss had a bug there). Every loss is finite, with finite gradients, for every input: empty
spectra, all-PAD rows and zero intensities included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import Batch
from .chem import H2O
from .ions import by_ions, cleavages, ion_mask
from .tokenizer import PAD, STOP


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Teacher-forced CE. logits: (B, T, V); targets: (B, T) with PAD ignored."""
    if not (targets != PAD).any():
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
        ignore_index=PAD, label_smoothing=label_smoothing,
    )


def residue_mask(targets: torch.Tensor) -> torch.Tensor:
    """(B, T) True at residue positions (not PAD, not STOP)."""
    return (targets != PAD) & (targets != STOP)


def soft_masses(logits: torch.Tensor, targets: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Expected residue mass at each residue position, 0 elsewhere. -> (B, T) float64."""
    probs = logits.float().softmax(dim=-1).double()
    return (probs @ masses) * residue_mask(targets)


def theoretical_ions(residue_masses: torch.Tensor, lengths: torch.Tensor, charge: torch.Tensor):
    """b and y ion m/z of (soft or exact) sequences: charge 1, and charge 2 for precursor charge >= 3.

    residue_masses: (B, T) with zeros after each sequence; lengths: (B,); charge: (B,).
    Returns ion m/z (B, 4*(T-1)) and a validity mask of the same shape.
    """
    bsz = residue_masses.shape[0]
    cut, valid = cleavages(residue_masses, lengths)  # (B, T-1)
    neutral = residue_masses.sum(dim=1, keepdim=True) + H2O  # (B, 1)
    return by_ions(cut, neutral).reshape(bsz, -1), ion_mask(valid, charge).reshape(bsz, -1)


def match_kernel(distance: torch.Tensor, tolerance: float) -> torch.Tensor:
    """1 within tolerance (a hard match), then a Gaussian shoulder of width ``tolerance`` beyond it.

    At one-hot predictions this is the hard coverage; the shoulder gives soft predictions a gradient
    towards peaks just out of reach.
    """
    outside = (distance.abs() - tolerance).clamp(min=0) / tolerance
    return torch.exp(-0.5 * outside**2)


def coverage(ions: torch.Tensor, ion_mask: torch.Tensor, batch: Batch, tolerance: float, hard: bool = False):
    """Fraction of valid theoretical ions with an observed peak within tolerance, per spectrum.

    ions, ion_mask: (B, I). Returns coverage (B,) and a (B,) mask of spectra that have any valid ion.
    """
    dist = ions[:, :, None] - batch.mz.double()[:, None, :]  # (B, I, P)
    if hard:
        score = (dist.abs() <= tolerance).to(ions.dtype)
    else:
        score = match_kernel(dist, tolerance)
    score = score * batch.peak_mask[:, None, :]
    best = score.amax(dim=2) if score.shape[2] > 0 else ions * 0.0  # (B, I); ions * 0 keeps the graph
    n_ions = ion_mask.sum(dim=1)
    covered = (best * ion_mask).sum(dim=1)
    return covered / n_ions.clamp(min=1), n_ions > 0


def spectrum_loss(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, tolerance: float) -> torch.Tensor:
    """1 - soft coverage of the observed peaks by the soft predicted sequence, averaged over spectra."""
    targets = batch.tokens
    soft = soft_masses(logits, targets, masses)
    lengths = residue_mask(targets).sum(dim=1)
    ions, mask = theoretical_ions(soft, lengths, batch.charge)
    cov, has_ions = coverage(ions, mask, batch, tolerance)
    if not has_ions.any():
        return soft.sum().float() * 0.0
    return (1.0 - cov[has_ions]).mean().float()


def precursor_loss(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, scale_da: float = 1.0) -> torch.Tensor:
    """Huber loss of the soft predicted peptide mass against the precursor's, per residue.

    Dividing the mass error by the peptide length keeps the loss comparable across lengths: a
    0.5-residue confusion costs about as much in a 7-mer as in a 14-mer.
    """
    targets = batch.tokens
    soft = soft_masses(logits, targets, masses)
    lengths = residue_mask(targets).sum(dim=1)
    has = lengths > 0
    if not has.any():
        return soft.sum().float() * 0.0
    error = (soft.sum(dim=1) + H2O - batch.precursor_mass) / lengths.clamp(min=1)  # (B,) Da per residue
    loss = F.huber_loss(error / scale_da, torch.zeros_like(error), reduction="none", delta=1.0)
    return loss[has].mean().float()


def hard_coverage(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Hard coverage of the argmax (teacher-forced) sequence, per spectrum: (B,), NaN where no ions."""
    targets = batch.tokens
    pred = logits.argmax(dim=-1)
    pred_masses = masses[pred] * residue_mask(targets)
    ions, mask = theoretical_ions(pred_masses, residue_mask(targets).sum(dim=1), batch.charge)
    cov, has = coverage(ions, mask, batch, tolerance, hard=True)
    return torch.where(has, cov, torch.full_like(cov, float("nan")))
