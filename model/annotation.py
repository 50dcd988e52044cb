"""An annotation (SEQ) checked against its spectrum's precursor, with fixed modifications made explicit.

Files often write fixed modifications implicitly: ``SEQ=PEPCK`` for a peptide whose cysteine carries a
carbamidomethyl group, as every cysteine in the sample was treated. Training on such a SEQ teaches the
model a residue mass that the spectrum contradicts. ``data.fixed_mods`` (``{C: Carbamidomethyl}``)
writes the modification onto every bare residue of that kind; then every annotation is checked: its
neutral mass must match the precursor's, ``(m/z - proton) * charge``, within ``tol_ppm`` after removing
0..``isotope_errors`` 13C isotope steps (the instrument may have picked the second isotope peak). An
annotation that does not match is skipped and counted, or, in strict mode, refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from .chem import AA_MASS, C13_DELTA, PROTON, parse_peptide, peptide_mass

PRECURSOR_TOL_PPM = 50.0  # Casanovo's default precursor tolerance
ISOTOPE_ERRORS = 1  # 13C peaks the precursor may have been picked at: 0..ISOTOPE_ERRORS


def fixed_mod_tokens(fixed_mods: Mapping[str, str]) -> dict[str, str]:
    """``{residue: modification}`` as written by a user (a ProForma name, ``UNIMOD:4`` or ``+57.021``) ->
    ``{residue: canonical token}``, e.g. ``{"C": "C[Carbamidomethyl]"}``. ValueError names what is wrong."""
    tokens = {}
    for residue, mod in fixed_mods.items():
        if not isinstance(residue, str) or residue not in AA_MASS:
            raise ValueError(f"{residue!r} is not a residue; allowed: one of {''.join(AA_MASS)}")
        if not isinstance(mod, str) or not mod.strip():
            raise ValueError(f"{residue}: expected a modification name such as Carbamidomethyl, got {mod!r}")
        mod = mod.strip()
        written = f"{residue}{mod}" if mod[0] in "+-" else f"{residue}[{mod.strip('[]')}]"
        (token,) = parse_peptide(written)  # ValueError: unknown, or not allowed on this residue
        tokens[residue] = token
    return tokens


def apply_fixed_mods(tokens: list[str], fixed: Mapping[str, str]) -> list[str]:
    """Canonical tokens with every bare residue that has a fixed modification replaced by its token."""
    return [fixed.get(t, t) for t in tokens] if fixed else tokens


def precursor_error_ppm(tokens: list[str], precursor_mz: float, charge: int, isotope_errors: int = ISOTOPE_ERRORS
                        ) -> float:
    """The smallest |measured - computed| neutral mass, in ppm of the computed, over 0..isotope_errors."""
    computed = peptide_mass(tokens)
    measured = (precursor_mz - PROTON) * charge
    return min(abs(measured - k * C13_DELTA - computed) for k in range(isotope_errors + 1)) / computed * 1e6


def mismatch_message(seq: str, tokens: list[str], precursor_mz: float, charge: int, ppm: float,
                     tol_ppm: float) -> str:
    measured = (precursor_mz - PROTON) * charge
    return (f"SEQ={seq} weighs {peptide_mass(tokens):.4f} Da but its precursor says {measured:.4f} Da "
            f"({ppm:.0f} ppm; allowed {tol_ppm:g} ppm and up to {ISOTOPE_ERRORS} isotope errors); if the file "
            "writes fixed modifications implicitly, set data.fixed_mods, e.g. {C: Carbamidomethyl}")
