"""Training and validation data: synthetic batches driven by the curriculum, and the fixed validation sets."""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from .batch import Batch
from .config import TrainConfig
from .curriculum import Curriculum, CurriculumState
from .errors import InputError
from .synthetic import generate, pack_peaks, step_generator

EASY = (7, 10, 0)  # val_easy: clean 7-10 peptides


class TrainStream:
    """Training batches as a pure function of (seed, step, curriculum state): nothing to save on resume."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device

    def batch(self, step: int, state: CurriculumState) -> Batch:
        gen = step_generator(self.cfg.seed, step, self.device)
        return generate(
            self.cfg.data.batch_size, state.min_length, state.max_length, state.noise_peaks,
            self.cfg.data, gen, self.device, self.cfg.model.max_peaks,
        )


def hardest(curriculum: Curriculum) -> tuple[int, int, int]:
    """(min_length, max_length, noise_peaks) of the curriculum's hardest data."""
    stages = curriculum.stages
    return min(s.min_length for s in stages), max(s.max_length for s in stages), max(s.noise_peaks for s in stages)


def val_difficulty(cfg: TrainConfig, curriculum: Curriculum) -> tuple[int, int, int]:
    """(min_length, max_length, noise_peaks) of ``val``: data.val_* where set, else the curriculum's hardest."""
    lo, hi, noise = hardest(curriculum)
    d = cfg.data
    if d.val_min_length > 0:
        lo, hi = d.val_min_length, d.val_max_length
    if d.val_noise_peaks >= 0:
        noise = d.val_noise_peaks
    return lo, hi, noise


def validation_sets(cfg: TrainConfig, curriculum: Curriculum, device: torch.device) -> dict[str, Batch]:
    """``val``, ``val_easy`` (clean 7-10) and, with data.val_files, ``val_real``: built once, before training.

    ``val`` has the lengths and noise of data.val_min_length/val_max_length/val_noise_peaks where they are
    set, and of the curriculum's hardest stage where not, so two curricula sit the same exam only when
    the data.val_* keys are set (a search sets them for every trial). The synthetic sets are generated on
    the CPU from data.val_seed (never the training seed), so they are bit-identical on every device;
    ``fingerprint`` tells whether two runs were judged on the same spectra. ``val_real`` holds the
    annotated spectra of data.val_files (InputError if there is none).
    """
    sets = {}
    for offset, (name, (lo, hi, noise)) in enumerate((("val", val_difficulty(cfg, curriculum)), ("val_easy", EASY))):
        gen = step_generator(cfg.data.val_seed, offset, "cpu")
        sets[name] = generate(cfg.data.val_size, lo, hi, noise, cfg.data, gen, "cpu", cfg.model.max_peaks).to(device)
    if cfg.data.val_files:
        real = open_mgf(cfg.data.val_files, cfg, "data.val_files")
        annotated = [i for i in range(len(real)) if real.peptides[i]]
        if not annotated:
            raise InputError(cfg.data.val_files[0], "data.val_files", "no annotated spectrum (SEQ=) to validate on")
        sets["val_real"] = collate([real[i] for i in annotated], cfg.model.max_peaks, device)
    return sets


def fingerprint(sets: dict[str, Batch]) -> str:
    """The first 16 hex digits of a SHA-256 over every validation tensor (name, dtype, shape and bytes).

    Two runs with the same fingerprint were evaluated on bit-identical spectra and targets.
    """
    digest = hashlib.sha256()
    for name in sorted(sets):
        digest.update(name.encode())
        for tensor in sets[name].tensors():
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def collate(spectra: list, max_peaks: int, device: torch.device | str = "cpu") -> Batch:
    """Real spectra (``model.mgf.Spectrum``) -> a Batch; an unannotated spectrum gets an all-PAD token row."""
    from .chem import PROTON
    from .tokenizer import PAD, STOP, encode

    n = len(spectra)
    width = max(1, max(len(s.mz) for s in spectra))
    mz = torch.zeros((n, width), dtype=torch.float64)
    intensity = torch.zeros((n, width), dtype=torch.float64)
    keep = torch.zeros((n, width), dtype=torch.bool)
    for i, s in enumerate(spectra):
        k = len(s.mz)
        mz[i, :k] = torch.from_numpy(s.mz.astype("float64"))
        intensity[i, :k] = torch.from_numpy(s.intensity.astype("float64"))
        keep[i, :k] = True
    mz, intensity, keep = pack_peaks(mz, intensity, keep, max_peaks)
    charge = torch.tensor([s.charge for s in spectra], dtype=torch.long)
    precursor_mz = torch.tensor([s.precursor_mz for s in spectra], dtype=torch.float64)
    precursor_mass = (precursor_mz - PROTON) * charge
    ids = [encode(s.peptide) if s.peptide else [] for s in spectra]
    tokens = torch.full((n, max(len(t) for t in ids) + 1), PAD, dtype=torch.long)
    for i, t in enumerate(ids):
        if t:
            tokens[i, : len(t)] = torch.tensor(t)
            tokens[i, len(t)] = STOP
    return Batch(mz, intensity, keep, precursor_mass, charge, tokens).to(device)


def preprocess_config(cfg: TrainConfig):
    from .mgf import PreprocessConfig

    return PreprocessConfig(**dataclasses.asdict(cfg.data.preprocess), fixed_mods=tuple(cfg.data.fixed_mods.items()))


def open_mgf(paths: list[str], cfg: TrainConfig, key: str):
    """An MgfDataset of annotated spectra whose peptides the vocabulary can write; InputError otherwise."""
    from .mgf import MgfDataset

    try:
        dataset = MgfDataset(paths, preprocess_config(cfg))
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(paths[0], key, str(err)) from None
    if len(dataset) == 0:
        raise InputError(paths[0], key, f"no usable spectra (skipped: {dict(dataset.skipped)})")
    return dataset


class MixedStream(TrainStream):
    """Synthetic batches mixed with real annotated spectra at ``data.synthetic_fraction``.

    Real spectra are filtered by the stage's length range, as the curriculum's data difficulty applies
    to them too; which spectra a step draws is a pure function of (seed, step), so a resume is exact.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, real) -> None:
        super().__init__(cfg, device)
        self.real = real
        self._by_range: dict[tuple[int, int], torch.Tensor] = {}

    def _indices(self, lo: int, hi: int) -> torch.Tensor:
        if (lo, hi) not in self._by_range:
            idx = torch.from_numpy(self.real.indices_with_length(lo, hi))
            if idx.numel() == 0:  # no real peptide in range: use the closest lengths rather than none
                lengths = torch.from_numpy(self.real.peptide_lengths)
                gap = torch.clamp(lo - lengths, min=0) + torch.clamp(lengths - hi, min=0)
                idx = torch.nonzero(gap == gap[lengths > 0].min()).flatten()
            self._by_range[(lo, hi)] = idx
        return self._by_range[(lo, hi)]

    def batch(self, step: int, state: CurriculumState) -> Batch:
        size = self.cfg.data.batch_size
        n_synth = round(size * self.cfg.data.synthetic_fraction)
        gen = step_generator(self.cfg.seed, step, "cpu")
        pool = self._indices(state.min_length, state.max_length)
        picks = pool[torch.randint(0, pool.numel(), (size - n_synth,), generator=gen)]
        real = collate([self.real[int(i)] for i in picks], self.cfg.model.max_peaks, self.device)
        if n_synth == 0:
            return real
        synth = generate(n_synth, state.min_length, state.max_length, state.noise_peaks, self.cfg.data,
                         step_generator(self.cfg.seed, step, self.device), self.device, self.cfg.model.max_peaks)
        return concat([synth, real])


def concat(batches: list[Batch]) -> Batch:
    """Stack batches whose peak and token widths may differ (padding both)."""
    from .tokenizer import PAD

    peaks = max(b.mz.shape[1] for b in batches)
    width = max(b.tokens.shape[1] for b in batches)

    def pad(t: torch.Tensor, n: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, n - t.shape[1]), value=value)

    return Batch(
        torch.cat([pad(b.mz, peaks, 0.0) for b in batches]),
        torch.cat([pad(b.intensity, peaks, 0.0) for b in batches]),
        torch.cat([pad(b.peak_mask, peaks, False) for b in batches]),
        torch.cat([b.precursor_mass for b in batches]),
        torch.cat([b.charge for b in batches]),
        torch.cat([pad(b.tokens, width, PAD) for b in batches]),
    )


def make_stream(cfg: TrainConfig, device: torch.device) -> TrainStream:
    if not cfg.data.train_files:
        return TrainStream(cfg, device)
    return MixedStream(cfg, device, open_mgf(cfg.data.train_files, cfg, "data.train_files"))
