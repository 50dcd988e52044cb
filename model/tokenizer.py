"""The peptide vocabulary: canonical tokens to ids and back, with I written as L.

Id 0 is PAD and id 1 is STOP; residues follow. I and L have the same mass, so no spectrum can tell
them apart: the vocabulary has L only and the tokenizer writes I as L (as Casanovo's does).
"""

from __future__ import annotations

import torch

from .chem import NTERM_ACETYL, parse_peptide, token_mass

PAD, STOP = 0, 1
RESIDUES = "GASPVTCLNDQKEMHFRYW"  # the 19 distinct residue masses; I is written as L
MODIFIED = ("C[Carbamidomethyl]", "M[Oxidation]", "N[Deamidated]", "Q[Deamidated]")
TOKENS: tuple[str, ...] = ("<pad>", "<stop>", *RESIDUES, *MODIFIED, NTERM_ACETYL)
TOKEN_ID: dict[str, int] = {token: i for i, token in enumerate(TOKENS)}
VOCAB_SIZE = len(TOKENS)
ACETYL_ID = TOKEN_ID[NTERM_ACETYL]


def _canonical(token: str) -> str:
    return "L" + token[1:] if token.startswith("I") else token


def encode(peptide: str | list[str]) -> list[int]:
    """Token ids of a peptide, without STOP. Raises ValueError for an unknown residue or modification."""
    tokens = parse_peptide(peptide) if isinstance(peptide, str) else peptide
    ids = []
    for token in tokens:
        token = _canonical(token)
        if token not in TOKEN_ID:
            raise ValueError(f"token {token!r} is not in the vocabulary")
        ids.append(TOKEN_ID[token])
    return ids


def decode(ids: list[int] | torch.Tensor) -> str:
    """Peptide string (ProForma names) of token ids; stops at the first STOP, skips PAD."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    out = []
    for i in ids:
        if i == STOP:
            break
        if i != PAD:
            out.append(TOKENS[i])
    return "".join(out)


def tokenize(peptides: list[str], max_length: int | None = None) -> torch.Tensor:
    """A (B, L) tensor of ids, each peptide followed by STOP and padded with PAD.

    L is the longest peptide + 1, or ``max_length + 1`` when given (longer peptides raise ValueError).
    """
    encoded = [encode(p) for p in peptides]
    longest = max((len(e) for e in encoded), default=0)
    if max_length is not None:
        if longest > max_length:
            raise ValueError(f"peptide of {longest} tokens exceeds max_length {max_length}")
        longest = max_length
    out = torch.full((len(encoded), longest + 1), PAD, dtype=torch.long)  # (B, L)
    for row, ids in enumerate(encoded):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        out[row, len(ids)] = STOP
    return out


def mass_table(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(V,) mass of every token id; PAD and STOP weigh nothing."""
    masses = [0.0, 0.0] + [token_mass(t) for t in TOKENS[2:]]
    return torch.tensor(masses, dtype=dtype)
