"""De novo metrics (DESIGN section 3 test vector, I=L, tolerances, modifications, misses) and hard spectrum coverage.

The pairs matched here by hand are matched by Casanovo itself in tests/test_casanovo_oracle.py (HAND_PAIRS).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from pyteomics import mass

from model.chem import PROTON
from model.metrics import (
    MatchCounts,
    aa_match,
    aa_match_counts,
    aa_match_metrics,
    match_masses,
    residue_masses,
    spectrum_coverage,
    theoretical_ions,
)

DESIGN_PREDICTIONS = ["SPEIK", "SPAEL", "SPAEKL", "ASPEKL", "SPEKL", "SPELQ", "PSEKL", "SPEK"]


def test_design_test_vector_exact() -> None:
    counts = aa_match_counts(DESIGN_PREDICTIONS, ["SPELK"] * 8)
    assert (counts.matched, counts.predicted, counts.true) == (26, 41, 40)
    assert (counts.peptides_matched, counts.spectra) == (2, 8)
    metrics = aa_match_metrics(DESIGN_PREDICTIONS, ["SPELK"] * 8)
    assert set(metrics) == {"aa_precision", "aa_recall", "peptide_recall"}
    assert metrics["peptide_recall"] == pytest.approx(2 / 8, abs=1e-12)
    assert metrics["aa_recall"] == pytest.approx(26 / 40, abs=1e-12)
    assert metrics["aa_precision"] == pytest.approx(26 / 41, abs=1e-12)


@pytest.mark.parametrize(
    ("pred", "flags", "whole"),
    [
        ("SPEIK", [True] * 5, True),  # I = L
        ("SPELQ", [True] * 5, True),  # Q and K are 0.036 Da apart: within 0.1 Da
        ("SPEK", [True, True, True, False, True], False),  # K/K from the C-terminus is flagged at true's index 4
        ("SPEKL", [True, True, True, False, False], False),  # swapped pair: aligned, wrong residues
        ("SPAEKL", [True, True, False, True, False, False], False),  # E found again from the C-terminus
        ("PSEKL", [False, False, True, False, False], False),
        ("ASPEKL", [False, True, True, True, False, False], False),  # shifted by one: flags at pred's index
    ],
)
def test_per_position_flags(pred: str, flags: list[bool], whole: bool) -> None:
    """One flag per position of the longer peptide; a pair (i_pred, i_true) sets flag max(i_pred, i_true)."""
    assert aa_match(pred, "SPELK") == (flags, whole)


def test_i_and_l_are_equal_in_both_directions() -> None:
    assert aa_match("PEPTIDE", "PEPTLDE") == ([True] * 7, True)
    assert aa_match("LLLL", "IIII") == ([True] * 4, True)
    assert aa_match_metrics(["IAHYNKR"], ["LAHYNKR"])["peptide_recall"] == 1.0


def test_prefix_walk_realigns_after_a_swap() -> None:
    # After WS/SW the prefix masses meet again: N, P, F, H are correct; the C-terminal R/K (28 Da apart)
    # leaves the suffix walk nothing to align, so the prefix verdicts stand.
    assert aa_match("WSNPFHR", "SWNPFHK") == ([False, False, True, True, True, True, False], False)


def test_suffix_walk_overwrites_the_prefix_verdict() -> None:
    # The prefix walk pairs H with H (flag 5); from the C-terminus pred ...FH and true ...HF have the same
    # suffix mass, pred's F is paired with true's H and writes False over flag 5 (Casanovo does the same).
    assert aa_match("SWNPFH", "WSNPFHF") == ([False, False, True, True, True, False, False], False)


def test_residue_tolerance_is_0_1_da_at_n_and_q() -> None:
    """Aligned residues match when their masses are within 0.1 Da, not 0.1 Da or more."""
    for residue in ("N", "D", "Q", "E"):
        (m,) = residue_masses(residue)
        for delta, hit in ((0.0, True), (0.0999, True), (-0.0999, True), (0.1001, False), (-0.1001, False)):
            assert match_masses([m + delta], [m]) == [hit], (residue, delta)
            assert match_masses([57.021464, m + delta, 57.021464], [57.021464, m, 57.021464]) == [True, hit, True]
    # Deamidated N is D and deamidated Q is E, by mass; N/D and Q/E themselves are 0.984 Da apart.
    assert aa_match("PEN[Deamidated]K", "PEDK") == ([True] * 4, True)
    assert aa_match("PEQ[Deamidated]K", "PEEK") == ([True] * 4, True)
    assert aa_match("PENK", "PEDK") == ([True, True, False, True], False)
    assert aa_match("PEQK", "PEEK") == ([True, True, False, True], False)


def test_swapped_n_d_and_q_e_are_aligned_but_wrong() -> None:
    """After N/D (Q/E) swaps the prefix masses agree again: the walk pairs D with N, which must not match."""
    assert aa_match("ND", "DN") == ([False, False], False)
    assert aa_match("QE", "EQ") == ([False, False], False)
    assert aa_match("AQEK", "AEQK") == ([True, False, False, True], False)


def test_prefix_tolerance_is_0_5_da() -> None:
    """Cumulative masses within 0.5 Da align; 0.5 Da or more apart they do not. Two offsets, one at each end,
    leave the middle residue to the forward walk alone."""
    assert match_masses([100.49, 50.0, 100.0], [100.0, 50.0, 100.49]) == [False, True, False]
    assert match_masses([100.51, 50.0, 100.0], [100.0, 50.0, 100.51]) == [False, False, False]
    # The same with residues: D/N (0.984 Da) at both ends hides the GG between them.
    assert aa_match("ADGGDA", "ANGGNA") == ([True, False, False, False, False, True], False)
    assert aa_match("AQGGEA", "AEGGQA") == ([True, False, False, False, False, True], False)


def test_near_isobaric_runs_are_aligned_but_not_matched() -> None:
    """GG/N, AG/Q, GA/K, GV/R, SV/W: equal prefix masses, different residues; the rest still matches."""
    for run, single in (("GG", "N"), ("AG", "Q"), ("GA", "K"), ("GV", "R"), ("SV", "W")):
        assert aa_match(f"PE{run}TK", f"PE{single}TK") == ([True, True, False, False, True, True], False), run
        flags, _ = aa_match(f"PE{single}TK", f"PE{run}TK")
        assert sum(flags) == 4 and len(flags) == 6, run
    assert aa_match("PEFK", "PEM[Oxidation]K") == ([True, True, True, True], True)  # 0.033 Da apart


def test_modifications_in_any_notation_match_by_mass() -> None:
    truth = "[Acetyl]-PEPC[Carbamidomethyl]M[Oxidation]N[Deamidated]K"
    for pred in (
        truth,
        "[UNIMOD:1]-PEPC[UNIMOD:4]M[UNIMOD:35]N[UNIMOD:7]K",
        "+42.011PEPC+57.021M+15.995N+0.984K",
    ):
        assert aa_match(pred, truth) == ([True] * 7, True)
    # Unmodified residues are off by the modification mass: not a match (the acetyl is not a residue).
    flags, whole = aa_match("PEPCMNK", truth)
    assert not whole
    assert flags[0] is False  # P vs acetyl-P: 42 Da apart
    assert flags[3] is False  # C vs carbamidomethyl-C: 57 Da apart
    # Deamidation (+0.984 Da) is beyond both tolerances: that N is wrong, its neighbours are found.
    assert aa_match("PEPNK", "PEPN[Deamidated]K") == ([True, True, True, False, True], False)


def test_acetyl_is_folded_not_counted() -> None:
    assert residue_masses("[Acetyl]-AK") == pytest.approx([71.037114 + 42.010565, 128.094963])
    counts = aa_match_counts(["+42.011AK"], ["[Acetyl]-AK"])
    assert (counts.matched, counts.predicted, counts.true, counts.peptides_matched) == (2, 2, 2, 1)


def test_none_and_empty_predictions_are_misses_with_no_residues() -> None:
    counts = aa_match_counts([None, "", "  ", "SPELK"], ["SPELK"] * 4)
    assert counts == MatchCounts(matched=5, predicted=5, true=20, peptides_matched=1, spectra=4)
    assert aa_match(None, "PEP") == aa_match("", "PEP") == ([False] * 3, False)  # Casanovo: zeros(len(true))
    metrics = counts.metrics()
    assert metrics == {"aa_precision": 1.0, "aa_recall": 0.25, "peptide_recall": 0.25}
    assert aa_match_metrics([None], ["PEPTIDE"]) == {
        "aa_precision": 0.0,
        "aa_recall": 0.0,
        "peptide_recall": 0.0,
    }


def test_empty_lists_give_zeros_not_nan() -> None:
    assert aa_match_metrics([], []) == {"aa_precision": 0.0, "aa_recall": 0.0, "peptide_recall": 0.0}


def test_mismatched_lengths_and_bad_peptides_raise() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        aa_match_metrics(["PEP", "TIDE"], ["PEPTIDE"])
    with pytest.raises(ValueError, match="'X'"):
        aa_match_metrics(["PEPXIDE"], ["PEPTIDE"])
    with pytest.raises(ValueError, match="empty peptide"):
        aa_match_metrics(["PEPTIDE"], [""])


def test_counts_add_up_over_batches() -> None:
    first = aa_match_counts(DESIGN_PREDICTIONS[:3], ["SPELK"] * 3)
    rest = aa_match_counts(DESIGN_PREDICTIONS[3:], ["SPELK"] * 5)
    assert (first + rest) == aa_match_counts(DESIGN_PREDICTIONS, ["SPELK"] * 8)


def test_metrics_properties_on_random_mutants() -> None:
    rng = random.Random(7)
    residues = "GASPVTCLINDQKEMHFRYW"
    for _ in range(300):
        truth = "".join(rng.choice(residues) for _ in range(rng.randint(6, 15)))
        assert aa_match(truth, truth) == ([True] * len(truth), True)
        pred = list(truth)
        pred[rng.randrange(len(pred))] = rng.choice("GASPVTCDEMHFRYW")
        pred = "".join(pred)
        flags, whole = aa_match(pred, truth)
        assert len(flags) == len(pred) == len(truth)
        assert 0 <= sum(flags) <= len(truth)
        # One substitution leaves every other residue matched by one of the two walks.
        assert sum(flags) >= len(truth) - 1
        assert whole == (sum(flags) == len(truth))


# --- spectrum coverage -----------------------------------------------------------------------------


def _pyteomics_ions(peptide: str, max_charge: int) -> list[float]:
    ions = []
    for z in range(1, max_charge + 1):
        ions += [mass.fast_mass(peptide[:i], ion_type="b", charge=z) for i in range(1, len(peptide))]
        ions += [mass.fast_mass(peptide[-i:], ion_type="y", charge=z) for i in range(1, len(peptide))]
    return ions


@pytest.mark.parametrize(("peptide", "charge", "max_ion_charge"), [("PEPTIDE", 2, 1), ("HAPPYNEWYEAR", 3, 2)])
def test_theoretical_ions_match_pyteomics(peptide: str, charge: int, max_ion_charge: int) -> None:
    ions = theoretical_ions(peptide, charge)
    assert len(ions) == 2 * (len(peptide) - 1) * max_ion_charge
    np.testing.assert_allclose(ions, _pyteomics_ions(peptide, max_ion_charge), atol=1e-5)


def test_theoretical_ions_of_modified_peptide() -> None:
    ions = theoretical_ions("[Acetyl]-PEC[Carbamidomethyl]K", 2)
    aa = dict(mass.std_aa_mass)
    # pyteomics modX: a terminal group replaces the terminal H, so acetyl is C2H3O there.
    aa.update({"cam": mass.calculate_mass(formula="C2H3NO"), "ac-": mass.calculate_mass(formula="C2H3O")})
    b = [mass.fast_mass2(s, ion_type="b", charge=1, aa_mass=aa) for s in ("ac-P", "ac-PE", "ac-PEcamC")]
    y = [mass.fast_mass2(s, ion_type="y", charge=1, aa_mass=aa) for s in ("K", "camCK", "EcamCK")]
    np.testing.assert_allclose(ions, b + y, atol=1e-5)


def test_coverage_on_hand_built_spectra() -> None:
    ions = np.array(theoretical_ions("PEPTIDE", 2))  # 12 ions at charge 1
    assert spectrum_coverage("PEPTIDE", 2, ions, 0.02) == 1.0
    # Half the ions, shuffled, off by 0.015 Da, with noise far from any ion.
    rng = np.random.default_rng(0)
    half = rng.permutation(ions)[:6] + 0.015
    noise = np.array([55.0, 1500.0, 1600.0])
    assert spectrum_coverage("PEPTIDE", 2, np.concatenate([noise, half]), 0.02) == pytest.approx(0.5)
    assert spectrum_coverage("PEPTIDE", 2, np.concatenate([noise, half]), 0.01) == 0.0
    # Tolerance is inclusive and the peak array may be float32.
    assert spectrum_coverage("PEPTIDE", 2, (ions[:3] + 0.25).astype(np.float32), 0.2501) == pytest.approx(
        3 / 12
    )
    assert spectrum_coverage("PEPTIDE", 2, np.array([]), 0.5) == 0.0
    assert spectrum_coverage("K", 2, ions, 0.5) == 0.0  # one residue: no ions


def test_coverage_counts_charge_two_ions_only_from_precursor_charge_three() -> None:
    ions2 = np.array(theoretical_ions("PEPTIDEK", 3))[14:]  # the 14 doubly charged ions
    assert np.allclose(ions2[:7], (np.array(theoretical_ions("PEPTIDEK", 1)[:7]) + PROTON) / 2)
    assert spectrum_coverage("PEPTIDEK", 3, ions2, 0.01) == pytest.approx(0.5)
    assert spectrum_coverage("PEPTIDEK", 2, ions2, 0.01) < 0.5  # only chance overlaps with charge-1 ions


def test_coverage_against_pyteomics_ion_list() -> None:
    rng = np.random.default_rng(3)
    peptide = "LAHYNKRSTGEW"
    reference = np.array(_pyteomics_ions(peptide, 2))  # 44 ions
    keep = rng.choice(reference.size, size=17, replace=False)
    observed = np.concatenate([reference[keep] + rng.uniform(-0.01, 0.01, 17), rng.uniform(100, 1400, 30)])
    expected = np.mean([np.min(np.abs(observed - ion)) <= 0.02 for ion in reference])
    assert spectrum_coverage(peptide, 3, observed, 0.02) == pytest.approx(expected)
    assert expected >= 17 / 44


def test_coverage_refuses_bad_tolerance() -> None:
    with pytest.raises(ValueError, match="tolerance_da must be >= 0, got -0.1"):
        spectrum_coverage("PEPTIDE", 2, np.array([100.0]), -0.1)
    with pytest.raises(ValueError, match="nan"):
        spectrum_coverage("PEPTIDE", 2, np.array([100.0]), float("nan"))
