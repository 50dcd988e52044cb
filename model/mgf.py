"""Annotated or unannotated MGF files as a dataset of preprocessed spectra, read with random access.

An MGF file is plain text: optional global ``KEY=value`` lines, then one block per spectrum between
``BEGIN IONS`` and ``END IONS`` with ``TITLE``, ``PEPMASS`` (m/z [intensity]), ``CHARGE`` (``2+``, ``2``
or ``+2``), optionally ``SEQ`` (the peptide, in any notation ``model.chem.parse_peptide`` accepts),
``SCANS`` and ``RTINSECONDS``, and one ``m/z intensity`` line per peak.

``MgfDataset`` scans each file once on construction: a regular-expression pass over the bytes finds
every ``BEGIN IONS`` line, and pyteomics' ``IndexedMGF`` parses each block once to keep the usable
spectra and count the others by reason. After that, ``dataset[i]`` seeks to one block and parses only
that block, so a multi-GB file is never loaded whole nor parsed again per epoch. Peaks are
preprocessed on access by ``preprocess``, a pure function of the raw peaks.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyteomics import mgf
from pyteomics.auxiliary import OffsetIndex, PyteomicsError
from torch.utils.data import Dataset

from .annotation import (
    PRECURSOR_TOL_PPM,
    apply_fixed_mods,
    fixed_mod_tokens,
    mismatch_message,
    precursor_error_ppm,
)
from .chem import NTERM_ACETYL, PROTON, parse_peptide
from .errors import InputError

logger = logging.getLogger(__name__)

# Why a spectrum was skipped: the keys of ``MgfDataset.skipped``.
UNREADABLE = "unreadable block"
NO_CHARGE = "no charge"
SEVERAL_CHARGES = "several charges"
CHARGE_OUT_OF_RANGE = "charge out of range"
NO_PRECURSOR = "no precursor m/z"
BAD_PEPTIDE = "unknown residue or modification in SEQ"
TOO_FEW_PEAKS = "too few peaks"
MASS_MISMATCH = "SEQ mass disagrees with the precursor"  # see model.annotation
SKIP_REASONS = (
    UNREADABLE,
    NO_CHARGE,
    SEVERAL_CHARGES,
    CHARGE_OUT_OF_RANGE,
    NO_PRECURSOR,
    BAD_PEPTIDE,
    MASS_MISMATCH,
    TOO_FEW_PEAKS,
)

MGF_FORMAT = "an MGF file is plain text with one block per spectrum between BEGIN IONS and END IONS lines"
_BEGIN_IONS = re.compile(rb"^[ \t]*BEGIN IONS[ \t]*\r?$", re.MULTILINE)


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw peaks become model input (see ``preprocess``); the defaults follow Casanovo."""

    min_mz: float = 50.0  # keep peaks with min_mz <= m/z <= max_mz
    max_mz: float = 2500.0
    remove_precursor_tol: float = 2.0  # Da around the precursor m/z at every charge 1..z; 0 keeps them
    sqrt_intensity: bool = True  # tame the dynamic range
    top_k: int = 150  # keep the most intense peaks
    min_peaks: int = 5  # fewer peaks left: the spectrum is skipped
    normalize: bool = True  # scale intensities so that the highest is 1 (not unit L2 norm)
    strict: bool = False  # refuse a file with an unusable spectrum instead of skipping it
    max_charge: int = 10  # precursor charges 1..max_charge are usable
    # (residue, modification) pairs written implicitly by the file, e.g. (("C", "Carbamidomethyl"),)
    fixed_mods: tuple[tuple[str, str], ...] = ()
    precursor_tol_ppm: float = PRECURSOR_TOL_PPM  # SEQ against the precursor mass; 0 skips the check

    def __post_init__(self) -> None:
        if not 0 <= self.min_mz < self.max_mz:
            raise ValueError(f"need 0 <= min_mz < max_mz, got min_mz={self.min_mz}, max_mz={self.max_mz}")
        if not self.remove_precursor_tol >= 0:
            raise ValueError(
                f"remove_precursor_tol must be >= 0 (0 disables), got {self.remove_precursor_tol}"
            )
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 <= self.min_peaks <= self.top_k:
            raise ValueError(f"min_peaks must be in 0..top_k={self.top_k}, got {self.min_peaks}")
        if self.max_charge < 1:
            raise ValueError(f"max_charge must be >= 1, got {self.max_charge}")
        if not self.precursor_tol_ppm >= 0:
            raise ValueError(f"precursor_tol_ppm must be >= 0 (0 disables), got {self.precursor_tol_ppm}")
        fixed_mod_tokens(dict(self.fixed_mods))  # ValueError names a bad residue or modification


@dataclass
class Spectrum:
    """One preprocessed spectrum and where it came from."""

    mz: np.ndarray  # (N,) float32, ascending
    intensity: np.ndarray  # (N,) float32, same order; max 1 when normalized
    precursor_mz: float
    charge: int
    peptide: str | None  # canonical ProForma-name string (I kept as I), None when unannotated
    title: str  # TITLE, "" when absent
    index: int  # position of the spectrum's block in its file, 0-based, counting skipped blocks too
    file: str
    scans: str = ""
    rt_seconds: float | None = None


def _kept_peaks(
    mz: np.ndarray, intensity: np.ndarray, precursor_mz: float, charge: int, cfg: PreprocessConfig
) -> np.ndarray:
    """(N,) bool: peaks inside the m/z window, finite, with positive intensity, away from the precursor."""
    keep = (mz >= cfg.min_mz) & (mz <= cfg.max_mz) & np.isfinite(intensity) & (intensity > 0)
    if cfg.remove_precursor_tol > 0:
        # The precursor and its charge-reduced forms (as spectrum_utils, which Casanovo uses, removes).
        neutral = (precursor_mz - PROTON) * charge
        for z in range(1, charge + 1):
            keep &= np.abs(mz - (neutral / z + PROTON)) > cfg.remove_precursor_tol
    return keep


def preprocess(
    mz: np.ndarray, intensity: np.ndarray, precursor_mz: float, charge: int, cfg: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw peaks -> model peaks, or None when fewer than ``cfg.min_peaks`` remain.

    Steps, in order: keep the m/z window (dropping non-finite values and intensities <= 0); remove peaks
    within ``remove_precursor_tol`` Da of the precursor m/z at each charge 1..``charge``; square-root
    the intensities; keep the ``top_k`` most intense, in m/z order; refuse fewer than ``min_peaks``;
    scale intensities so the highest is 1.

    Args:
        mz: (N,) peak m/z, any order.
        intensity: (N,) peak intensities.
        precursor_mz: the precursor m/z.
        charge: the precursor charge, >= 1.
        cfg: the preprocessing settings.

    Returns:
        ``(mz, intensity)``, each (M,) float32 with M <= top_k, m/z ascending; or None.
    """
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if mz.shape != intensity.shape or mz.ndim != 1:
        raise ValueError(
            f"mz and intensity must be 1-D of one length, got shapes {mz.shape} and {intensity.shape}"
        )
    keep = _kept_peaks(mz, intensity, precursor_mz, charge, cfg)
    mz, intensity = mz[keep], intensity[keep]
    if cfg.sqrt_intensity:
        intensity = np.sqrt(intensity)
    if mz.size > cfg.top_k:
        top = np.argpartition(intensity, mz.size - cfg.top_k)[mz.size - cfg.top_k :]
        mz, intensity = mz[top], intensity[top]
    if mz.size < cfg.min_peaks or mz.size == 0:
        return None
    order = np.argsort(mz, kind="stable")
    mz, intensity = mz[order], intensity[order]
    if cfg.normalize:
        intensity = intensity / intensity.max()
    return mz.astype(np.float32), intensity.astype(np.float32)


class _PositionalIndexedMGF(mgf.IndexedMGF):
    """pyteomics' indexed MGF reader, with spectra keyed by their position in the file.

    ``IndexedMGF`` keys its byte-offset index by TITLE, so spectra without a TITLE are left out and
    spectra that share one overwrite each other; here the k-th ``BEGIN IONS`` block is key ``str(k)``.
    The block offsets are found beforehand (``_scan_blocks``) and handed in.
    """

    def __init__(self, path: Path, starts: np.ndarray, ends: np.ndarray) -> None:
        self._starts, self._ends = starts, ends
        super().__init__(
            str(path), use_header=True, convert_arrays=1, read_charges=False, warn_if_empty=False
        )

    def build_byte_index(self) -> OffsetIndex:
        index = OffsetIndex()
        for k, offsets in enumerate(zip(self._starts.tolist(), self._ends.tolist())):
            index[str(k)] = offsets
        return index


def _scan_blocks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(S,) int64 start and end byte offsets of every BEGIN IONS block; InputError if not an MGF file."""
    if not path.exists():
        raise InputError(path, "file", f"no such file; {MGF_FORMAT}")
    if path.is_dir():
        raise InputError(path, "file", f"is a directory; {MGF_FORMAT}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
            if not head:
                raise InputError(path, "file", f"is empty; {MGF_FORMAT}")
            if head.startswith(b"\x1f\x8b"):
                raise InputError(path, "file", f"is gzip-compressed: decompress it first; {MGF_FORMAT}")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                size = len(data)
                starts = np.fromiter((m.start() for m in _BEGIN_IONS.finditer(data)), dtype=np.int64)
    except OSError as err:
        raise InputError(path, "file", f"cannot be read ({err.strerror}); {MGF_FORMAT}") from None
    if starts.size == 0:
        kind = "a binary file" if b"\x00" in head else "text"
        raise InputError(path, "file", f"is {kind} with no BEGIN IONS line; {MGF_FORMAT}")
    ends = np.append(starts[1:], size)
    return starts, ends


def _open_reader(path: Path, starts: np.ndarray, ends: np.ndarray) -> _PositionalIndexedMGF:
    try:
        return _PositionalIndexedMGF(path, starts, ends)
    except (PyteomicsError, ValueError) as err:  # the global header: bad CHARGE, not UTF-8
        message = " ".join(str(err).split())
        raise InputError(path, "header", f"cannot be parsed ({message}); {MGF_FORMAT}") from None


def _charges(params: dict) -> list[int]:
    charge = params.get("charge")
    if charge is None:
        return []
    if isinstance(charge, (list, tuple)):  # pyteomics' ChargeList: "2+ and 3+" gives [2, 3]
        return [int(c) for c in charge]
    return [int(charge)]


class MgfDataset(Dataset):
    """The usable spectra of one or more MGF files, preprocessed on access.

    ``dataset[i]`` is a ``Spectrum``. Spectra that cannot be used are skipped and counted by reason in
    ``skipped`` (see ``SKIP_REASONS``), or, with ``preprocess.strict``, refused with an InputError that
    names the file and the block's position (``spectrum <k>``). A path that is not an MGF file raises
    InputError whatever ``strict`` says.

    Safe to hand to a DataLoader with workers: each process opens its own file handles.
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        preprocess: PreprocessConfig | None = None,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no MGF paths given; pass one path or a list of paths")
        self.config = preprocess if preprocess is not None else PreprocessConfig()
        self._fixed = fixed_mod_tokens(dict(self.config.fixed_mods))
        self.skipped: Counter[str] = Counter()
        self._blocks: list[tuple[np.ndarray, np.ndarray]] = []
        self._readers: list[_PositionalIndexedMGF | None] = []
        self._pid = os.getpid()
        files, positions, precursors, charges = [], [], [], []
        self.peptides: list[str | None] = []
        self.titles: list[str] = []
        self._scans: list[str] = []
        self._rts: list[float | None] = []
        lengths = []
        for f, path in enumerate(self.paths):
            starts, ends = _scan_blocks(path)
            self._blocks.append((starts, ends))
            reader = _open_reader(path, starts, ends)
            self._readers.append(reader)
            skipped = Counter()
            for k in range(starts.size):
                record, reason, detail = self._inspect(reader, k)
                if record is None:
                    if self.config.strict:
                        self.close()
                        raise InputError(path, f"spectrum {k}", detail)
                    skipped[reason] += 1
                    continue
                precursor, charge, peptide, title, scans, rt, length = record
                files.append(f)
                positions.append(k)
                precursors.append(precursor)
                charges.append(charge)
                self.peptides.append(peptide)
                self.titles.append(title)
                self._scans.append(scans)
                self._rts.append(rt)
                lengths.append(length)
            self.skipped.update(skipped)
            kept = starts.size - sum(skipped.values())
            if skipped:
                logger.warning(
                    "%s: %d of %d spectra usable; skipped %s", path, kept, starts.size, dict(skipped)
                )
            if skipped[MASS_MISMATCH]:
                logger.warning("%s: %d annotations disagree with their precursor mass; if the file writes "
                               "fixed modifications implicitly, set data.fixed_mods (e.g. {C: Carbamidomethyl})",
                               path, skipped[MASS_MISMATCH])
            else:
                logger.info("%s: all %d spectra usable", path, kept)
        self._file = np.asarray(files, dtype=np.int32)  # (S,)
        self._position = np.asarray(positions, dtype=np.int64)  # (S,)
        self.precursor_mz = np.asarray(precursors, dtype=np.float64)  # (S,)
        self.charge = np.asarray(charges, dtype=np.int64)  # (S,)
        self.peptide_lengths = np.asarray(lengths, dtype=np.int64)  # (S,) residues, 0 if unannotated

    def _inspect(self, reader: _PositionalIndexedMGF, k: int) -> tuple[tuple | None, str, str]:
        """Parse block k once: ``(record, "", "")`` if usable, else ``(None, reason, message)``."""
        cfg = self.config
        try:
            raw = reader.get_by_index(k)
        except (PyteomicsError, ValueError) as err:  # bad numbers, bad CHARGE, not UTF-8
            return None, UNREADABLE, f"cannot be parsed: {' '.join(str(err).split())}"
        if raw is None:
            return None, UNREADABLE, "has no END IONS line before the next BEGIN IONS or the end of the file"
        mz, intensity = raw["m/z array"], raw["intensity array"]
        if mz.size != intensity.size:
            return None, UNREADABLE, "has a peak line with one number; a peak line is '<m/z> <intensity>'"
        params = raw["params"]
        charges = [z for z in _charges(params) if z != 0]  # CHARGE=0 is how some writers say "unknown"
        if not charges:
            return None, NO_CHARGE, f"has no CHARGE; allowed: CHARGE=2+ (or 2, +2) in 1..{cfg.max_charge}"
        if len(charges) > 1:
            return None, SEVERAL_CHARGES, f"CHARGE lists several charges {charges}; allowed: one charge"
        charge = charges[0]
        if not 1 <= charge <= cfg.max_charge:
            return None, CHARGE_OUT_OF_RANGE, f"CHARGE {charge} is out of range; allowed: 1..{cfg.max_charge}"
        pepmass = params.get("pepmass") or (None,)
        precursor = pepmass[0]
        if precursor is None or not math.isfinite(precursor) or precursor <= 0:
            return None, NO_PRECURSOR, "has no PEPMASS; allowed: PEPMASS=<m/z> [<intensity>] with m/z > 0"
        peptide, length = None, 0
        seq = params.get("seq", "")
        if seq:
            try:
                tokens = parse_peptide(seq)
            except ValueError as err:
                return None, BAD_PEPTIDE, f"SEQ={seq}: {err}"
            tokens = apply_fixed_mods(tokens, self._fixed)
            if cfg.precursor_tol_ppm > 0:
                ppm = precursor_error_ppm(tokens, precursor, charge)
                if not ppm <= cfg.precursor_tol_ppm:
                    return None, MASS_MISMATCH, mismatch_message(seq, tokens, precursor, charge, ppm,
                                                                 cfg.precursor_tol_ppm)
            peptide = "".join(tokens)
            length = sum(token != NTERM_ACETYL for token in tokens)
        kept = min(int(_kept_peaks(mz, intensity, precursor, charge, cfg).sum()), cfg.top_k)
        if kept < max(cfg.min_peaks, 1):
            return None, TOO_FEW_PEAKS, f"has {kept} peaks after preprocessing; min_peaks is {cfg.min_peaks}"
        rt = params.get("rtinseconds")
        record = (
            float(precursor),
            charge,
            peptide,
            str(params.get("title", "")),
            str(params.get("scans", "")),
            None if rt is None else float(rt),
            length,
        )
        return record, "", ""

    def __len__(self) -> int:
        return int(self._position.size)

    def __getitem__(self, i: int) -> Spectrum:
        if not -len(self) <= i < len(self):
            raise IndexError(f"spectrum {i} out of range for a dataset of {len(self)}")
        i = int(i) % len(self)
        f, k = int(self._file[i]), int(self._position[i])
        raw = self._reader(f).get_by_index(k)
        precursor, charge = float(self.precursor_mz[i]), int(self.charge[i])
        peaks = preprocess(raw["m/z array"], raw["intensity array"], precursor, charge, self.config)
        if peaks is None:
            raise InputError(self.paths[f], f"spectrum {k}", "changed since the file was indexed; reopen it")
        return Spectrum(
            mz=peaks[0],
            intensity=peaks[1],
            precursor_mz=precursor,
            charge=charge,
            peptide=self.peptides[i],
            title=self.titles[i],
            index=k,
            file=str(self.paths[f]),
            scans=self._scans[i],
            rt_seconds=self._rts[i],
        )

    def indices_with_length(self, lo: int, hi: int) -> np.ndarray:
        """(K,) int64 dataset indices of annotated spectra whose peptide has lo..hi residues (inclusive).

        Residues are counted without the N-terminal acetyl; unannotated spectra are never returned.
        """
        if not 1 <= lo <= hi:
            raise ValueError(f"need 1 <= lo <= hi for a peptide length range, got lo={lo}, hi={hi}")
        return np.flatnonzero((self.peptide_lengths >= lo) & (self.peptide_lengths <= hi))

    def _reader(self, f: int) -> _PositionalIndexedMGF:
        # A forked worker must not share its parent's file offset: open per process.
        if self._pid != os.getpid():
            self._readers = [None] * len(self.paths)
            self._pid = os.getpid()
        reader = self._readers[f]
        if reader is None:
            reader = self._readers[f] = _open_reader(self.paths[f], *self._blocks[f])
        return reader

    def close(self) -> None:
        """Close the open files; the dataset reopens them on the next access."""
        for reader in self._readers:
            if reader is not None and self._pid == os.getpid():
                reader.close()
        self._readers = [None] * len(self.paths)

    def __enter__(self) -> MgfDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = [None] * len(self.paths)
        return state

    def __repr__(self) -> str:
        return f"MgfDataset({len(self)} spectra from {len(self.paths)} file(s), skipped={dict(self.skipped)})"
