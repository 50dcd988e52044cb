"""A batch of annotated spectra: the one structure the generator, the MGF reader, the model and the losses share."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A batch of annotated spectra. Peaks are sorted by m/z; padding has m/z 0 and intensity 0.

    mz, intensity: (B, P) float32; peak_mask: (B, P) bool, True for a real peak.
    precursor_mass: (B,) float64, neutral; charge: (B,) int64.
    tokens: (B, L+1) int64 target ids, each peptide followed by STOP, then PAD.
    """

    mz: torch.Tensor
    intensity: torch.Tensor
    peak_mask: torch.Tensor
    precursor_mass: torch.Tensor
    charge: torch.Tensor
    tokens: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.mz, self.intensity, self.peak_mask, self.precursor_mass, self.charge, self.tokens)

    def __len__(self) -> int:
        return self.mz.shape[0]

    def select(self, index: torch.Tensor | slice) -> Batch:
        return Batch(*(t[index] for t in self.tensors()))
