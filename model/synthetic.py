"""Synthetic annotated spectra, generated in batches on the training device.

A batch is a pure function of (seed, step, curriculum state): peptides of the stage's lengths drawn
from the 19 distinct residues, charges in [min_charge, max_charge], b and y ions at charge 1 (and 2
for precursors of charge >= 3), each kept with ``ion_keep_prob`` so that the true sequence covers about
that fraction of its theoretical ions, random intensities, ppm jitter on m/z, and ``noise_peaks``
random peaks below the precursor mass.
"""

from __future__ import annotations

import torch

from .batch import Batch
from .chem import H2O
from .config import DataConfig
from .ions import by_ions, cleavages, ion_mask
from .tokenizer import PAD, RESIDUES, STOP, TOKEN_ID, mass_table

_RESIDUE_IDS = [TOKEN_ID[r] for r in RESIDUES]
_C_ID, _M_ID = TOKEN_ID["C"], TOKEN_ID["M"]
_CAM_ID, _OX_ID = TOKEN_ID["C[Carbamidomethyl]"], TOKEN_ID["M[Oxidation]"]


def step_generator(seed: int, step: int, device: torch.device | str) -> torch.Generator:
    """A generator seeded by (seed, step): the same batch at the same step after a resume."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1))
    return gen


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
    masses_by_id = mass_table(torch.float64).to(device)
    lengths = torch.randint(min_length, max_length + 1, (n,), generator=gen, device=device)  # (B,)
    width = max_length
    pos = torch.arange(width, device=device)  # (L,)
    inside = pos[None, :] < lengths[:, None]  # (B, L)

    residue_ids = torch.tensor(_RESIDUE_IDS, device=device)
    ids = residue_ids[torch.randint(0, len(_RESIDUE_IDS), (n, width), generator=gen, device=device)]
    if cfg.fixed_carbamidomethyl:
        ids = torch.where(ids == _C_ID, torch.full_like(ids, _CAM_ID), ids)
    if cfg.oxidation_prob > 0:
        oxidize = torch.rand((n, width), generator=gen, device=device) < cfg.oxidation_prob
        ids = torch.where((ids == _M_ID) & oxidize, torch.full_like(ids, _OX_ID), ids)
    ids = torch.where(inside, ids, torch.full_like(ids, PAD))  # (B, L)

    residue_mass = masses_by_id[ids]  # (B, L), PAD weighs 0
    precursor_mass = residue_mass.sum(dim=1) + H2O  # (B,)
    charge = torch.randint(cfg.min_charge, cfg.max_charge + 1, (n,), generator=gen, device=device)

    cut, cut_valid = cleavages(residue_mass, lengths)  # (B, L-1): cleavage i lies after residue i
    ion_mz = by_ions(cut, precursor_mass[:, None]).reshape(n, -1)  # (B, 4*(L-1))
    ion_valid = ion_mask(cut_valid, charge).reshape(n, -1)
    keep = torch.rand(ion_mz.shape, generator=gen, device=device, dtype=torch.float64) < cfg.ion_keep_prob
    ion_keep = ion_valid & keep

    if cfg.jitter_ppm > 0:
        jitter = torch.randn(ion_mz.shape, generator=gen, device=device, dtype=torch.float64)
        ion_mz = ion_mz * (1.0 + jitter * cfg.jitter_ppm * 1e-6)
    ion_intensity = 0.1 + 0.9 * torch.rand(ion_mz.shape, generator=gen, device=device, dtype=torch.float64)

    if noise_peaks > 0:
        # Noise spreads over [50, precursor mass]: where real fragments lie, so it can be confused with them.
        u = torch.rand((n, noise_peaks), generator=gen, device=device, dtype=torch.float64)
        noise_mz = 50.0 + u * (precursor_mass[:, None] - 50.0).clamp(min=1.0)
        noise_intensity = 0.05 + 0.6 * torch.rand((n, noise_peaks), generator=gen, device=device, dtype=torch.float64)
        ion_mz = torch.cat([ion_mz, noise_mz], dim=1)
        ion_intensity = torch.cat([ion_intensity, noise_intensity], dim=1)
        ion_keep = torch.cat([ion_keep, torch.ones_like(noise_mz, dtype=torch.bool)], dim=1)

    ion_keep &= ion_mz <= cfg.max_mz
    mz, intensity, mask = pack_peaks(ion_mz, ion_intensity, ion_keep, max_peaks)

    tokens = torch.full((n, width + 1), PAD, dtype=torch.long, device=device)  # (B, L+1)
    tokens[:, :width] = ids
    tokens.scatter_(1, lengths[:, None], STOP)
    return Batch(mz, intensity, mask, precursor_mass, charge, tokens)


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
