"""Realism statistics: right on a hand-built spectrum (pyteomics as the reference), the DESIGN figures on the
shipped real file, and the generator's realistic setting within 20% of that file on every statistic."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from pyteomics import mass as pyteomics_mass

from benchmarks import realism as realism_cli
from model.chem import C13_DELTA, residue_masses
from model.config import load_config
from model.data import preprocess_config
from model.mgf import PreprocessConfig
from model.realism import (
    LABELS,
    ROWS,
    Annotated,
    label_peaks,
    real_spectra,
    spectrum_stats,
    summarize,
    synthetic_spectra,
)
from model.synthetic import REALISTIC_NOISE_PEAKS, generate, step_generator

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "sample_preprocessed_spectra.mgf"
PEPTIDE = "PEPTIDEK"


def _mz(fragment: str, ion_type: str, charge: int = 1) -> float:
    return pyteomics_mass.fast_mass(fragment, ion_type=ion_type, charge=charge)


# PEPTIDEK: one peak of each kind, and peaks that must not count.
HAND = [
    (_mz("PEP", "b"), 1.0, "by"),  # b3: cleavage 3
    (_mz("EK", "y") + 0.04, 0.5, "by"),  # y2 (cleavage 6), 0.04 Da off: inside the tolerance
    (_mz("DEK", "y"), 0.25, "by"),  # y3: cleavage 5
    (_mz("EK", "y") + C13_DELTA, 0.4, "isotope"),  # of y2, which is present
    (_mz("PEPTI", "b") + C13_DELTA, 0.4, "other"),  # of b5, which is absent: not an isotope
    (_mz("PEPT", "b-H2O"), 0.3, "loss"),
    (_mz("TIDEK", "y-NH3"), 0.3, "loss"),
    (_mz("PE", "a"), 0.6, "a"),
    (_mz("I", "a"), 0.7, "immonium"),  # the immonium ion of I
    (_mz("PEPT", "b", 2), 0.35, "other"),  # b4++: counted for precursor charge >= 3 only
    (_mz("PEPTID", "b") + 0.06, 0.45, "other"),  # b6, 0.06 Da off: outside
    (400.0, 0.2, "other"),
]


def _hand(charge: int) -> Annotated:
    order = np.argsort([p[0] for p in HAND])
    mz = np.array([HAND[i][0] for i in order])
    intensity = np.array([HAND[i][1] for i in order])
    return Annotated(mz, intensity, np.array(residue_masses(PEPTIDE)), charge)


@pytest.mark.parametrize("charge", [2, 3])
def test_labels_and_statistics_of_a_hand_built_spectrum(charge: int) -> None:
    spectrum = _hand(charge)
    want = [HAND[i][2] for i in np.argsort([p[0] for p in HAND])]
    if charge == 3:  # b4++ counts, and covers cleavage 4
        want = ["by" if m == pytest.approx(_mz("PEPT", "b", 2)) else w for m, w in zip(spectrum.mz, want)]
    labels, present = label_peaks(spectrum)
    assert [LABELS[i] for i in labels] == want
    assert present.shape == (7, 4 if charge == 3 else 2)
    stats = spectrum_stats(spectrum)
    n_by = 3 + (charge == 3)
    by = np.array(want) == "by"
    assert stats["peaks"] == len(HAND)
    assert stats["by_peaks"] == pytest.approx(n_by / len(HAND))
    assert stats["by_intensity"] == pytest.approx(spectrum.intensity[by].sum() / spectrum.intensity.sum())
    assert stats["cleavages"] == pytest.approx(n_by / 7)  # b3, y3, y2 (and b4++) sit at distinct cleavages
    assert stats["ion_coverage"] == pytest.approx(n_by / present.size)
    for name in ("isotope", "loss", "a", "immonium", "other"):
        assert stats[f"{name}_peaks"] == pytest.approx(want.count(name) / len(HAND)), name


def test_summary_medians_means_and_pooled_quartiles() -> None:
    spectra = [_hand(2), _hand(3), _hand(2)]
    summary = summarize(spectra)
    per = [spectrum_stats(s) for s in spectra]
    assert summary["spectra"] == 3
    assert summary["by_peaks"] == pytest.approx(np.median([p["by_peaks"] for p in per]))
    assert summary["other_peaks"] == pytest.approx(np.mean([p["other_peaks"] for p in per]))
    by_values = np.concatenate([s.intensity[label_peaks(s)[0] == 0] for s in spectra])
    assert summary["by_intensity_q25"] == pytest.approx(np.percentile(by_values, 25))
    with pytest.raises(ValueError, match="no spectra"):
        summarize([])


# --- the real file ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> dict[str, float]:
    return summarize(real_spectra(REAL))


def test_real_file_gives_the_design_figures(real: dict[str, float]) -> None:
    """DESIGN section 3: 53 peaks, 19% of peaks and 26% of intensity explained, 83% of cleavages covered.
    The 26% is of the file's own intensities; the reader's square root makes it 23%."""
    assert real["spectra"] == 128
    assert real["peaks"] == 53
    assert real["by_peaks"] == pytest.approx(0.19, abs=0.005)
    assert real["cleavages"] == pytest.approx(0.83, abs=0.005)
    raw = summarize(real_spectra(REAL, PreprocessConfig(sqrt_intensity=False)))
    assert raw["by_intensity"] == pytest.approx(0.26, abs=0.005)
    assert real["by_intensity"] == pytest.approx(0.227, abs=0.005)


# --- the generator against it -------------------------------------------------------------------------------


def _synthetic(lo: int, hi: int, noise: int, preset: str = "base", n: int = 400) -> dict[str, float]:
    """Statistics of ``n`` synthetic spectra at the real file's charge (2+; doubly charged ions count at 3+)."""
    cfg = load_config(preset, {"data.min_charge": 2, "data.max_charge": 2})
    batch = generate(n, lo, hi, noise, cfg.data, step_generator(7, 0, "cpu"), "cpu", cfg.model.max_peaks)
    return summarize(synthetic_spectra(batch, preprocess_config(cfg)))


def test_realistic_generator_within_20_percent_of_the_real_file(real: dict[str, float]) -> None:
    """base.yaml's generator at the hardest shipped lengths and REALISTIC_NOISE_PEAKS matches the real file."""
    synthetic = _synthetic(7, 14, REALISTIC_NOISE_PEAKS)
    off = {r.key: f"{synthetic[r.key]:.3f} vs {real[r.key]:.3f}" for r in ROWS
           if abs(synthetic[r.key] - real[r.key]) > 0.2 * abs(real[r.key])}
    assert not off, off


def test_generator_makes_only_what_the_statistics_recognise() -> None:
    """Without noise every peak the realistic generator makes has a label; with realism off, only b/y ions."""
    realistic = _synthetic(7, 12, 0, n=200)
    assert realistic["other_peaks"] < 0.005
    assert min(realistic[f"{k}_peaks"] for k in ("isotope", "loss", "a", "immonium")) > 0.01
    plain = _synthetic(7, 12, 0, preset="tiny", n=200)
    assert plain["by_peaks"] == 1.0
    assert max(plain[f"{k}_peaks"] for k in ("isotope", "loss", "a", "immonium", "other")) < 0.01


def test_synthetic_spectra_lose_nothing_to_the_preprocessing() -> None:
    """The generator already drops what the preprocessing drops: re-preprocessing keeps every peak."""
    cfg = load_config("base")
    batch = generate(100, 7, 14, REALISTIC_NOISE_PEAKS, cfg.data, step_generator(8, 0, "cpu"))
    spectra = synthetic_spectra(batch, preprocess_config(cfg))
    assert len(spectra) == len(batch)
    assert [len(s.mz) for s in spectra] == batch.peak_mask.sum(dim=1).tolist()


# --- the benchmark command ----------------------------------------------------------------------------------


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run the benchmark's command line in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["benchmarks.realism", *args])
    code = 0
    try:
        realism_cli.main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_benchmark_prints_and_writes_the_table(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = _run(["--mgf", str(REAL), "--n", "60", "--out", str(tmp_path / "realism")], monkeypatch, capsys)
    assert code == 0, err
    assert "charges 2..2" in out and "within 20%" in out
    with (tmp_path / "realism.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows[1:]] == [r.key for r in ROWS] + ["spectra"]
    assert rows[-1][2:4] == ["128", "60"]
    assert (tmp_path / "realism.md").read_text().startswith("| statistic |")


@pytest.mark.parametrize(("args", "where"), [
    (["--n", "0"], "command line: --n"),
    (["--noise-peaks", "-1"], "command line: --noise-peaks"),
    (["--mgf", "/no/such.mgf"], "/no/such.mgf: file: no such file"),
    (["--config", "nonesuch"], "nonesuch: preset: unknown preset"),
])
def test_benchmark_refuses_bad_input_in_one_line(args: list[str], where: str, tmp_path: Path, monkeypatch,
                                                 capsys) -> None:
    code, _, err = _run(["--mgf", str(REAL), *args, "--out", str(tmp_path / "x")], monkeypatch, capsys)
    assert code == 2
    assert err.startswith(f"error: {where}") and err.count("\n") == 1, err
