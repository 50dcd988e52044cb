"""The de novo sequencing transformer: a peak encoder, an autoregressive peptide decoder, and an
ion-evidence head.

The encoder reads peaks as (m/z, intensity) with multi-scale sinusoidal m/z features (Casanovo's
encoding); the decoder starts from the precursor (mass and charge) and reads the tokens so far plus the
sinusoidal encoding of their prefix mass, so that it can attend to the peaks that the next residue would
explain. The ion-evidence head (DeepNovo's and PointNovo's idea) makes that explicit: for every position
and every candidate next token it looks up the observed peaks at the b and y ions the candidate would
produce, one residue further, and the mass still left to the precursor, and turns that evidence into a
logit added to the decoder's. Learning that the next residue is the one whose ions are present takes
minutes instead of hours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .batch import Batch
from .chem import H2O
from .config import ModelConfig
from .ions import by_ions
from .tokenizer import ACETYL_ID, PAD, STOP, VOCAB_SIZE, mass_table

MAX_CHARGE_EMBED = 8
N_ION_FEATURES = 16


class MassEncoding(nn.Module):
    """Sinusoidal features of a mass or m/z over wavelengths from 0.001 to 10,000 Da."""

    def __init__(self, dim: int, min_wavelength: float = 0.001, max_wavelength: float = 10_000.0) -> None:
        super().__init__()
        n = dim // 2
        base = max_wavelength / min_wavelength
        freqs = 2 * math.pi / (min_wavelength * base ** (torch.arange(n, dtype=torch.float64) / max(n - 1, 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, mass: torch.Tensor) -> torch.Tensor:
        """mass: (...) -> (..., dim). Phases computed in float64: m/z 2000 at wavelength 0.001 needs it."""
        phase = (mass.double()[..., None] * self.freqs) % (2 * math.pi)
        return torch.cat([phase.sin(), phase.cos()], dim=-1).float()


def peak_lookup(query: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Evidence for a peak at each query m/z: a Gaussian of the distance to the nearest peak.

    query: (B, Q); mz: (B, P) sorted, padding at +inf; intensity: (B, P).
    Returns (match, match * intensity), each (B, Q), in [0, 1].
    """
    peaks = mz.shape[1]
    q = query.float().contiguous()
    right = torch.searchsorted(mz, q).clamp(max=peaks - 1)  # (B, Q)
    left = (right - 1).clamp(min=0)
    best = torch.zeros_like(q)
    best_int = torch.zeros_like(q)
    for idx in (left, right):
        dist = mz.gather(1, idx) - q
        match = torch.exp(-0.5 * (dist / sigma) ** 2)  # inf padding gives exactly 0
        best = torch.maximum(best, match)
        best_int = torch.maximum(best_int, match * intensity.gather(1, idx))
    return best, best_int


class IonEvidence(nn.Module):
    """Per (position, candidate token) features from the spectrum, turned into a logit bonus."""

    def __init__(self, dim: int, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        masses = mass_table(torch.float64)
        self.register_buffer("masses", masses, persistent=False)
        residue = torch.ones(VOCAB_SIZE, dtype=torch.bool)
        residue[[PAD, STOP, ACETYL_ID]] = False
        self.register_buffer("residue_masses", masses[residue], persistent=False)
        self.context = nn.Linear(dim, 64)
        self.charge = nn.Embedding(MAX_CHARGE_EMBED, 64)
        self.features = nn.Linear(N_ION_FEATURES, 64)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))

    def evidence(self, prefix_mass: torch.Tensor, batch: Batch, mz_sorted: torch.Tensor) -> torch.Tensor:
        """prefix_mass: (B, T) float64 -> features (B, T, V, N_ION_FEATURES)."""
        bsz, steps = prefix_mass.shape
        vocab = self.masses.shape[0]
        cut = prefix_mass[:, :, None] + self.masses  # (B, T, V): prefix mass after each candidate
        total = batch.precursor_mass[:, None, None]  # (B, 1, 1) neutral
        ions = by_ions(cut, total)  # (B, T, V, 4)
        match, match_int = peak_lookup(ions.reshape(bsz, -1), mz_sorted, batch.intensity, self.sigma)
        one = torch.cat([match, match_int], dim=-1).reshape(bsz, 2, steps, vocab, 4)
        one = one.permute(0, 2, 3, 1, 4).reshape(bsz, steps, vocab, 8)

        # One residue further: is there a b or y ion for some next residue after this candidate?
        cut2 = cut[..., None] + self.residue_masses  # (B, T, V, R)
        ions2 = by_ions(cut2, total[..., None])[..., :2]  # (B, T, V, R, 2): singly charged b and y
        match2, _ = peak_lookup(ions2.reshape(bsz, -1), mz_sorted, batch.intensity, self.sigma)
        two = match2.reshape(bsz, steps, vocab, -1, 2).amax(dim=3)  # (B, T, V, 2)

        # The mass still left to the precursor after this candidate.
        left = total - H2O - cut  # (B, T, V)
        done = torch.exp(-0.5 * (left / self.sigma) ** 2)
        one_more = torch.exp(-0.5 * ((left[..., None] - self.residue_masses) / self.sigma) ** 2).amax(dim=-1)
        over = torch.sigmoid(-left / 0.5)
        scale = (left / 1000.0).clamp(-1, 3)
        extra = torch.stack([done, one_more, over, scale], dim=-1).float()  # (B, T, V, 4)
        return torch.cat([one, two, extra], dim=-1).float()  # (B, T, V, 14) -> padded below

    def forward(self, hidden: torch.Tensor, prefix_mass: torch.Tensor, batch: Batch, mz_sorted: torch.Tensor) -> torch.Tensor:
        """hidden: (B, T, D) decoder states -> logit bonus (B, T, V)."""
        feats = self.evidence(prefix_mass, batch, mz_sorted)
        feats = F.pad(feats, (0, N_ION_FEATURES - feats.shape[-1]))
        charge = batch.charge.clamp(0, MAX_CHARGE_EMBED - 1)
        x = self.features(feats) + (self.context(hidden) + self.charge(charge)[:, None, :])[:, :, None, :]
        return self.mlp(x).squeeze(-1)


class Spec2Pep(nn.Module):
    """Spectrum -> peptide transformer. ``forward(batch, prefix)`` gives next-token logits at every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.mz_encoding = MassEncoding(d)
        self.peak_in = nn.Linear(d + 1, d)
        encoder_layer = nn.TransformerEncoderLayer(
            d, cfg.n_head, cfg.dim_feedforward, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(encoder_layer, cfg.encoder_layers, enable_nested_tensor=False)
        self.token_embedding = nn.Embedding(VOCAB_SIZE, d)
        self.position_embedding = nn.Embedding(64, d)
        self.mass_in = nn.Linear(2 * d, d)
        self.charge_embedding = nn.Embedding(MAX_CHARGE_EMBED, d)
        self.start = nn.Parameter(torch.zeros(d))
        decoder_layer = nn.TransformerDecoderLayer(
            d, cfg.n_head, cfg.dim_feedforward, cfg.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, cfg.decoder_layers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB_SIZE)
        self.ion_evidence = IonEvidence(d, cfg.ion_feature_sigma_da) if cfg.ion_features else None
        self.register_buffer("masses", mass_table(torch.float64), persistent=False)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Peaks -> memory (B, P+1, D) and its padding mask (B, P+1), True where padded.

        The extra first slot carries the precursor, so a spectrum with no peaks still has a memory.
        """
        peaks = torch.cat([self.mz_encoding(batch.mz), batch.intensity[..., None]], dim=-1)  # (B, P, D+1)
        x = self.peak_in(peaks)  # (B, P, D)
        precursor = self.precursor_embedding(batch)[:, None, :]  # (B, 1, D)
        x = torch.cat([precursor, x], dim=1)  # (B, P+1, D)
        pad = torch.cat([torch.zeros_like(batch.peak_mask[:, :1]), ~batch.peak_mask], dim=1)
        return self.encoder(x, src_key_padding_mask=pad), pad

    def precursor_embedding(self, batch: Batch) -> torch.Tensor:
        """(B, D): the precursor's neutral mass and charge."""
        enc = self.mz_encoding(batch.precursor_mass)
        charge = batch.charge.clamp(0, MAX_CHARGE_EMBED - 1)
        return self.mass_in(torch.cat([enc, enc], dim=-1)) + self.charge_embedding(charge)

    def prefix_masses(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix: (B, S) ids -> (B, S+1) float64 mass of the tokens before each position."""
        cum = self.masses[prefix].cumsum(dim=1)
        return F.pad(cum, (1, 0))  # (B, S+1); an empty prefix gives (B, 1) zeros

    def decode(self, batch: Batch, prefix: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
               last_only: bool = False) -> torch.Tensor:
        """prefix: (B, S) previous token ids -> logits (B, S+1, V) for the token at each position.

        ``last_only``: logits (B, 1, V) for the token after the whole prefix only. Decoding reads just
        that one, and the ion-evidence head, most of a step's cost, then runs at one position.
        """
        bsz, s = prefix.shape
        prefix_mass = self.prefix_masses(prefix)  # (B, S+1)
        tokens = torch.cat([self.start.expand(bsz, 1, -1), self.token_embedding(prefix)], dim=1)  # (B, S+1, D)
        remaining = batch.precursor_mass[:, None] - H2O - prefix_mass
        mass = self.mass_in(torch.cat([self.mz_encoding(prefix_mass), self.mz_encoding(remaining)], dim=-1))
        positions = torch.arange(s + 1, device=prefix.device).clamp(max=63)
        x = tokens + mass + self.position_embedding(positions)[None]
        x[:, 0] = x[:, 0] + self.precursor_embedding(batch)
        causal = torch.triu(torch.ones(s + 1, s + 1, dtype=torch.bool, device=prefix.device), diagonal=1)
        h = self.norm(self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad))  # (B, S+1, D)
        if last_only:
            h, prefix_mass = h[:, -1:], prefix_mass[:, -1:]  # (B, 1, D), (B, 1)
        logits = self.head(h)
        if self.ion_evidence is not None:
            mz_sorted = torch.where(batch.peak_mask, batch.mz, torch.full_like(batch.mz, float("inf")))
            logits = logits + self.ion_evidence(h, prefix_mass, batch, mz_sorted)
        logits[..., PAD] = -1e4  # PAD is never a prediction
        return logits

    def forward(self, batch: Batch, prefix: torch.Tensor) -> torch.Tensor:
        memory, pad = self.encode(batch)
        return self.decode(batch, prefix, memory, pad)
