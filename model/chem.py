"""Peptide chemistry: residue and modification masses, peptide parsing, precursor and fragment m/z.

All masses are monoisotopic, in Da. Peptides are accepted in three notations (DESIGN section 2):
ProForma names (``C[Carbamidomethyl]``), UNIMOD accessions (``C[UNIMOD:4]``) and mass deltas
(``C+57.021``, a leading ``+42.011`` for the N-terminal acetyl). Every parser returns canonical
tokens: a residue letter, a residue with its ProForma modification name, or ``[Acetyl]-``.
"""

from __future__ import annotations

import re

PROTON = 1.00727646677
H2O = 18.0105646837
NH3 = 17.0265491010
CO = 27.9949146196
C13_DELTA = 1.003355

AA_MASS: dict[str, float] = {
    "G": 57.021464,
    "A": 71.037114,
    "S": 87.032028,
    "P": 97.052764,
    "V": 99.068414,
    "T": 101.047678,
    "C": 103.009185,
    "L": 113.084064,
    "I": 113.084064,
    "N": 114.042927,
    "D": 115.026943,
    "Q": 128.058578,
    "K": 128.094963,
    "E": 129.042593,
    "M": 131.040485,
    "H": 137.058912,
    "F": 147.068414,
    "R": 156.101111,
    "Y": 163.063329,
    "W": 186.079313,
}

# ProForma name -> (mass delta, UNIMOD accession, residues it may sit on; "" means the N-terminus).
MODIFICATIONS: dict[str, tuple[float, int, str]] = {
    "Carbamidomethyl": (57.021464, 4, "C"),
    "Oxidation": (15.994915, 35, "M"),
    "Deamidated": (0.984016, 7, "NQ"),
    "Acetyl": (42.010565, 1, ""),
}
NTERM_ACETYL = "[Acetyl]-"

# A mass delta written with three decimals (C+57.021) is matched to a known modification within this.
DELTA_TOLERANCE = 0.01

_UNIMOD_TO_NAME = {acc: name for name, (_, acc, _) in MODIFICATIONS.items()}

# One token: an optional residue letter followed by a bracketed or signed-mass modification.
_TOKEN = re.compile(r"([A-Z])(\[[^\]]*\]|[+-]\d+(?:\.\d+)?)?")
_NTERM = re.compile(r"^(\[[^\]]*\]-?|[+-]\d+(?:\.\d+)?)")


def _mod_name(raw: str, peptide: str) -> str:
    """Map a modification as written (``[Oxidation]``, ``[UNIMOD:35]``, ``+15.995``) to its ProForma name."""
    text = raw.strip("[]")
    if text in MODIFICATIONS:
        return text
    if text.upper().startswith("UNIMOD:"):
        try:
            accession = int(text.split(":", 1)[1])
        except ValueError:
            accession = -1
        if accession in _UNIMOD_TO_NAME:
            return _UNIMOD_TO_NAME[accession]
        raise ValueError(f"unknown modification {raw!r} in peptide {peptide!r}; known: {_known_mods()}")
    try:
        delta = float(text)
    except ValueError:
        raise ValueError(f"unknown modification {raw!r} in peptide {peptide!r}; known: {_known_mods()}") from None
    for name, (mass, _, _) in MODIFICATIONS.items():
        if abs(delta - mass) <= DELTA_TOLERANCE:
            return name
    raise ValueError(f"unknown modification mass {raw!r} in peptide {peptide!r}; known: {_known_mods()}")


def _known_mods() -> str:
    return ", ".join(f"{name} (UNIMOD:{acc}, +{mass:.3f})" for name, (mass, acc, _) in MODIFICATIONS.items())


def parse_peptide(peptide: str) -> list[str]:
    """Split a peptide into canonical tokens.

    >>> parse_peptide("+42.011PEPC+57.021M[UNIMOD:35]")
    ['[Acetyl]-', 'P', 'E', 'P', 'C[Carbamidomethyl]', 'M[Oxidation]']

    Raises ValueError naming an unknown residue, an unknown modification, or a modification on a
    residue that cannot carry it.
    """
    if not isinstance(peptide, str) or not peptide.strip():
        raise ValueError(f"empty peptide {peptide!r}")
    text = peptide.strip()
    tokens: list[str] = []
    head = _NTERM.match(text)
    if head:
        raw = head.group(1).rstrip("-")
        name = _mod_name(raw, peptide)
        if MODIFICATIONS[name][2] != "":
            raise ValueError(f"modification {name} cannot sit on the N-terminus in peptide {peptide!r}")
        tokens.append(NTERM_ACETYL)
        text = text[head.end() :]
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unknown residue {text[pos]!r} at position {pos} in peptide {peptide!r}")
        residue, raw_mod = match.group(1), match.group(2)
        if residue not in AA_MASS:
            raise ValueError(f"unknown residue {residue!r} in peptide {peptide!r}")
        if raw_mod:
            name = _mod_name(raw_mod, peptide)
            if residue not in MODIFICATIONS[name][2]:
                raise ValueError(f"modification {name} cannot sit on {residue} in peptide {peptide!r}")
            tokens.append(f"{residue}[{name}]")
        else:
            tokens.append(residue)
        pos = match.end()
    if not any(t != NTERM_ACETYL for t in tokens):
        raise ValueError(f"peptide {peptide!r} has no residues")
    return tokens


def token_mass(token: str) -> float:
    """Mass of one canonical token (a residue with its modification, or the N-terminal acetyl)."""
    if token == NTERM_ACETYL:
        return MODIFICATIONS["Acetyl"][0]
    if token in AA_MASS:
        return AA_MASS[token]
    if len(token) > 3 and token[1] == "[" and token.endswith("]") and token[0] in AA_MASS:
        name = token[2:-1]
        if name in MODIFICATIONS:
            return AA_MASS[token[0]] + MODIFICATIONS[name][0]
    raise ValueError(f"unknown token {token!r}")


def residue_masses(peptide: str | list[str]) -> list[float]:
    """Per-residue masses, with an N-terminal modification folded into the first residue.

    A string must parse (``parse_peptide`` raises ValueError); a token list with no residue gives [].
    """
    tokens = parse_peptide(peptide) if isinstance(peptide, str) else list(peptide)
    masses: list[float] = []
    nterm = 0.0
    for token in tokens:
        if token == NTERM_ACETYL:
            nterm += token_mass(token)
        else:
            masses.append(token_mass(token))
    if masses:
        masses[0] += nterm
    return masses


def _residue_masses(peptide: str | list[str]) -> list[float]:
    """``residue_masses``, refusing a peptide without residues (a token list skips parse_peptide's check)."""
    masses = residue_masses(peptide)
    if not masses:
        raise ValueError(f"peptide {peptide!r} has no residues")
    return masses


def peptide_mass(peptide: str | list[str]) -> float:
    """Neutral monoisotopic mass of a peptide, modifications included: sum(residues) + H2O."""
    return sum(_residue_masses(peptide)) + H2O


def precursor_mz(peptide: str | list[str], charge: int) -> float:
    """Precursor m/z of a peptide at a given charge: (M + z * proton) / z."""
    if charge < 1:
        raise ValueError(f"charge must be >= 1, got {charge}")
    return (peptide_mass(peptide) + charge * PROTON) / charge


def fragment_mz(peptide: str | list[str], ion_type: str = "b", charge: int = 1) -> list[float]:
    """m/z of the b or y ions numbered 1..n-1, in order of ion number."""
    if ion_type not in ("b", "y"):
        raise ValueError(f"ion_type must be 'b' or 'y', got {ion_type!r}")
    if charge < 1:
        raise ValueError(f"charge must be >= 1, got {charge}")
    import torch

    from .ions import by_ions

    masses = torch.tensor(_residue_masses(peptide), dtype=torch.float64)
    ions = by_ions(masses.cumsum(0)[:-1], masses.sum() + H2O)  # (n-1, 4), cleavage i after residue i
    singly = ions[:, 0] if ion_type == "b" else ions[:, 1].flip(0)  # y_j lies at cleavage n-j
    return [mz_to_charge(float(mz), charge) for mz in singly]


def mz_to_charge(singly_charged_mz: float, charge: int) -> float:
    """Convert a singly charged m/z to the m/z of the same ion at ``charge``."""
    return (singly_charged_mz - PROTON + charge * PROTON) / charge
