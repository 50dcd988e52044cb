"""Realism statistics of annotated spectra (DESIGN section 3), measured the same way for real and synthetic.

Both kinds pass through the project's preprocessing first (``model.mgf.preprocess``: peaks in 50-2,500 m/z,
none within 2 Da of the precursor m/z at any charge up to the precursor's, the 150 most intense, the highest
scaled to 1). Real spectra are read with ``MgfDataset``, which also takes the square root of intensities;
synthetic ones are the model's input already, so they are not square-rooted again: both sides are then
what the model sees.

Each peak gets one label, the first that fits within ``TOLERANCE_DA``:

- ``by``: a b or y ion of the annotated peptide at charge 1, and at charge 2 for precursor charge >= 3;
- ``isotope``: a b/y ion whose monoisotopic peak is present, plus 1.003355 / z;
- ``loss``: a b/y ion minus H2O or NH3 (divided by the ion's charge);
- ``a``: a b ion minus CO (divided by the ion's charge);
- ``immonium``: a residue of the peptide minus CO plus a proton;
- ``other``: none of these (noise, internal fragments, anything else).

Per spectrum: the peak count; the share of peaks and of intensity labelled ``by``; the share of cleavages
with a b or y ion (at any counted charge); the share of theoretical b/y ions present (the seeds' "coverage");
the share of peaks with each label. A set of spectra is summarised by ``summarize``: medians for the
DESIGN statistics, means for the label shares (most spectra have 0-2 isotope or a-ion peaks, so their
medians jump between 0 and a few percent), and quartiles of the pooled intensities of ``by`` and ``other``
peaks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .batch import Batch
from .chem import C13_DELTA, CO, H2O, NH3, PROTON, residue_masses
from .ions import DOUBLY_FROM_CHARGE, by_ions
from .mgf import MgfDataset, PreprocessConfig, preprocess
from .tokenizer import mass_table

TOLERANCE_DA = 0.05
LABELS = ("by", "isotope", "loss", "a", "immonium", "other")  # in the order a peak is tried
_ION_CHARGE = np.array([1, 1, 2, 2])  # of the last axis of by_ions: b, y, b++, y++
_IS_B = np.array([True, False, True, False])


@dataclass(frozen=True)
class Annotated:
    """One preprocessed spectrum and its peptide."""

    mz: np.ndarray  # (N,) float64
    intensity: np.ndarray  # (N,) float64, the highest 1
    residue_masses: np.ndarray  # (L,) float64, an N-terminal modification folded into the first residue
    charge: int


@dataclass(frozen=True)
class Row:
    """One statistic of the table: its key, how spectra are summarised, and what it means."""

    key: str
    how: str  # "median" or "mean" over spectra, or "pooled" quartile over all peaks
    text: str


ROWS = (
    Row("peaks", "median", "peaks per spectrum"),
    Row("by_peaks", "median", "share of peaks on a b/y ion"),
    Row("by_intensity", "median", "share of intensity on b/y ions"),
    Row("cleavages", "median", "share of cleavages with a b or y ion"),
    Row("ion_coverage", "median", "share of b/y ions present"),
    Row("isotope_peaks", "mean", "share of peaks on a b/y isotope"),
    Row("loss_peaks", "mean", "share of peaks on b/y - H2O or - NH3"),
    Row("a_peaks", "mean", "share of peaks on an a ion"),
    Row("immonium_peaks", "mean", "share of peaks on an immonium ion"),
    Row("other_peaks", "mean", "share of peaks explained by none"),
    Row("by_intensity_q25", "pooled", "intensity of b/y peaks, 25th percentile"),
    Row("by_intensity_q50", "pooled", "intensity of b/y peaks, median"),
    Row("by_intensity_q75", "pooled", "intensity of b/y peaks, 75th percentile"),
    Row("other_intensity_q25", "pooled", "intensity of other peaks, 25th percentile"),
    Row("other_intensity_q50", "pooled", "intensity of other peaks, median"),
    Row("other_intensity_q75", "pooled", "intensity of other peaks, 75th percentile"),
)


def _near(mz: np.ndarray, targets: np.ndarray, tol: float) -> np.ndarray:
    """(N,) bool: peaks within ``tol`` of any target."""
    targets = targets.ravel()
    if targets.size == 0 or mz.size == 0:
        return np.zeros(mz.shape, dtype=bool)
    return (np.abs(mz[:, None] - targets[None, :]) <= tol).any(axis=1)


def label_peaks(spectrum: Annotated, tol: float = TOLERANCE_DA) -> tuple[np.ndarray, np.ndarray]:
    """Label every peak and find which b/y ions are present.

    Returns labels (N,) int, an index into ``LABELS``, and present (C, K) bool: the ion of type k (b, y,
    and for precursor charge >= 3 b++, y++) at cleavage c has a peak within ``tol``.
    """
    masses = torch.as_tensor(spectrum.residue_masses, dtype=torch.float64)
    ions = by_ions(masses.cumsum(0)[:-1], masses.sum() + H2O).numpy()  # (C, 4)
    kinds = 4 if spectrum.charge >= DOUBLY_FROM_CHARGE else 2
    ions, z, is_b = ions[:, :kinds], _ION_CHARGE[:kinds], _IS_B[:kinds]
    mz = spectrum.mz
    present = (np.abs(ions[:, :, None] - mz[None, None, :]) <= tol).any(axis=2) if mz.size else ions < 0
    candidates = (
        ions,  # by
        (ions + C13_DELTA / z)[present],  # isotope of a present ion
        np.concatenate([ions - H2O / z, ions - NH3 / z]),  # loss
        (ions - CO / z)[:, is_b],  # a
        np.unique(spectrum.residue_masses) - CO + PROTON,  # immonium
    )
    labels = np.full(mz.shape, len(LABELS) - 1)
    for index in reversed(range(len(candidates))):  # the first label that fits wins
        labels[_near(mz, candidates[index], tol)] = index
    return labels, present


def spectrum_stats(spectrum: Annotated, tol: float = TOLERANCE_DA) -> dict[str, float]:
    """The per-spectrum statistics (the keys of ``ROWS`` that are not pooled)."""
    labels, present = label_peaks(spectrum, tol)
    n = max(labels.size, 1)
    by = labels == LABELS.index("by")
    total = float(spectrum.intensity.sum())
    stats = {
        "peaks": float(labels.size),
        "by_peaks": by.sum() / n,
        "by_intensity": float(spectrum.intensity[by].sum()) / total if total > 0 else 0.0,
        "cleavages": float(present.any(axis=1).mean()) if present.size else 0.0,
        "ion_coverage": float(present.mean()) if present.size else 0.0,
    }
    for index, name in enumerate(LABELS[1:], start=1):
        stats[f"{name}_peaks"] = float((labels == index).sum()) / n
    return stats


def summarize(spectra: Iterable[Annotated], tol: float = TOLERANCE_DA) -> dict[str, float]:
    """The table's statistics of a set of spectra (``ROWS``), plus ``spectra``, how many were measured."""
    per, pooled = [], {"by": [], "other": []}
    for spectrum in spectra:
        per.append(spectrum_stats(spectrum, tol))
        labels, _ = label_peaks(spectrum, tol)
        for name in pooled:
            pooled[name].append(spectrum.intensity[labels == LABELS.index(name)])
    if not per:
        raise ValueError("no spectra to summarise")
    out = {"spectra": float(len(per))}
    for row in ROWS:
        if row.how == "pooled":
            name, q = row.key.split("_intensity_q")
            values = np.concatenate(pooled[name])
            out[row.key] = float(np.percentile(values, int(q))) if values.size else float("nan")
        else:
            values = np.array([p[row.key] for p in per])
            out[row.key] = float(np.median(values) if row.how == "median" else values.mean())
    return out


def real_spectra(path: str | Path, config: PreprocessConfig | None = None) -> list[Annotated]:
    """The annotated spectra of an MGF file, read and preprocessed by ``MgfDataset`` (defaults: Casanovo's)."""
    spectra = []
    with MgfDataset(path, config) as dataset:
        for spectrum in dataset:
            if spectrum.peptide:
                spectra.append(Annotated(spectrum.mz.astype(np.float64), spectrum.intensity.astype(np.float64),
                                         np.array(residue_masses(spectrum.peptide)), spectrum.charge))
    return spectra


def synthetic_spectra(batch: Batch, config: PreprocessConfig | None = None) -> list[Annotated]:
    """A synthetic batch as preprocessed spectra: the real files' preprocessing, without the square root.

    The precursor m/z is the one the batch reports, ``(precursor_mass + z * proton) / z``; a spectrum left
    with fewer than ``min_peaks`` peaks is dropped, as the reader drops real ones.
    """
    cfg = dataclasses.replace(config or PreprocessConfig(), sqrt_intensity=False)
    masses = mass_table(torch.float64)[batch.tokens.cpu()].numpy()  # (B, L+1), PAD and STOP weigh 0
    spectra = []
    for i in range(len(batch)):
        keep = batch.peak_mask[i].cpu().numpy()
        charge = int(batch.charge[i])
        precursor_mz = (float(batch.precursor_mass[i]) + charge * PROTON) / charge
        mz, intensity = batch.mz[i].cpu().numpy()[keep], batch.intensity[i].cpu().numpy()[keep]
        peaks = preprocess(mz, intensity, precursor_mz, charge, cfg)
        if peaks is not None:
            residues = masses[i][masses[i] > 0]
            spectra.append(Annotated(peaks[0].astype(np.float64), peaks[1].astype(np.float64), residues, charge))
    return spectra
