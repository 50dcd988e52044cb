"""``model.metrics`` against Casanovo 5.2.1's own ``aa_match_batch``, pair by pair (DESIGN sections 3, 6).

Casanovo runs in a virtual environment of its own, built from the package registry by
``tests/peers/build_casanovo_venv.sh`` and cached at ~/.cache/curriculum-search/casanovo-venv (a cold
build takes about 4 minutes, a warm run of this file about 10 s). Out of the default suite; run it with

    python -m pytest -q -m peers tests/test_casanovo_oracle.py

The rule: on every pair the per-position flags, the peptide match and the residue counts are equal, and
so are the three metrics; not one pair may differ. Peptides are passed to Casanovo as token lists (its
own string splitter cuts ``M[Oxidation]`` in two) and carry no N-terminal modification (we fold an
acetyl into the first residue, Casanovo counts it as a residue; see ``model.metrics``).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from model.chem import parse_peptide, residue_masses
from model.metrics import aa_match, aa_match_counts, aa_match_metrics, match_masses

pytestmark = pytest.mark.peers

PEERS = Path(__file__).resolve().parent / "peers"
RESIDUES = ["G", "A", "S", "P", "V", "T", "C[Carbamidomethyl]", "L", "I", "N", "D", "Q", "K", "E", "M", "H", "F",
            "R", "Y", "W", "M[Oxidation]", "N[Deamidated]", "Q[Deamidated]"]
# Runs of residues of (nearly) the same mass: within 0.1 Da (I/L, Q/K, F/M+ox, GG/N, AG/Q, GA/K, GV/R, SV/W,
# N+deam/D) or just beyond both tolerances (N/D, Q/E, K/E: about 0.98 Da).
NEAR_ISOBARIC = [(["N"], ["D"]), (["Q"], ["K"]), (["Q"], ["E"]), (["I"], ["L"]), (["F"], ["M[Oxidation]"]),
                 (["G", "G"], ["N"]), (["A", "G"], ["Q"]), (["G", "A"], ["K"]), (["G", "V"], ["R"]),
                 (["S", "V"], ["W"]), (["N[Deamidated]"], ["D"]), (["N"], ["N[Deamidated]"]),
                 (["Q"], ["Q[Deamidated]"]), (["K"], ["E"])]
EDITS = ("rewrite", "rewrite", "rewrite", "plant", "substitute", "swap", "insert", "delete", "truncate")
DESIGN_PREDICTIONS = ["SPEIK", "SPAEL", "SPAEKL", "ASPEKL", "SPEKL", "SPELQ", "PSEKL", "SPEK"]
# The (prediction, truth) pairs tests/test_metrics.py checks by hand.
HAND_PAIRS = [
    *((p, "SPELK") for p in DESIGN_PREDICTIONS), ("PEPTIDE", "PEPTLDE"), ("LLLL", "IIII"), ("WSNPFHR", "SWNPFHK"),
    ("SWNPFH", "WSNPFHF"), ("PEN[Deamidated]K", "PEDK"), ("PEQ[Deamidated]K", "PEEK"), ("PENK", "PEDK"),
    ("PEQK", "PEEK"), ("ND", "DN"), ("QE", "EQ"), ("AQEK", "AEQK"), ("ADGGDA", "ANGGNA"), ("AQGGEA", "AEGGQA"),
    ("PEPNK", "PEPN[Deamidated]K"), ("PEFK", "PEM[Oxidation]K"),
    *((f"PE{run}TK", f"PE{one}TK") for run, one in (("GG", "N"), ("AG", "Q"), ("GA", "K"), ("GV", "R"), ("SV", "W"))),
    *((f"PE{one}TK", f"PE{run}TK") for run, one in (("GG", "N"), ("AG", "Q"), ("GA", "K"), ("GV", "R"), ("SV", "W"))),
]
# (prediction, truth) as residue masses, at the two tolerances (test_metrics.py checks the same by hand).
MASS_PAIRS = [
    *(([m + d], [m]) for m in (114.042927, 115.026943, 128.058578, 129.042593) for d in (0.0999, -0.0999, 0.1001, -0.1001)),
    ([100.49, 50.0, 100.0], [100.0, 50.0, 100.49]), ([100.51, 50.0, 100.0], [100.0, 50.0, 100.51]),
]


def _edit(rng: random.Random, pred: list[str]) -> list[str]:
    """One edit of a predicted peptide, most of them mass-preserving or nearly so."""
    pred = list(pred)
    i = rng.randrange(len(pred))
    edit = rng.choice(EDITS)
    if edit == "rewrite":  # replace the first run of one side of a near-isobaric pair by the other side
        a, b = rng.choice(NEAR_ISOBARIC)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        k = next((k for k in range(len(pred) - len(a) + 1) if pred[k:k + len(a)] == a), None)
        if k is not None:
            pred[k:k + len(a)] = b
    elif edit == "plant":  # put either side of a pair at a random place
        pred[i:i + 1] = rng.choice(rng.choice(NEAR_ISOBARIC))
    elif edit == "substitute":
        pred[i] = rng.choice(RESIDUES)
    elif edit == "swap" and len(pred) > 1:
        j = min(i + 1, len(pred) - 1) if rng.random() < 0.7 else rng.randrange(len(pred))
        pred[i], pred[j] = pred[j], pred[i]
    elif edit == "insert":
        pred.insert(i, rng.choice(RESIDUES))
    elif edit == "delete" and len(pred) > 1:
        del pred[i]
    elif edit == "truncate" and len(pred) > 2:
        pred = pred[:i + 1] if rng.random() < 0.5 else pred[i:]
    return pred


def random_pairs(n: int, seed: int) -> tuple[list[list[str] | None], list[list[str]]]:
    """``n`` (prediction, truth) token lists: truths of 4-20 residues rich in near-isobaric runs; 3% missing
    predictions, 3% unrelated ones, the rest the truth after 0-4 edits."""
    rng = random.Random(seed)
    preds: list[list[str] | None] = []
    trues: list[list[str]] = []
    for _ in range(n):
        true: list[str] = []
        length = rng.randint(4, 20)
        while len(true) < length:
            true += rng.choice(rng.choice(NEAR_ISOBARIC)) if rng.random() < 0.3 else [rng.choice(RESIDUES)]
        r = rng.random()
        if r < 0.03:
            pred = None
        elif r < 0.06:
            pred = [rng.choice(RESIDUES) for _ in range(rng.randint(1, 20))]
        else:
            pred = true
            for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
                pred = _edit(rng, pred)
        preds.append(pred)
        trues.append(true)
    return preds, trues


@pytest.fixture(scope="module")
def casanovo_python() -> str:
    """The Casanovo venv's python, built (or found) by the build script."""
    result = subprocess.run(["bash", str(PEERS / "build_casanovo_venv.sh")], capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def casanovo(python: str, preds: list[list[str] | None], trues: list[list[str]],
             extra_residues: dict[str, float] | None = None) -> dict:
    """Casanovo's verdicts on token lists: per pair ``[flags, peptide_match]``, residue counts, metrics."""
    data = {"predictions": preds, "targets": trues, "extra_residues": extra_residues or {}}
    result = subprocess.run([python, str(PEERS / "casanovo_aa_match.py")], capture_output=True, text=True,
                            input=json.dumps(data), timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_pair_matches_casanovo_exactly(casanovo_python: str) -> None:
    preds, trues = random_pairs(5000, seed=0)
    ref = casanovo(casanovo_python, preds, trues)
    pred_strings = ["".join(p) if p is not None else None for p in preds]
    true_strings = ["".join(t) for t in trues]
    differ = [k for k, (p, t, (flags, whole)) in enumerate(zip(pred_strings, true_strings, ref["pairs"]))
              if aa_match(p, t) != (flags, whole)]
    assert not differ, [(pred_strings[k], true_strings[k], aa_match(pred_strings[k], true_strings[k]),
                         ref["pairs"][k]) for k in differ[:5]]
    counts = aa_match_counts(pred_strings, true_strings)
    assert (counts.true, counts.predicted) == (ref["n_aa_true"], ref["n_aa_pred"])
    ours = aa_match_metrics(pred_strings, true_strings)
    assert ours == pytest.approx(ref["metrics"], rel=1e-9, abs=1e-12)  # Casanovo adds 1e-8 to denominators
    # The sample is the hard kind: partial matches of every sort, whole matches, misses.
    partial = sum(0 < sum(flags) < len(flags) for flags, _ in ref["pairs"])
    assert partial > 2500 and counts.peptides_matched > 500 and pred_strings.count(None) > 100
    assert sum(p is not None and len(p) != len(t) for p, t in zip(preds, trues)) > 1000


def test_hand_pairs_and_tolerance_edges_match_casanovo(casanovo_python: str) -> None:
    """The pairs test_metrics.py checks by hand, and masses 0.0999 / 0.1001 Da and 0.49 / 0.51 Da apart."""
    names = {m: f"<{m!r}>" for pair in MASS_PAIRS for side in pair for m in side}
    preds = [parse_peptide(p) for p, _ in HAND_PAIRS] + [[names[m] for m in p] for p, _ in MASS_PAIRS]
    trues = [parse_peptide(t) for _, t in HAND_PAIRS] + [[names[m] for m in t] for _, t in MASS_PAIRS]
    ref = casanovo(casanovo_python, preds, trues, {name: m for m, name in names.items()})
    ours = [aa_match(p, t) for p, t in HAND_PAIRS] + [(f := match_masses(p, t), all(f)) for p, t in MASS_PAIRS]
    assert ours == [tuple(pair) for pair in ref["pairs"]]
    assert sum(sum(flags) for flags, _ in ref["pairs"][:8]) == 26  # DESIGN's test vector
    assert (sum(len(residue_masses(t)) for _, t in HAND_PAIRS[:8]), sum(map(len, preds[:8]))) == (40, 41)
    assert [pair[0] for pair in ref["pairs"][-2:]] == [[False, True, False], [False, False, False]]
