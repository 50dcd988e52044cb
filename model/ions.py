"""b and y fragment ions: the one place where cleavage masses become ion m/z (DESIGN section 2).

The generator, the losses, the ion-evidence head, the metrics and ``chem.fragment_mz`` all call
``by_ions``. A cleavage after residue i splits a peptide of neutral mass M into an N-terminal part of
residue mass m (the prefix) and the rest:

    b = m + proton                 y = M - m + proton           (charge 1)
    b++ = (b + proton) / 2         y++ = (y + proton) / 2       (charge 2; counted for precursor charge >= 3)

so that b + y = M + 2 * proton. Masses are float64 throughout: an m/z of 2,000 needs it at ppm scale.
"""

from __future__ import annotations

import torch

from .chem import PROTON

ION_TYPES = ("b", "y", "b++", "y++")  # the last axis of by_ions, in this order
DOUBLY_FROM_CHARGE = 3  # doubly charged fragments are counted for precursors of this charge and up


def by_ions(prefix: torch.Tensor, neutral_mass: torch.Tensor) -> torch.Tensor:
    """Ion m/z at every cleavage.

    prefix: (..., C) residue mass N-terminal of each cleavage; neutral_mass: the peptide's neutral mass
    (residues + H2O), broadcastable to prefix. Returns (..., C, 4): b, y, b++, y++ (``ION_TYPES``).
    """
    b = prefix + PROTON
    y = neutral_mass - prefix + PROTON
    return torch.stack([b, y, (b + PROTON) / 2, (y + PROTON) / 2], dim=-1)


def cleavages(residue_masses: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix masses at the cleavages of zero-padded sequences, and which cleavages exist.

    residue_masses: (B, L) (exact or soft, zeros after each sequence); lengths: (B,).
    Returns prefix (B, L-1), the mass of residues 0..i at cleavage i, and valid (B, L-1): i < length - 1.
    """
    prefix = residue_masses.cumsum(dim=1)[:, :-1]  # (B, L-1)
    pos = torch.arange(residue_masses.shape[1] - 1, device=residue_masses.device)
    return prefix, pos[None, :] < (lengths[:, None] - 1)


def ion_mask(valid: torch.Tensor, charge: torch.Tensor) -> torch.Tensor:
    """Which ions count: valid: (B, C) cleavages; charge: (B,) precursor charge -> (B, C, 4).

    Singly charged b and y at every valid cleavage; doubly charged ones where the precursor's charge is
    at least ``DOUBLY_FROM_CHARGE``.
    """
    singly = valid[..., None].expand(*valid.shape, 2)  # (B, C, 2)
    doubly = singly & (charge >= DOUBLY_FROM_CHARGE)[:, None, None]
    return torch.cat([singly, doubly], dim=-1)
