"""Synthetic annotated spectra, generated in batches on the training device.

A batch is a pure function of (seed, step, curriculum state), drawn from the passed ``torch.Generator``:

- peptides of the stage's lengths from the 19 distinct residues; charges in [min_charge, max_charge];
- b and y ions at charge 1 (and 2 for precursors of charge >= 3). Each is present with its own chance:
  ``ion_keep_prob`` on average, b ions ``b_keep_ratio`` times as often as y ions, b2 at least
  ``b2_keep_prob``, the y ion N-terminal to a proline at least ``proline_keep_prob``. The true sequence
  covers about ``ion_keep_prob`` of its theoretical ions;
- companions of each present ion: its -H2O and -NH3 peaks (``neutral_loss_prob`` each), its a ion for a b
  ion (``a_ion_prob``), its 13C isotope peak (``isotope_prob``); and the immonium ion of each distinct
  residue (``immonium_prob``);
- ``noise_peaks`` peaks at random m/z between 50 and the peptide mass, spread as the unexplained peaks
  of the real sample file are (dense below the precursor m/z of a 2+ precursor, sparse above);
- intensities as in the real file after the reader's preprocessing (square root, highest 1): every peak
  at least ``INTENSITY_FLOOR``, above it log-normal with a median per peak kind (y above b, noise as
  intense as the real file's unexplained peaks); ``jitter_ppm`` Gaussian m/z error on every fragment;
- the reported precursor mass off by ``precursor_ppm`` (Gaussian), the fragments computed from the true
  one;
- then the real files' preprocessing (``data.preprocess``): peaks outside [min_mz, max_mz] (and above
  ``data.max_mz``) and within ``remove_precursor_tol`` of the precursor m/z at each charge 1..z are
  dropped (noise peaks are moved out of those windows instead, so that there are exactly ``noise_peaks``
  of them), and the ``max_peaks`` most intense are kept.

DataConfig's defaults (and ``tiny.yaml``) switch the realism keys off: b and y ions alone, each as likely,
the precursor mass exact. ``base.yaml`` holds the values measured on the real sample file; with them, 7-14
residues, the file's precursor charge (2+) and ``REALISTIC_NOISE_PEAKS`` noise peaks, every statistic of
``model.realism`` lies within 20% of the file's (``python -m benchmarks.realism --mgf FILE``). The constants
below were measured on the same file.
"""

from __future__ import annotations

import torch

from .batch import Batch
from .chem import C13_DELTA, CO, H2O, NH3, PROTON
from .config import DataConfig
from .ions import by_ions, cleavages, ion_mask
from .tokenizer import PAD, RESIDUES, STOP, TOKEN_ID, TOKENS, mass_table

REALISTIC_NOISE_PEAKS = 34  # the curriculum's noise_peaks at which synthetic spectra look like the real file

_RESIDUE_IDS = [TOKEN_ID[r] for r in RESIDUES]
_C_ID, _M_ID, _P_ID = TOKEN_ID["C"], TOKEN_ID["M"], TOKEN_ID["P"]
_CAM_ID, _OX_ID = TOKEN_ID["C[Carbamidomethyl]"], TOKEN_ID["M[Oxidation]"]
_ION_CHARGE = (1.0, 1.0, 2.0, 2.0)  # of by_ions' last axis: b, y, b++, y++
_IS_B = (True, False, True, False)

# Intensities, in the model's input scale (square-rooted, the spectrum's highest peak 1), measured on the real
# file: every peak lies above INTENSITY_FLOOR; above it, (intensity - floor) / (1 - floor) is log-normal with
# these medians and spreads (sigma of the log), and capped at 1.
INTENSITY_FLOOR = 0.3
# Peak kinds, in the order of the columns generate() builds.
KINDS = ("b", "y", "loss", "a", "isotope", "immonium", "noise")
_MEDIAN = {"b": 0.38, "y": 0.46, "loss": 0.26, "a": 0.45, "isotope": 0.27, "immonium": 0.38, "noise": 0.21}
_SIGMA = {"b": 0.58, "y": 0.58, "loss": 0.6, "a": 0.6, "isotope": 0.6, "immonium": 0.6, "noise": 0.8}
# Where the real file's unexplained peaks lie: counts in 20 equal bins of (m/z - 50) / (peptide mass - 50).
NOISE_MZ_PROFILE = (495, 457, 448, 376, 294, 280, 264, 346, 347, 272, 102, 70, 106, 92, 75, 97, 87, 61, 55, 163)


def step_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """A generator seeded by (seed, step): the same batch at the same step after a resume."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1))
    return gen


def _rand(shape, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)  # float32: chances need no more


def _randn(shape, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=device).double()


def _intensity(n: int, kind: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, F) float32 intensities of peaks whose columns are of the given kinds: kind (F,), index into ``KINDS``."""
    median = torch.tensor([_MEDIAN[k] for k in KINDS], device=kind.device)[kind]  # (F,)
    sigma = torch.tensor([_SIGMA[k] for k in KINDS], device=kind.device)[kind]
    normal = torch.randn((n, kind.shape[0]), generator=gen, device=kind.device)
    excess = (median * torch.exp(sigma * normal)).clamp(max=1.0)
    return INTENSITY_FLOOR + (1.0 - INTENSITY_FLOOR) * excess


def _peptides(n: int, min_length: int, max_length: int, cfg: DataConfig, gen: torch.Generator, device):
    """ids (B, L) with PAD after each peptide, and lengths (B,)."""
    lengths = torch.randint(min_length, max_length + 1, (n,), generator=gen, device=device)  # (B,)
    inside = torch.arange(max_length, device=device)[None, :] < lengths[:, None]  # (B, L)
    residue_ids = torch.tensor(_RESIDUE_IDS, device=device)
    ids = residue_ids[torch.randint(0, len(_RESIDUE_IDS), (n, max_length), generator=gen, device=device)]
    if cfg.fixed_carbamidomethyl:
        ids = torch.where(ids == _C_ID, torch.full_like(ids, _CAM_ID), ids)
    if cfg.oxidation_prob > 0:
        oxidize = torch.rand((n, max_length), generator=gen, device=device) < cfg.oxidation_prob
        ids = torch.where((ids == _M_ID) & oxidize, torch.full_like(ids, _OX_ID), ids)
    return torch.where(inside, ids, torch.full_like(ids, PAD)), lengths


def _keep_probability(ids: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """(B, L-1, 4) chance that each b, y, b++, y++ ion is present.

    The mean of the b and y chances is ion_keep_prob; b is b_keep_ratio times y unless y would pass 1.
    """
    p, ratio = cfg.ion_keep_prob, cfg.b_keep_ratio
    p_y = min(1.0, 2.0 * p / (1.0 + ratio))
    p_b = 2.0 * p - p_y
    base = torch.tensor([p_b, p_y, p_b, p_y], device=ids.device)
    prob = base.expand(ids.shape[0], ids.shape[1] - 1, 4).clone()
    if cfg.b2_keep_prob > 0 and ids.shape[1] > 2:
        prob[:, 1, 0] = prob[:, 1, 0].clamp(min=cfg.b2_keep_prob)
    if cfg.proline_keep_prob > 0:
        before_p = (ids[:, 1:] == _P_ID)[:, :, None] & torch.tensor([False, True, False, True], device=ids.device)
        prob = torch.where(before_p, prob.clamp(min=cfg.proline_keep_prob), prob)
    return prob


def _fragments(ids, residue_mass, lengths, mass, charge, cfg: DataConfig, gen: torch.Generator):
    """m/z (B, F), present (B, F) and intensity (B, F) of every fragment peak the peptide may give."""
    n, device = ids.shape[0], ids.device
    cut, cut_valid = cleavages(residue_mass, lengths)  # (B, L-1): cleavage i lies after residue i
    ion_mz = by_ions(cut, mass[:, None])  # (B, C, 4)
    present = ion_mask(cut_valid, charge) & (_rand(ion_mz.shape, gen, device) < _keep_probability(ids, cfg))
    z = torch.tensor(_ION_CHARGE, dtype=torch.float64, device=device)
    is_b = torch.tensor(_IS_B, device=device)
    by_kind = torch.where(is_b, KINDS.index("b"), KINDS.index("y")).repeat(ion_mz.shape[1])  # (C * 4,)
    mz, keep, kind = [ion_mz.reshape(n, -1)], [present.reshape(n, -1)], [by_kind]
    companions = (  # (shift per unit charge, probability, b ions only, kind)
        (-H2O, cfg.neutral_loss_prob, False, "loss"),
        (-NH3, cfg.neutral_loss_prob, False, "loss"),
        (-CO, cfg.a_ion_prob, True, "a"),
        (C13_DELTA, cfg.isotope_prob, False, "isotope"),
    )
    for shift, prob, b_only, name in companions:
        if prob > 0:
            shown = present & (_rand(ion_mz.shape, gen, device) < prob)
            mz.append((ion_mz + shift / z).reshape(n, -1))
            keep.append((shown & is_b if b_only else shown).reshape(n, -1))
            kind.append(torch.full_like(by_kind, KINDS.index(name)))
    if cfg.immonium_prob > 0:
        in_peptide = torch.zeros((n, len(TOKENS)), dtype=torch.bool, device=device).scatter_(1, ids, True)  # (B, V)
        is_residue = torch.tensor([t[0].isupper() for t in TOKENS], device=device)  # not PAD, STOP or acetyl
        mz.append((mass_table(torch.float64).to(device) - CO + PROTON).expand(n, -1))
        keep.append(in_peptide & is_residue & (_rand((n, len(TOKENS)), gen, device) < cfg.immonium_prob))
        kind.append(torch.full((len(TOKENS),), KINDS.index("immonium"), device=device))
    mz, keep, kind = torch.cat(mz, dim=1), torch.cat(keep, dim=1), torch.cat(kind)
    if cfg.jitter_ppm > 0:
        mz = mz * (1.0 + _randn(mz.shape, gen, device) * cfg.jitter_ppm * 1e-6)
    return mz, keep, _intensity(n, kind, gen)


def _noise_mz(n_peaks: int, mass: torch.Tensor, low: float, gen: torch.Generator) -> torch.Tensor:
    """(B, n_peaks) m/z in [low, mass], spread as NOISE_MZ_PROFILE."""
    weights = torch.tensor(NOISE_MZ_PROFILE, dtype=torch.float64, device=mass.device)
    cdf = torch.cumsum(weights, 0) / weights.sum()  # (K,)
    u = torch.rand((2, mass.shape[0], n_peaks), generator=gen, device=mass.device, dtype=torch.float64)
    bin_ = (u[0][..., None] >= cdf).sum(dim=-1).clamp(max=len(NOISE_MZ_PROFILE) - 1)  # (B, N)
    where = (bin_ + u[1]) / len(NOISE_MZ_PROFILE)  # (B, N) in [0, 1)
    return low + where * (mass[:, None] - low).clamp(min=1.0)


def _precursor_offset(mz: torch.Tensor, mass: torch.Tensor, charge: torch.Tensor) -> torch.Tensor:
    """(B, F) signed distance of each m/z from the nearest precursor m/z (M + k * proton) / k, k in 1..charge.

    The windows lie M / (k (k + 1)) apart, so the nearest is at k = round(M / (m/z - proton)).
    """
    k = torch.round(mass[:, None] / (mz - PROTON).clamp(min=1.0)).clamp(min=1).minimum(charge[:, None])
    return mz - (mass[:, None] + k * PROTON) / k


def generate(
    n: int,
    min_length: int,
    max_length: int,
    noise_peaks: int,
    cfg: DataConfig,
    gen: torch.Generator,
    device: torch.device | str = "cpu",
    max_peaks: int = 150,
) -> Batch:
    """Generate ``n`` synthetic spectra with peptide lengths in [min_length, max_length]."""
    ids, lengths = _peptides(n, min_length, max_length, cfg, gen, device)  # (B, L), (B,)
    residue_mass = mass_table(torch.float64).to(device)[ids]  # (B, L), PAD weighs 0
    mass = residue_mass.sum(dim=1) + H2O  # (B,) the true neutral mass
    charge = torch.randint(cfg.min_charge, cfg.max_charge + 1, (n,), generator=gen, device=device)

    mz, keep, intensity = _fragments(ids, residue_mass, lengths, mass, charge, cfg, gen)  # (B, F)
    measured = mass
    if cfg.precursor_ppm > 0:
        measured = mass * (1.0 + _randn(mass.shape, gen, device) * cfg.precursor_ppm * 1e-6)

    pre = cfg.preprocess
    tol = pre.remove_precursor_tol
    if noise_peaks > 0:  # drawn last: the same (seed, step) gives the same peptides and ions at any noise level
        noise = _noise_mz(noise_peaks, mass, pre.min_mz, gen)  # (B, N)
        noise_intensity = _intensity(n, torch.full((noise_peaks,), KINDS.index("noise"), device=device), gen)
        if tol > 0:  # out of the precursor windows (at most one holds a peak), so that every noise peak survives
            offset = _precursor_offset(noise, measured, charge)  # (B, N)
            away = torch.where(offset >= 0, 1.0, -1.0) * (2.0 * tol + 0.01 - offset.abs())
            noise = torch.where(offset.abs() <= tol, noise + away - offset, noise)
        mz = torch.cat([mz, noise], dim=1)
        intensity = torch.cat([intensity, noise_intensity], dim=1)
        keep = torch.cat([keep, torch.ones_like(noise, dtype=torch.bool)], dim=1)

    keep &= (mz >= pre.min_mz) & (mz <= min(pre.max_mz, cfg.max_mz))
    if tol > 0:
        keep &= _precursor_offset(mz, measured, charge).abs() > tol
    mz, intensity, mask = pack_peaks(mz, intensity, keep, max_peaks)

    tokens = torch.full((n, max_length + 1), PAD, dtype=torch.long, device=device)  # (B, L+1)
    tokens[:, :max_length] = ids
    tokens.scatter_(1, lengths[:, None], STOP)
    return Batch(mz, intensity, mask, measured, charge, tokens)


def pack_peaks(mz: torch.Tensor, intensity: torch.Tensor, keep: torch.Tensor, max_peaks: int):
    """Keep the ``max_peaks`` most intense kept peaks per row and sort them by m/z.

    mz, intensity, keep: (B, N). Returns mz, intensity (B, P) float32 and mask (B, P) bool, P <= max_peaks.
    """
    score = torch.where(keep, intensity, torch.full_like(intensity, -1.0))
    width = min(max_peaks, mz.shape[1], max(int(keep.sum(dim=1).max().item()), 1))
    top = score.topk(width, dim=1).indices  # (B, P)
    mask = keep.gather(1, top)
    sel_mz = torch.where(mask, mz.gather(1, top), torch.full_like(mz[:, :1], float("inf")))
    order = sel_mz.argsort(dim=1)
    mask = mask.gather(1, order)
    sel_mz = torch.where(mask, sel_mz.gather(1, order), torch.zeros_like(sel_mz))
    sel_int = torch.where(mask, intensity.gather(1, top).gather(1, order), torch.zeros_like(sel_mz))
    top_int = sel_int.amax(dim=1, keepdim=True).clamp(min=1e-12)
    return sel_mz.float(), (sel_int / top_int).float(), mask
