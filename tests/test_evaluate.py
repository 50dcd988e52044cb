"""The evaluate CLI end to end: a synthetic MGF written in tmp_path, the shared real MGF, an unannotated
file, and every kind of bad input (one line on stderr, exit 2, nothing written).

The checkpoint is the tiny model that ``test_decoding.trained_checkpoint`` trains once per session.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_decoding import load_model, trained_checkpoint, write_mgf

from model.config import load_config
from model.data import open_mgf
from model.decoding import greedy_decode
from model.evaluate import COLUMNS, evaluate_file, main
from model.metrics import aa_match_metrics
from model.synthetic import generate, step_generator

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "sample_preprocessed_spectra.mgf"


@pytest.fixture(scope="module")
def ckpt(one_thread, tmp_path_factory) -> Path:
    return trained_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def synthetic_mgf(tmp_path_factory) -> Path:
    """48 clean 7-10 synthetic spectra with SEQ, from a seed the trainer never used."""
    batch = generate(48, 7, 10, 0, load_config("tiny").data, step_generator(555, 0, "cpu"))
    return write_mgf(tmp_path_factory.mktemp("mgf") / "synthetic.mgf", batch)


# Small tensors: one thread is faster than two fighting over a busy machine's cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model.evaluate", "--threads", "1", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_cli_on_a_synthetic_mgf(ckpt, synthetic_mgf, tmp_path):
    out = tmp_path / "preds" / "synthetic.csv"
    result = run_cli("--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "peptide_recall" in result.stdout and "aa_precision" in result.stdout

    rows = read_rows(out)
    dataset = open_mgf([str(synthetic_mgf)], load_config("tiny"), "test")
    assert len(rows) == len(dataset) > 40
    assert [int(r["index"]) for r in rows] == [dataset[i].index for i in range(len(dataset))]
    assert all(r["truth"] and r["file"] == str(synthetic_mgf) for r in rows)
    summary = json.loads((tmp_path / "preds" / "synthetic.metrics.json").read_text())
    assert summary["spectra"] == summary["annotated"] == len(rows)
    # The CSV, the summary and the metrics module agree with each other.
    matched = sum(r["peptide_match"] == "True" for r in rows)
    assert summary["peptide_recall"] == pytest.approx(matched / len(rows))
    metrics = aa_match_metrics([r["prediction"] for r in rows], [r["truth"] for r in rows])
    assert {k: summary[k] for k in metrics} == pytest.approx(metrics)
    # Preprocessing (square-root intensities, precursor peaks removed) barely changes clean spectra: the
    # model reads them from the MGF about as well as it reads the generator's batches.
    assert summary["peptide_recall"] > 0.3
    direct = greedy_decode(load_model(ckpt), generate(48, 7, 10, 0, load_config("tiny").data,
                                                      step_generator(555, 0, "cpu")))
    direct_matched = sum(p.peptide == r["truth"] for p, r in zip(direct, rows))
    assert abs(matched - direct_matched) <= 0.2 * len(rows)


def test_beam_search_on_the_shared_real_mgf(ckpt, tmp_path):
    out = tmp_path / "real.csv"
    summary = evaluate_file(ckpt, [SAMPLE], out, beam_size=3, batch_size=64, device="cpu")
    rows = read_rows(out)
    assert len(rows) == summary["spectra"] == summary["annotated"] == 128
    for key in ("aa_precision", "aa_recall", "peptide_recall", "precursor_match_rate"):
        assert 0.0 <= summary[key] <= 1.0
    assert {r["precursor_match"] for r in rows} <= {"True", "False"}
    assert all(r["truth"] for r in rows)
    assert summary["beam_size"] == 3


def test_unannotated_mgf_gets_predictions_only(ckpt, tmp_path, capsys):
    batch = generate(6, 7, 10, 0, load_config("tiny").data, step_generator(556, 0, "cpu"))
    mgf = write_mgf(tmp_path / "plain.mgf", batch, annotated=False)
    out = tmp_path / "plain.csv"
    summary = main(["--checkpoint", str(ckpt), "--mgf", str(mgf), "--out", str(out), "--device", "cpu"])
    assert "no metrics could be computed" in capsys.readouterr().out
    assert summary["annotated"] == 0 and summary["peptide_recall"] is None
    rows = read_rows(out)
    assert len(rows) == 6
    assert all(r["truth"] == "" and r["peptide_match"] == "" and r["prediction"] for r in rows)


def test_several_files_one_row_per_spectrum(ckpt, synthetic_mgf, tmp_path):
    batch = generate(5, 7, 10, 0, load_config("tiny").data, step_generator(557, 0, "cpu"))
    plain = write_mgf(tmp_path / "plain.mgf", batch, annotated=False)
    summary = evaluate_file(ckpt, [plain, synthetic_mgf], tmp_path / "both.csv", batch_size=16, device="cpu")
    rows = read_rows(tmp_path / "both.csv")
    assert [r["file"] for r in rows[:5]] == [str(plain)] * 5
    assert summary["spectra"] == len(rows) and summary["annotated"] == len(rows) - 5


def _bad_inputs(ckpt: Path, synthetic_mgf: Path, tmp: Path) -> dict[str, list[str]]:
    not_mgf = tmp / "notes.txt"
    not_mgf.write_text("hello\n")
    junk = tmp / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    other = tmp / "other.pt"
    torch.save({"weights": 1}, other)
    return {
        "missing checkpoint": ["--checkpoint", str(tmp / "nope.pt"), "--mgf", str(synthetic_mgf)],
        "junk checkpoint": ["--checkpoint", str(junk), "--mgf", str(synthetic_mgf)],
        "foreign checkpoint": ["--checkpoint", str(other), "--mgf", str(synthetic_mgf)],
        "missing mgf": ["--checkpoint", str(ckpt), "--mgf", str(tmp / "nope.mgf")],
        "not an mgf": ["--checkpoint", str(ckpt), "--mgf", str(not_mgf)],
        "bad flag": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--beam", "5"],
        "beam size 0": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--beam-size", "0"],
        "batch size not a number": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--batch-size", "x"],
        "max length 0": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--max-length", "0"],
        "bad device": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--device", "tpu"],
        "out is a directory": ["--checkpoint", str(ckpt), "--mgf", str(synthetic_mgf), "--out", str(tmp)],
        "no checkpoint": ["--mgf", str(synthetic_mgf)],
    }


def test_bad_input_is_one_line_and_exit_2(ckpt, synthetic_mgf, tmp_path, capsys):
    for name, args in _bad_inputs(ckpt, synthetic_mgf, tmp_path).items():
        out = tmp_path / f"{name}.csv"
        if "--out" not in args:
            args = [*args, "--out", str(out)]
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].count(": ") >= 3, (name, err)
        assert not out.exists(), name


def test_bad_input_from_the_real_cli_has_no_traceback(synthetic_mgf, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    result = run_cli("--checkpoint", str(junk), "--mgf", str(synthetic_mgf), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {junk}: checkpoint: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "predictions.csv").exists()
