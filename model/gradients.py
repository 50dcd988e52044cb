"""Gradient strength of the auxiliary losses: how hard each pulls relative to CE, and in which direction.

For each active auxiliary loss: ``||w * grad(aux)|| / ||grad(CE)||`` and ``cos(grad(aux), grad(CE))`` over
all trainable parameters. One batch is a noisy sample of both, so the trainer reports their mean over
several batches and their spread (sample standard deviation), under ``names.GRAD_NAMES`` and
``names.GRAD_STD_NAMES``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import torch

from . import names
from .batch import Batch
from .curriculum import AUX_LOSSES, CurriculumState

# (batch, state, device) -> the losses of one forward pass ("ce", "spectrum", "precursor", ...), as trainer.Losses
LossFn = Callable[[Batch, CurriculumState, torch.device], dict[str, torch.Tensor]]


def batch_strength(model: torch.nn.Module, losses: LossFn, batch: Batch, state: CurriculumState,
                   device: torch.device) -> dict[str, tuple[float, float]]:
    """``{loss: (norm ratio, cosine)}`` of every active auxiliary loss on one batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    parts = losses(batch, state, device)
    keys = ["ce"] + [k for k in AUX_LOSSES if k in parts]
    flat = {}
    for i, key in enumerate(keys):
        grads = torch.autograd.grad(parts[key], params, retain_graph=i < len(keys) - 1, allow_unused=True)
        flat[key] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                               for g, p in zip(grads, params)])  # (n_params,)
    ce_norm = flat["ce"].norm()
    out = {}
    for loss in keys[1:]:
        aux_norm = flat[loss].norm()
        ratio = getattr(state, f"{loss}_weight") * aux_norm / ce_norm.clamp(min=1e-12)
        cosine = flat[loss] @ flat["ce"] / (aux_norm * ce_norm).clamp(min=1e-12)
        out[loss] = (float(ratio), float(cosine))
    return out


def gradient_strength(model: torch.nn.Module, losses: LossFn, batches: Sequence[Batch], state: CurriculumState,
                      device: torch.device) -> dict[str, float]:
    """Mean and spread of the gradient strength over ``batches``; only active auxiliary losses appear.

    Runs under a forked random state (dropout draws here leave training's stream untouched), so
    measuring never changes the run. A value that is not finite on some batch is left out of its mean;
    a mean of nothing, or a spread of fewer than two values, is ``names.MISSING``.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        per_batch = [batch_strength(model, losses, batch, state, device) for batch in batches]
    out: dict[str, float] = {}
    for loss in AUX_LOSSES:
        if not per_batch or loss not in per_batch[0]:
            continue
        for i, (mean_key, std_key) in enumerate(zip(names.GRAD_NAMES[loss], names.GRAD_STD_NAMES[loss])):
            values = [b[loss][i] for b in per_batch if math.isfinite(b[loss][i])]
            out[mean_key] = statistics.fmean(values) if values else names.MISSING
            out[std_key] = statistics.stdev(values) if len(values) >= 2 else names.MISSING
    return out
