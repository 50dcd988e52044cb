"""Decode peptides from spectra with a trained ``Spec2Pep``: greedy decoding and beam search.

Both encode the spectra once and re-run ``model.decode`` on the growing prefix at every step (the
ion-evidence head needs the prefix masses; prefixes are at most ``max_length`` tokens, so the
quadratic cost stays small), reading only the next token's logits (``last_only``: the ion-evidence
head runs at that one position, 3-4x faster than at every position, same logits). Spectra are decoded in batches; beam search runs the
B spectra x K beams as B*K rows.

Rules shared by both, so that every hypothesis is a well-formed peptide:

* the N-terminal acetyl may only be the first token;
* STOP needs at least one residue before it;
* after ``max_length`` tokens only STOP is allowed: a cut-off hypothesis still ends, and the log-prob
  of that forced STOP counts in its score.

A ``Prediction``'s score is the mean log-probability of its tokens, STOP included. Its precursor match
is judged as Casanovo v4 does: the predicted neutral mass is within ``precursor_tol_ppm`` of the
precursor's neutral mass minus ``i`` 13C-12C spacings (1.003355 Da) for some ``i`` in ``isotopes``
(the instrument may have picked the second isotope peak).

Beam search follows Casanovo v4: at every step the K best candidates of a spectrum (ranked by summed
log-prob, which at a fixed length orders them as the mean does) become its beams; one that is STOP
becomes a finished hypothesis, and its slot is refilled at the next step. So ``beam_size=1`` is exactly
greedy decoding (without the precursor filter). A spectrum is done when no beam is left, or when its best
preferred hypothesis beats the best mean any beam could still end with (log-probs are <= 0, so a beam
with summed log-prob S ends with a mean of at most S / (max_length + 1)). With a precursor tolerance,
a residue that would make the peptide heavier than any allowed precursor mass is pruned (masses only
grow), only precursor-matching hypotheses count as preferred, and the final choice takes any matching
hypothesis over any non-matching one, then the higher score (Casanovo v4's filter). With
``precursor_tol_ppm=None`` there is no pruning and no preference: the best score wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

import torch
import torch.nn.functional as F

from .batch import Batch
from .chem import C13_DELTA, H2O
from .tokenizer import ACETYL_ID, PAD, STOP, decode, mass_table

T = TypeVar("T")
MATCH_TOL_PPM = 50.0  # precursor_match is judged at this tolerance when the filter is off
_MASSES: list[float] = mass_table(torch.float64).tolist()


@dataclass
class Prediction:
    """One decoded peptide.

    peptide: ProForma names (``tokenizer.decode``), "" when nothing could be decoded.
    tokens: token ids of the peptide, without STOP.
    score: mean log-probability of the emitted tokens including STOP; -inf when nothing was decoded.
    precursor_match: the peptide's neutral mass matches the precursor (see the module docstring).
    """

    peptide: str
    tokens: list[int]
    score: float
    precursor_match: bool


def peptide_mass(tokens: Sequence[int]) -> float:
    """Neutral mass of a token-id sequence (residues + H2O)."""
    return sum(_MASSES[t] for t in tokens) + H2O


def precursor_matches(mass: float, precursor_mass: float, tol_ppm: float, isotopes: Sequence[int]) -> bool:
    """True when ``mass`` is within ``tol_ppm`` of ``precursor_mass - i * C13_DELTA`` for some i in isotopes."""
    return any(abs(mass - (precursor_mass - i * C13_DELTA)) <= tol_ppm * 1e-6 * precursor_mass for i in isotopes)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _inference(decoder: Callable[..., T]) -> Callable[..., T]:
    """Run a decoder without gradients and with the model in eval mode, then give the model its mode back."""

    @wraps(decoder)
    def wrapper(model, *args, **kwargs):
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return decoder(model, *args, **kwargs)
        finally:
            model.train(was_training)

    return wrapper


def _check(max_length: int, beam_size: int = 1, tol: float | None = None, isotopes: Sequence[int] = (0,)) -> None:
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if tol is not None and not tol >= 0:  # also refuses NaN
        raise ValueError(f"precursor_tol_ppm must be >= 0 or None, got {tol}")
    if not isotopes:
        raise ValueError("isotopes must name at least one isotope offset, e.g. (0,) or (0, 1)")


def _next_logp(model, batch: Batch, prefix: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
               max_length: int) -> torch.Tensor:
    """Log-probabilities (N, V) float32 of the token after ``prefix`` (N, t), with the decoding rules applied."""
    step = prefix.shape[1]
    with _autocast(prefix.device):
        logits = model.decode(batch, prefix, memory, memory_pad, last_only=True)[:, 0]  # (N, V)
    logp = F.log_softmax(logits.float(), dim=-1)
    logp[:, PAD] = -math.inf
    if step > 0 or max_length < 2:  # the acetyl opens a peptide and needs room for a residue after it
        logp[:, ACETYL_ID] = -math.inf
    residues = step - (prefix[:, 0] == ACETYL_ID).long() if step > 0 else torch.zeros_like(logp[:, 0], dtype=torch.long)
    logp[:, STOP] = torch.where(residues > 0, logp[:, STOP], torch.full_like(logp[:, STOP], -math.inf))
    if step >= max_length:
        stop = logp[:, STOP].clone()
        logp.fill_(-math.inf)
        logp[:, STOP] = stop
    return logp


def _prediction(tokens: list[int], score: float, precursor_mass: float, tol: float, isotopes: Sequence[int]) -> Prediction:
    match = bool(tokens) and precursor_matches(peptide_mass(tokens), precursor_mass, tol, isotopes)
    return Prediction(decode(tokens), tokens, score, match)


@_inference
def greedy_decode(model, batch: Batch, max_length: int = 30, precursor_tol_ppm: float = MATCH_TOL_PPM,
                  isotopes: tuple[int, ...] = (0, 1)) -> list[Prediction]:
    """The most likely token at every step, for every spectrum of ``batch``.

    ``precursor_tol_ppm`` and ``isotopes`` only judge ``precursor_match``; greedy decoding never filters.
    Returns one Prediction per spectrum, in batch order.
    """
    _check(max_length, 1, precursor_tol_ppm, isotopes)
    n = len(batch)
    device = batch.mz.device
    with _autocast(device):
        memory, memory_pad = model.encode(batch)  # (B, P+1, D), (B, P+1)
    prefix = torch.zeros((n, 0), dtype=torch.long, device=device)  # (B, t)
    total = torch.zeros(n, dtype=torch.float64, device=device)  # summed log-prob
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(max_length + 1):
        rows = (~done).nonzero().flatten()  # (N,)
        if rows.numel() == 0:
            break
        logp = _next_logp(model, batch.select(rows), prefix[rows], memory[rows], memory_pad[rows], max_length)
        best, token = logp.max(dim=-1)  # (N,)
        step_tokens = torch.full((n,), PAD, dtype=torch.long, device=device)
        step_tokens[rows] = token
        prefix = torch.cat([prefix, step_tokens[:, None]], dim=1)
        total[rows] += best.double()
        done[rows] = token == STOP

    precursor = batch.precursor_mass.tolist()
    out = []
    for i, row in enumerate(prefix.tolist()):
        tokens = row[: row.index(STOP)] if STOP in row else [t for t in row if t != PAD]
        score = float(total[i]) / (len(tokens) + 1)
        out.append(_prediction(tokens, score, precursor[i], precursor_tol_ppm, isotopes))
    return out


@_inference
def beam_search(model, batch: Batch, beam_size: int = 5, max_length: int = 30,
                precursor_tol_ppm: float | None = 50.0, isotopes: tuple[int, ...] = (0, 1)) -> list[Prediction]:
    """Beam search with an optional precursor filter (see the module docstring).

    With ``beam_size=1`` and ``precursor_tol_ppm=None`` it is ``greedy_decode``. Returns one Prediction
    per spectrum, in batch order; ``precursor_match`` is judged at ``precursor_tol_ppm`` (or
    ``MATCH_TOL_PPM`` when the filter is off).
    """
    _check(max_length, beam_size, precursor_tol_ppm, isotopes)
    n, k = len(batch), beam_size
    device = batch.mz.device
    filtering = precursor_tol_ppm is not None
    tol = precursor_tol_ppm if filtering else MATCH_TOL_PPM
    with _autocast(device):
        memory, memory_pad = model.encode(batch)  # (B, P+1, D), (B, P+1)
    spectrum_of = torch.arange(n, device=device).repeat_interleave(k)  # (B*K,)
    beams = batch.select(spectrum_of)
    memory = memory.repeat_interleave(k, dim=0)  # (B*K, P+1, D)
    memory_pad = memory_pad.repeat_interleave(k, dim=0)
    masses = model.masses.to(device)  # (V,) float64
    vocab = masses.numel()
    # The heaviest residue sum that can still match: the precursor at its lightest isotope, plus the tolerance.
    precursor = batch.precursor_mass.double()  # (B,)
    upper = precursor - min(isotopes) * C13_DELTA + tol * 1e-6 * precursor - H2O  # (B,)

    prefix = torch.zeros((n * k, 0), dtype=torch.long, device=device)  # (B*K, t)
    total = torch.full((n * k,), -math.inf, dtype=torch.float64, device=device)  # summed log-prob; -inf: dead
    total[::k] = 0.0  # one live beam per spectrum at the start, so the K beams never duplicate
    residue_mass = torch.zeros(n * k, dtype=torch.float64, device=device)
    finished: list[list[tuple[bool, float, list[int]]]] = [[] for _ in range(n)]  # (match, score, tokens)
    best_final = torch.full((n,), -math.inf, dtype=torch.float64, device=device)  # best preferred hypothesis
    done = torch.zeros(n, dtype=torch.bool, device=device)
    precursor_list = precursor.tolist()
    for _ in range(max_length + 1):
        live = (~done).nonzero().flatten()  # (S,) spectra still searching
        if live.numel() == 0:
            break
        rows = (live[:, None] * k + torch.arange(k, device=device)).flatten()  # (S*K,)
        logp = _next_logp(model, beams.select(rows), prefix[rows], memory[rows], memory_pad[rows], max_length)
        if filtering:
            heavy = residue_mass[rows, None] + masses > upper[spectrum_of[rows], None]  # (S*K, V)
            heavy[:, STOP] = False
            logp = logp.masked_fill(heavy, -math.inf)
        cand = (total[rows, None] + logp.double()).view(live.numel(), k * vocab)  # (S, K*V)
        top, index = cand.topk(k, dim=1)  # (S, K) the K best candidates, STOP included
        parent = rows.view(-1, k).gather(1, index // vocab)  # (S, K) global row of each candidate's beam
        token = index % vocab  # (S, K)
        is_stop = token == STOP

        # A candidate that ends is a hypothesis; its slot is dead until the next step's top-K refills it.
        for s, c in (is_stop & (top > -math.inf)).nonzero().tolist():
            spectrum = int(live[s])
            tokens = [t for t in prefix[parent[s, c]].tolist() if t != PAD]
            score = float(top[s, c]) / (len(tokens) + 1)
            match = precursor_matches(peptide_mass(tokens), precursor_list[spectrum], tol, isotopes)
            finished[spectrum].append((match, score, tokens))
            if match or not filtering:
                best_final[spectrum] = max(float(best_final[spectrum]), score)

        keep_score = top.masked_fill(is_stop, -math.inf)  # (S, K)
        keep_parent, keep_token = parent.flatten(), token.flatten()  # (S*K,)
        prefix = torch.cat([prefix, prefix.new_full((n * k, 1), PAD)], dim=1)  # (B*K, t+1)
        prefix[rows] = torch.cat([prefix[keep_parent, :-1], keep_token[:, None]], dim=1)
        residue_mass[rows] = residue_mass[keep_parent] + masses[keep_token]
        total[rows] = keep_score.flatten()

        # No beam can overtake the best preferred hypothesis once it beats every beam's bound.
        bound = keep_score.max(dim=1).values / (max_length + 1)  # (S,)
        done[live] = best_final[live] >= bound

    out = []
    for hyps in finished:
        if not hyps:
            out.append(Prediction("", [], -math.inf, False))
            continue
        match, score, tokens = max(hyps, key=lambda h: (h[0] and filtering, h[1]))
        out.append(Prediction(decode(tokens), tokens, score, match))
    return out


def decode_batch(model, batch: Batch, method: str = "greedy", beam_size: int = 5, max_length: int = 30,
                 precursor_tol_ppm: float | None = 50.0, isotopes: tuple[int, ...] = (0, 1)) -> list[Prediction]:
    """Dispatch to ``greedy_decode`` (method "greedy") or ``beam_search`` (method "beam")."""
    if method == "greedy":
        tol = MATCH_TOL_PPM if precursor_tol_ppm is None else precursor_tol_ppm
        return greedy_decode(model, batch, max_length, tol, isotopes)
    if method == "beam":
        return beam_search(model, batch, beam_size, max_length, precursor_tol_ppm, isotopes)
    raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")


def decode_dataset(model, dataset_or_batches: Sequence | Iterable[Batch], method: str = "greedy",
                   beam_size: int = 5, batch_size: int = 64, device: torch.device | str | None = None,
                   max_length: int = 30, precursor_tol_ppm: float | None = 50.0,
                   isotopes: tuple[int, ...] = (0, 1)) -> Iterator[Prediction]:
    """Yield one Prediction per spectrum, in order, for an MgfDataset (or list of Spectrum) or Batches.

    Spectra are collated ``batch_size`` at a time with the model's ``max_peaks``; Batches are decoded as
    they come. ``device`` moves the model there first (None: leave it where it is).
    """
    from .data import collate

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device

    def batches() -> Iterator[Batch]:
        if isinstance(dataset_or_batches, Batch):
            yield dataset_or_batches
            return
        chunk: list = []
        for item in dataset_or_batches:
            if isinstance(item, Batch):
                yield item
                continue
            chunk.append(item)
            if len(chunk) == batch_size:
                yield collate(chunk, model.cfg.max_peaks, device)
                chunk = []
        if chunk:
            yield collate(chunk, model.cfg.max_peaks, device)

    for batch in batches():
        yield from decode_batch(model, batch.to(device), method, beam_size, max_length, precursor_tol_ppm, isotopes)
