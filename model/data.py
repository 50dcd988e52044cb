"""Training and validation data: synthetic batches driven by the curriculum, and the fixed validation sets."""

from __future__ import annotations

import torch

from .config import TrainConfig
from .curriculum import Curriculum, CurriculumState
from .synthetic import Batch, generate, step_generator

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


def validation_sets(cfg: TrainConfig, curriculum: Curriculum, device: torch.device) -> dict[str, Batch]:
    """``val`` at the curriculum's hardest stage and ``val_easy`` (clean 7-10), generated once from val_seed.

    They depend on the data config and the curriculum's hardest stage only, never on the training seed,
    so every trial of a search is judged on the same spectra.
    """
    sets = {}
    for offset, (name, (lo, hi, noise)) in enumerate((("val", hardest(curriculum)), ("val_easy", EASY))):
        gen = step_generator(cfg.data.val_seed, offset, device)
        sets[name] = generate(cfg.data.val_size, lo, hi, noise, cfg.data, gen, device, cfg.model.max_peaks)
    return sets
