"""The three losses: cross-entropy, spectrum (b/y coverage, two forms) and precursor (soft total mass).

The precursor loss and the ``soft_mass`` spectrum loss read the model's *soft* predicted sequence: at
each residue position of the target, the expected residue mass under the softmax. The
``expected_match`` spectrum loss reads the softmax itself: at each position, the expected share of the
candidate residue's b/y ions that match a peak, with the true prefix before it (teacher forcing). PAD
and STOP positions are masked (the seeds' spectrum loss had a bug there). Every loss is finite, with
finite gradients, for every input: empty spectra, all-PAD rows and zero intensities included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import Batch
from .chem import H2O
from .config import SPECTRUM_FORMS
from .ions import by_ions, cleavages, ion_mask
from .tokenizer import PAD, STOP


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Teacher-forced CE. logits: (B, T, V); targets: (B, T) with PAD ignored.

    Label smoothing moves ``label_smoothing`` of each target's mass to a uniform spread over the V - 1
    non-PAD tokens, never onto PAD: the model pins the PAD logit at -1e4, so torch's smoothing (which
    spreads over all V) would add label_smoothing / V * 1e4 nats to every loss and pull PAD upwards.
    """
    keep = targets != PAD  # (B, T)
    if not keep.any():
        return logits.sum() * 0.0
    if label_smoothing == 0.0:
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)
    logp = logits.float()[keep].log_softmax(dim=-1)  # (N, V)
    nll = -logp.gather(1, targets[keep][:, None]).squeeze(1)  # (N,)
    not_pad = torch.arange(logp.shape[1], device=logp.device) != PAD  # (V,)
    spread = -logp[:, not_pad].mean(dim=1)  # (N,) CE against the uniform over non-PAD tokens
    return ((1.0 - label_smoothing) * nll + label_smoothing * spread).mean()


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


def spectrum_loss(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, tolerance: float,
                  form: str = "soft_mass") -> torch.Tensor:
    """The spectrum loss of ``form`` (``SPECTRUM_FORMS``): a float32 scalar, 1 - a coverage in [0, 1]."""
    if form == "soft_mass":
        return soft_mass_loss(logits, batch, masses, tolerance)
    if form == "expected_match":
        return expected_match_loss(logits, batch, masses, tolerance)
    raise ValueError(f"unknown spectrum loss form {form!r}; allowed: {', '.join(SPECTRUM_FORMS)}")


def soft_mass_loss(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, tolerance: float) -> torch.Tensor:
    """1 - soft coverage of the observed peaks by the soft predicted sequence, averaged over spectra.

    The seeds' loss. A mixture of residues whose expected mass equals the true residue's earns the
    truth's credit, and a position whose expected mass is off moves every later ion: until the
    prediction is nearly one-hot the loss sees little but noise.
    """
    targets = batch.tokens
    soft = soft_masses(logits, targets, masses)
    lengths = residue_mask(targets).sum(dim=1)
    ions, mask = theoretical_ions(soft, lengths, batch.charge)
    cov, has_ions = coverage(ions, mask, batch, tolerance)
    if not has_ions.any():
        return soft.sum().float() * 0.0
    return (1.0 - cov[has_ions]).mean().float()


def nearest_peak_distance(query: torch.Tensor, batch: Batch) -> torch.Tensor:
    """query: (B, Q) float64 m/z -> (B, Q) distance to the nearest real peak; inf where a spectrum has none."""
    n_peaks = batch.mz.shape[1]
    if n_peaks == 0:
        return torch.full_like(query, float("inf"))
    inf = torch.full_like(batch.mz, float("inf"), dtype=torch.float64)
    mz = torch.where(batch.peak_mask, batch.mz.double(), inf).sort(dim=1).values  # (B, P), padding last
    right = torch.searchsorted(mz, query.contiguous()).clamp(max=n_peaks - 1)  # (B, Q)
    left = (right - 1).clamp(min=0)
    return torch.minimum((mz.gather(1, left) - query).abs(), (mz.gather(1, right) - query).abs())


def candidate_match(batch: Batch, masses: torch.Tensor, tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """What each candidate token would explain at each cleavage, with the true prefix before it.

    At residue position t, candidate v ends the prefix at (true mass of residues < t) + mass(v); its b
    and y ions (and b++, y++ for precursor charge >= 3; y against the true peptide's neutral mass) match
    a peak when one lies within ``tolerance`` (a hard match: no gradient flows through it, the loss is
    linear in the probabilities). Returns the matched share of those ions (B, T, V) float32, 0 for PAD
    and STOP, and the positions with a cleavage after them (B, T) bool: residues but the last.
    """
    targets = batch.tokens
    bsz, steps = targets.shape
    is_residue = residue_mask(targets)
    true = masses[targets] * is_residue  # (B, T) float64
    before = true.cumsum(dim=1) - true  # (B, T) true prefix mass before each position
    neutral = true.sum(dim=1) + H2O  # (B,)
    ions = by_ions(before[:, :, None] + masses, neutral[:, None, None])  # (B, T, V, 4)
    hit = nearest_peak_distance(ions.reshape(bsz, -1), batch).reshape(ions.shape) <= tolerance
    counted = ion_mask(torch.ones_like(targets[:, :1], dtype=torch.bool), batch.charge)[:, 0]  # (B, 4)
    share = (hit & counted[:, None, None, :]).sum(dim=-1) / counted.sum(dim=-1)[:, None, None]  # (B, T, V)
    share[..., [PAD, STOP]] = 0.0
    lengths = is_residue.sum(dim=1)
    cut = torch.arange(steps, device=targets.device)[None, :] < (lengths[:, None] - 1)  # (B, T)
    return share.float(), cut


def expected_match_loss(logits: torch.Tensor, batch: Batch, masses: torch.Tensor, tolerance: float) -> torch.Tensor:
    """1 - expected match share of the predicted residue's b/y ions, averaged over cleavages, then spectra.

    Linear in the probabilities: each position is scored by sum_v p(v) * share(v), so a mass-matched
    mixture (53% G + 47% S where the truth is A) earns only G's and S's own shares, and every position
    gets a residue-level signal however wrong the others are. At one-hot logits of the truth it is
    1 - the hard coverage of the true sequence (``hard_coverage``).
    """
    share, cut = candidate_match(batch, masses, tolerance)  # (B, T, V), (B, T)
    probs = logits.float().softmax(dim=-1)  # (B, T, V)
    expected = (probs * share).sum(dim=-1) * cut  # (B, T)
    n_cut = cut.sum(dim=1)  # (B,)
    has = n_cut > 0
    if not has.any():
        return probs.sum() * 0.0
    per_spectrum = expected.sum(dim=1) / n_cut.clamp(min=1)
    return (1.0 - per_spectrum[has]).mean()


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
