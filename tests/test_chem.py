"""model.chem and model.tokenizer against pyteomics.mass, the reference (DESIGN section 2)."""

from __future__ import annotations

import random
import re

import pytest
import torch
from pyteomics import mass

from model import chem
from model.chem import fragment_mz, parse_peptide, peptide_mass, precursor_mz, token_mass
from model.tokenizer import PAD, STOP, TOKEN_ID, TOKENS, decode, encode, mass_table, tokenize

RESIDUES = "GASPVTCLINDQKEMHFRYW"

# pyteomics modX names for our modifications; each delta is computed by pyteomics from its formula.
MOD_FORMULA = {"Carbamidomethyl": "C2H3NO", "Oxidation": "O", "Deamidated": "H-1N-1O"}
MODX = {"Carbamidomethyl": "cam", "Oxidation": "ox", "Deamidated": "dea"}
AA_MASS = dict(mass.std_aa_mass)
AA_MASS.update({MODX[name]: mass.calculate_mass(formula=f) for name, f in MOD_FORMULA.items()})
AA_MASS["ac-"] = mass.calculate_mass(formula="C2H3O")  # a modX terminal group replaces the terminal H


def _to_modx(tokens: list[str]) -> str:
    """Canonical tokens -> pyteomics modX (``ac-PEPcamC``)."""
    out = []
    for token in tokens:
        if token == chem.NTERM_ACETYL:
            out.append("ac-")
        elif "[" in token:
            out.append(MODX[token[2:-1]] + token[0])
        else:
            out.append(token)
    return "".join(out)


def _random_peptide(rng: random.Random, modified: bool) -> str:
    """A ProForma-name peptide of 6-20 residues; with ``modified``, every eligible residue may carry its mod."""
    out = ["[Acetyl]-"] if modified and rng.random() < 0.5 else []
    for _ in range(rng.randint(6, 20)):
        residue = rng.choice(RESIDUES)
        mods = [n for n, (_, _, on) in chem.MODIFICATIONS.items() if residue in on and on]
        out.append(f"{residue}[{mods[0]}]" if modified and mods and rng.random() < 0.6 else residue)
    return "".join(out)


# --- DESIGN checks and constants ---------------------------------------------------------------------


def test_design_checks() -> None:
    assert peptide_mass("PEPTIDE") == pytest.approx(799.359964, abs=1e-6)
    assert precursor_mz("HAPPYNEWYEAR", 2) == pytest.approx(766.849490, abs=1e-6)
    assert peptide_mass("PEPTIDE") == pytest.approx(mass.calculate_mass(sequence="PEPTIDE"), abs=1e-5)
    assert precursor_mz("HAPPYNEWYEAR", 2) == pytest.approx(
        mass.calculate_mass(sequence="HAPPYNEWYEAR", charge=2), abs=1e-5
    )


def test_constants_match_pyteomics() -> None:
    assert chem.PROTON == pytest.approx(mass.nist_mass["H+"][0][0], abs=1e-10)
    assert chem.H2O == pytest.approx(mass.calculate_mass(formula="H2O"), abs=1e-9)
    assert chem.NH3 == pytest.approx(mass.calculate_mass(formula="NH3"), abs=1e-9)
    assert chem.CO == pytest.approx(mass.calculate_mass(formula="CO"), abs=1e-9)
    for residue, value in chem.AA_MASS.items():
        assert value == pytest.approx(mass.std_aa_mass[residue], abs=1e-5), residue
    for name, formula in MOD_FORMULA.items():
        assert chem.MODIFICATIONS[name][0] == pytest.approx(mass.calculate_mass(formula=formula), abs=1e-5)
    assert chem.MODIFICATIONS["Acetyl"][0] == pytest.approx(mass.calculate_mass(formula="C2H2O"), abs=1e-5)


# --- seeded random peptides against pyteomics --------------------------------------------------------


@pytest.mark.parametrize("modified", [False, True])
def test_masses_and_fragments_match_pyteomics(modified: bool) -> None:
    rng = random.Random(1234 + modified)
    for _ in range(60):
        peptide = _random_peptide(rng, modified)
        tokens = parse_peptide(peptide)
        modx = _to_modx(tokens)
        residues = [t for t in tokens if t != chem.NTERM_ACETYL]
        assert peptide_mass(peptide) == pytest.approx(mass.fast_mass2(modx, aa_mass=AA_MASS), abs=1e-4)
        for z in (1, 2, 3):
            assert precursor_mz(peptide, z) == pytest.approx(
                mass.fast_mass2(modx, ion_type="M", charge=z, aa_mass=AA_MASS), abs=1e-4
            )
            b = fragment_mz(peptide, "b", z)
            y = fragment_mz(peptide, "y", z)
            assert len(b) == len(y) == len(residues) - 1
            head = "ac-" if tokens[0] == chem.NTERM_ACETYL else ""
            b_ref = [
                mass.fast_mass2(head + _to_modx(residues[:i]), ion_type="b", charge=z, aa_mass=AA_MASS)
                for i in range(1, len(residues))
            ]
            y_ref = [
                mass.fast_mass2(_to_modx(residues[-i:]), ion_type="y", charge=z, aa_mass=AA_MASS)
                for i in range(1, len(residues))
            ]
            assert b == pytest.approx(b_ref, abs=1e-4)
            assert y == pytest.approx(y_ref, abs=1e-4)


def test_complementary_ions_sum_to_precursor() -> None:
    rng = random.Random(5)
    for _ in range(20):
        peptide = _random_peptide(rng, modified=True)
        b, y = fragment_mz(peptide, "b"), fragment_mz(peptide, "y")
        total = peptide_mass(peptide) + 2 * chem.PROTON
        for i in range(len(b)):
            assert b[i] + y[len(b) - 1 - i] == pytest.approx(total, abs=1e-9)


def test_fragments_at_charge_follow_the_formula() -> None:
    singly = fragment_mz("HAPPYNEWYEAR", "y", 1)
    for z in (2, 3):
        assert fragment_mz("HAPPYNEWYEAR", "y", z) == pytest.approx(
            [chem.mz_to_charge(mz, z) for mz in singly], abs=1e-9
        )


# --- notations ---------------------------------------------------------------------------------------

NOTATIONS = [
    ("PEPC[Carbamidomethyl]K", "PEPC[UNIMOD:4]K", "PEPC+57.021K"),
    ("[Acetyl]-PEPTIDE", "[UNIMOD:1]-PEPTIDE", "+42.011PEPTIDE"),
    ("PEN[Deamidated]K", "PEN[UNIMOD:7]K", "PEN+0.984K"),
    ("PEQ[Deamidated]K", "PEQ[UNIMOD:7]K", "PEQ+0.984K"),
    ("PEM[Oxidation]K", "PEM[UNIMOD:35]K", "PEM+15.995K"),
    (
        "[Acetyl]-C[Carbamidomethyl]M[Oxidation]N[Deamidated]Q[Deamidated]K",
        "[UNIMOD:1]-C[UNIMOD:4]M[UNIMOD:35]N[UNIMOD:7]Q[UNIMOD:7]K",
        "+42.011C+57.021M+15.995N+0.984Q+0.984K",
    ),
]


@pytest.mark.parametrize("forms", NOTATIONS)
def test_three_notations_give_the_same_tokens_and_masses(forms: tuple[str, str, str]) -> None:
    name, unimod, delta = forms
    tokens = parse_peptide(name)
    assert parse_peptide(unimod) == tokens
    assert parse_peptide(delta) == tokens
    reference = mass.fast_mass2(_to_modx(tokens), aa_mass=AA_MASS)
    for form in forms:
        assert peptide_mass(form) == pytest.approx(reference, abs=1e-4)
        assert peptide_mass(form) == peptide_mass(name)  # identical, not merely close
        assert fragment_mz(form, "b", 2) == fragment_mz(name, "b", 2)
        assert fragment_mz(form, "y", 1) == fragment_mz(name, "y", 1)


def test_canonical_tokens() -> None:
    assert parse_peptide("+42.011PEPC+57.021M[UNIMOD:35]") == [
        "[Acetyl]-",
        "P",
        "E",
        "P",
        "C[Carbamidomethyl]",
        "M[Oxidation]",
    ]
    assert "".join(parse_peptide("C+57.021GHTNNIRPK")) == "C[Carbamidomethyl]GHTNNIRPK"
    assert token_mass("C[Carbamidomethyl]") == pytest.approx(103.009185 + 57.021464, abs=1e-9)
    assert token_mass("[Acetyl]-") == pytest.approx(42.010565, abs=1e-9)


def test_acetyl_counts_in_b_ions_not_y_ions() -> None:
    assert fragment_mz("[Acetyl]-PEPTIDE", "b") == pytest.approx(
        [mz + 42.010565 for mz in fragment_mz("PEPTIDE", "b")], abs=1e-9
    )
    assert fragment_mz("[Acetyl]-PEPTIDE", "y") == pytest.approx(fragment_mz("PEPTIDE", "y"), abs=1e-9)


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peptide", "named"),
    [
        ("PEPXIDE", "'X'"),
        ("B", "'B'"),
        ("PEPJ", "'J'"),
        ("pep", "'p'"),
        ("C[Foo]", "[Foo]"),
        ("C+12.345", "+12.345"),
        ("[UNIMOD:999]-PEP", "UNIMOD:999"),
        ("PEPC[UNIMOD:999]", "UNIMOD:999"),
    ],
)
def test_unknown_residue_or_modification_is_named(peptide: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        parse_peptide(peptide)
    with pytest.raises(ValueError):
        peptide_mass(peptide)
    with pytest.raises(ValueError):
        encode(peptide)


@pytest.mark.parametrize(
    ("peptide", "named"),
    [("K[Oxidation]", "Oxidation"), ("M+57.021", "Carbamidomethyl"), ("+15.995PEP", "Oxidation")],
)
def test_modification_on_the_wrong_site_is_refused(peptide: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_peptide(peptide)


@pytest.mark.parametrize("peptide", ["", "   ", "[Acetyl]-"])
def test_empty_peptide_is_refused(peptide: str) -> None:
    with pytest.raises(ValueError):
        parse_peptide(peptide)


def test_bad_charge_and_ion_type_are_refused() -> None:
    with pytest.raises(ValueError, match="charge must be >= 1, got 0"):
        precursor_mz("PEPTIDE", 0)
    with pytest.raises(ValueError, match="ion_type must be 'b' or 'y', got 'c'"):
        fragment_mz("PEPTIDE", "c")


# --- tokenizer ---------------------------------------------------------------------------------------


def test_tokenizer_writes_i_as_l() -> None:
    assert "I" not in TOKENS
    assert encode("PEPTIDE") == encode("PEPTLDE")
    assert decode(encode("IAHYNKR")) == "LAHYNKR"
    assert encode("I") == [TOKEN_ID["L"]]


def test_tokenizer_round_trip_in_every_notation() -> None:
    for name, unimod, delta in NOTATIONS:
        ids = encode(name)
        assert encode(unimod) == encode(delta) == ids
        assert decode(ids) == "".join(parse_peptide(name)).replace("I", "L")


def test_tokenize_pads_and_stops() -> None:
    batch = tokenize(["PEPTIDE", "+42.011AK"])  # (B, L) = (2, 8)
    assert batch.shape == (2, 8) and batch.dtype == torch.long
    assert batch[0, 7] == STOP and batch[1, 3] == STOP and (batch[1, 4:] == PAD).all()
    assert batch[1, 0] == TOKEN_ID["[Acetyl]-"]
    assert decode(batch[1]) == "[Acetyl]-AK"
    with pytest.raises(ValueError, match="exceeds max_length 5"):
        tokenize(["PEPTIDE"], max_length=5)


def test_mass_table_matches_chem() -> None:
    table = mass_table()
    assert table[PAD] == 0 and table[STOP] == 0
    ids = encode("[Acetyl]-PEPC[Carbamidomethyl]K")
    assert float(table[ids].sum()) + chem.H2O == pytest.approx(peptide_mass("+42.011PEPC+57.021K"), abs=1e-9)


@pytest.mark.parametrize("tokens", [[], ["[Acetyl]-"]])
def test_token_list_without_residues_is_refused(tokens: list[str]) -> None:
    with pytest.raises(ValueError, match="has no residues"):
        peptide_mass(tokens)
    with pytest.raises(ValueError, match="has no residues"):
        fragment_mz(tokens, "b")
