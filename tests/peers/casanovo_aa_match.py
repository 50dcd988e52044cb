"""Casanovo 5.2.1's own residue matching, run inside its venv (tests/peers/build_casanovo_venv.sh).

Reads ``{"predictions": [tokens or null, ...], "targets": [tokens, ...], "extra_residues": {token: mass}}``
(peptides as lists of canonical tokens; extra residues, optional, for masses at the tolerances) on stdin and writes ``{"pairs": [[flags, peptide_match], ...], "n_aa_true": ...,
"n_aa_pred": ..., "metrics": {...}}`` on stdout. Casanovo is called as its validation step calls it,
``aa_match_batch(true, pred, residues)`` with the residue masses of its shipped config.yaml, then
``aa_match_metrics``. Token lists, not strings: Casanovo's string splitter cuts ``M[Oxidation]`` in two
(its own FIXME). ``casanovo.denovo.evaluate`` is loaded from its file: importing the package would
import torch, which takes half a minute and plays no part in the matching.
"""

import importlib.util
import json
import sys
from pathlib import Path

import yaml


def main() -> None:
    package = Path(importlib.util.find_spec("casanovo").origin).parent
    spec = importlib.util.spec_from_file_location("casanovo_evaluate", package / "denovo" / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    residues = yaml.safe_load((package / "config.yaml").read_text())["residues"]
    data = json.load(sys.stdin)
    residues.update(data.get("extra_residues", {}))
    batch, n_aa_true, n_aa_pred = evaluate.aa_match_batch(data["targets"], data["predictions"], residues)
    aa_precision, aa_recall, peptide_recall = evaluate.aa_match_metrics(batch, n_aa_true, n_aa_pred)
    json.dump({
        "pairs": [[[bool(f) for f in flags], bool(whole)] for flags, whole in batch],
        "n_aa_true": n_aa_true,
        "n_aa_pred": n_aa_pred,
        "metrics": {"aa_precision": aa_precision, "aa_recall": aa_recall, "peptide_recall": peptide_recall},
    }, sys.stdout)


if __name__ == "__main__":
    main()
