"""MGF reading: the shared real file, seeded synthetic files for every form and every broken case."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from model.chem import C13_DELTA, fragment_mz, parse_peptide, precursor_mz
from model.errors import InputError
from model.mgf import (
    BAD_PEPTIDE,
    CHARGE_OUT_OF_RANGE,
    MASS_MISMATCH,
    NO_CHARGE,
    NO_PRECURSOR,
    SEVERAL_CHARGES,
    TOO_FEW_PEAKS,
    UNREADABLE,
    MgfDataset,
    PreprocessConfig,
    Spectrum,
    preprocess,
)

SAMPLE = Path(__file__).resolve().parent / "data" / "sample_preprocessed_spectra.mgf"


def _peaks(rng: np.random.Generator, peptide: str, n_noise: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """b and y ions of the peptide plus noise, shuffled: (N,) m/z and (N,) intensity."""
    mz = np.concatenate(
        [fragment_mz(peptide, "b"), fragment_mz(peptide, "y"), rng.uniform(100, 1200, n_noise)]
    )
    order = rng.permutation(mz.size)
    return mz[order], rng.uniform(10, 1000, mz.size)


def _block(fields: dict[str, str], mz: np.ndarray, intensity: np.ndarray) -> str:
    lines = ["BEGIN IONS", *(f"{key}={value}" for key, value in fields.items())]
    lines += [f"{m:.6f} {i:.2f}" for m, i in zip(mz, intensity)]
    return "\n".join([*lines, "END IONS", ""])


def _good(rng: np.random.Generator, peptide: str = "PEPTIDEK", charge: int = 2, **fields: str) -> str:
    """A usable annotated spectrum; ``fields`` override or add header lines (a value of None drops one)."""
    header = {
        "TITLE": f"{peptide}.{charge}",
        "PEPMASS": f"{precursor_mz(peptide, charge):.6f}",
        "CHARGE": f"{charge}+",
        "SEQ": peptide,
    }
    header.update(fields)
    return _block({k: v for k, v in header.items() if v is not None}, *_peaks(rng, peptide))


def _write(path: Path, *blocks: str, header: str = "") -> Path:
    path.write_text(header + "".join(blocks))
    return path


# --- the shared real file ----------------------------------------------------------------------------


def test_sample_file_reads_completely_and_precursors_agree_with_seq() -> None:
    with MgfDataset(SAMPLE, PreprocessConfig(min_peaks=1)) as dataset:
        assert len(dataset) == 128 and not dataset.skipped
        assert sorted(dataset.charge.tolist()) == [2] * 127 + [3]
        raw_seqs = [line[4:].strip() for line in SAMPLE.read_text().splitlines() if line.startswith("SEQ=")]
        assert dataset.peptides == ["".join(parse_peptide(s)) for s in raw_seqs]
        for i in range(len(dataset)):
            spectrum = dataset[i]
            assert spectrum.index == i and spectrum.title == str(i)
            computed = precursor_mz(spectrum.peptide, spectrum.charge)
            assert abs(computed - spectrum.precursor_mz) / spectrum.precursor_mz < 10e-6, spectrum.peptide
            assert spectrum.mz.dtype == np.float32 and spectrum.intensity.dtype == np.float32
            assert np.all(np.diff(spectrum.mz) > 0)
            assert spectrum.intensity.max() == pytest.approx(1.0)
            assert 1 <= spectrum.mz.size <= 150
        first = dataset[0]
        assert (first.peptide, first.charge, first.scans) == ("IAHYNKR", 2, "F1:2478")
        assert first.precursor_mz == pytest.approx(451.25348)
        assert first.rt_seconds == pytest.approx(824.574)
        assert first.file == str(SAMPLE)
        assert "C[Carbamidomethyl]GHTNNIRPK" in dataset.peptides
        assert dataset.peptide_lengths.min() == 6 and dataset.peptide_lengths.max() == 19


def test_sample_file_with_default_config_keeps_everything() -> None:
    with MgfDataset(SAMPLE) as dataset:
        assert len(dataset) == 128


# --- forms that must be accepted ---------------------------------------------------------------------


def test_every_charge_form(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    forms = ["2+", "2", "+2", " 2+ ", "3+"]
    path = _write(
        tmp_path / "charges.mgf",
        *(_good(rng, charge=2, CHARGE=form) for form in forms[:4]),
        _good(rng, charge=3),
    )
    with MgfDataset(path) as dataset:
        assert dataset.charge.tolist() == [2, 2, 2, 2, 3]
        assert [dataset[i].charge for i in range(5)] == [2, 2, 2, 2, 3]


def test_charge_from_pepmass_line_and_from_global_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mass = f"{precursor_mz('PEPTIDEK', 2):.6f}"
    path = _write(
        tmp_path / "header.mgf",
        _good(rng, CHARGE=None),  # takes the global CHARGE
        _good(rng, CHARGE=None, PEPMASS=f"{mass} 1234.5 2+"),
        header="COM=made by a test\nCHARGE=2+\n",
    )
    with MgfDataset(path) as dataset:
        assert dataset.charge.tolist() == [2, 2]
        assert dataset[1].precursor_mz == pytest.approx(float(mass))


def test_every_seq_notation_gives_one_canonical_peptide(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    forms = [
        "[Acetyl]-PEC[Carbamidomethyl]M[Oxidation]N[Deamidated]Q[Deamidated]K",
        "[UNIMOD:1]-PEC[UNIMOD:4]M[UNIMOD:35]N[UNIMOD:7]Q[UNIMOD:7]K",
        "+42.011PEC+57.021M+15.995N+0.984Q+0.984K",
    ]
    path = _write(tmp_path / "seq.mgf", *(_good(rng, peptide=form) for form in forms))
    with MgfDataset(path) as dataset:
        assert dataset.peptides == [forms[0]] * 3
        assert dataset.peptide_lengths.tolist() == [7, 7, 7]  # acetyl not counted
        assert dataset[2].peptide == forms[0]


def test_unannotated_spectra(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = _write(
        tmp_path / "plain.mgf", _good(rng, SEQ=None), _good(rng, peptide="LAHYNKR"), _good(rng, SEQ="")
    )
    with MgfDataset(path) as dataset:
        assert len(dataset) == 3
        assert dataset.peptides == [None, "LAHYNKR", None]
        assert dataset.peptide_lengths.tolist() == [0, 7, 0]
        assert dataset[0].peptide is None
        assert dataset.indices_with_length(1, 50).tolist() == [1]


def test_missing_and_duplicate_titles_are_all_read(tmp_path: Path) -> None:
    # pyteomics' IndexedMGF keys spectra by TITLE: it would drop these; positions must not.
    rng = np.random.default_rng(4)
    peptides = ["PEPTIDEK", "LAHYNKR", "SPELKR", "GGGAAAK"]
    blocks = [_good(rng, peptide=p, TITLE="same") for p in peptides[:2]] + [
        _good(rng, peptide=p, TITLE=None) for p in peptides[2:]
    ]
    path = _write(tmp_path / "titles.mgf", *blocks)
    with MgfDataset(path) as dataset:
        assert dataset.peptides == peptides
        assert [dataset[i].title for i in range(4)] == ["same", "same", "", ""]
        assert [dataset[i].index for i in range(4)] == [0, 1, 2, 3]


def test_windows_line_endings(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "crlf.mgf"
    path.write_bytes((_good(rng) + _good(rng, peptide="LAHYNKR")).replace("\n", "\r\n").encode())
    with MgfDataset(path, PreprocessConfig(remove_precursor_tol=0.0)) as dataset:
        assert dataset.peptides == ["PEPTIDEK", "LAHYNKR"]
        assert dataset[1].mz.size == 2 * 6 + 8


def test_several_files_are_concatenated(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    a = _write(tmp_path / "a.mgf", _good(rng, peptide="PEPTIDEK"))
    b = _write(tmp_path / "b.mgf", _good(rng, peptide="LAHYNKR"), _good(rng, peptide="SPELK"))
    with MgfDataset([a, b]) as dataset:
        assert len(dataset) == 3
        assert [(dataset[i].file, dataset[i].index) for i in range(3)] == [
            (str(a), 0),
            (str(b), 0),
            (str(b), 1),
        ]
        assert dataset[-1].peptide == "SPELK"
        with pytest.raises(IndexError):
            dataset[3]


# --- broken spectra: skipped by reason, or refused in strict mode ------------------------------------

BROKEN = {
    NO_CHARGE: {"CHARGE": None},
    NO_PRECURSOR: {"PEPMASS": None},
    BAD_PEPTIDE: {"SEQ": "PEPC[Foo]K"},
    CHARGE_OUT_OF_RANGE: {"CHARGE": "12+"},
    SEVERAL_CHARGES: {"CHARGE": "2+ and 3+"},
}


def _broken_file(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[int]]:
    """Good spectra at positions 0, 2, 4, ...; every broken case once in between. Returns the good positions."""
    broken = [_good(rng, **fields) for fields in BROKEN.values()]
    broken.append(
        _block({"PEPMASS": f"{precursor_mz('PEPTIDEK', 2):.6f}", "CHARGE": "2+", "SEQ": "PEPTIDEK"},
               np.array([300.0, 400.0]), np.ones(2))
    )
    broken.append(_good(rng, CHARGE="0"))  # some writers' "unknown"
    broken.append(_good(rng, SEQ="PEPXIDEK"))
    broken.append("BEGIN IONS\nPEPMASS=500\nCHARGE=2+\n100.0 1.0\n200.0 x\nEND IONS\n")
    broken.append("BEGIN IONS\nPEPMASS=500\nCHARGE=2+\n100.0\n200.0 5.0\nEND IONS\n")
    broken.append("BEGIN IONS\nPEPMASS=500\nCHARGE=2+\n100.0 1.0\n200.0 5.0\n")  # no END IONS
    blocks, good = [], []
    for block in broken:
        good.append(len(blocks))
        blocks += [_good(rng, peptide="LAHYNKR"), block]
    good.append(len(blocks))
    blocks.append(_good(rng, peptide="SPELKR"))
    return _write(tmp_path / "broken.mgf", *blocks), good


def test_broken_spectra_are_skipped_and_counted_by_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, good = _broken_file(tmp_path, np.random.default_rng(7))
    with caplog.at_level("WARNING", logger="model.mgf"), MgfDataset(path) as dataset:
        assert dataset.skipped == {
            NO_CHARGE: 2,
            NO_PRECURSOR: 1,
            BAD_PEPTIDE: 2,
            CHARGE_OUT_OF_RANGE: 1,
            SEVERAL_CHARGES: 1,
            TOO_FEW_PEAKS: 1,
            UNREADABLE: 3,
        }
        assert len(dataset) == len(good) == 12
        assert [dataset[i].index for i in range(len(dataset))] == good
        assert dataset.peptides == ["LAHYNKR"] * 11 + ["SPELKR"]
    assert "12 of 23 spectra usable" in caplog.text


def test_max_charge_is_configurable(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    path = _write(tmp_path / "z.mgf", _good(rng, charge=2), _good(rng, charge=3), _good(rng, charge=4))
    with MgfDataset(path, PreprocessConfig(max_charge=3)) as dataset:
        assert dataset.charge.tolist() == [2, 3]
        assert dataset.skipped == {CHARGE_OUT_OF_RANGE: 1}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"CHARGE": None}, "no CHARGE"),
        ({"PEPMASS": None}, "no PEPMASS"),
        ({"SEQ": "PEPC[Foo]K"}, "[Foo]"),
        ({"SEQ": "PEPXIDEK"}, "'X'"),
        ({"CHARGE": "12+"}, "CHARGE 12 is out of range; allowed: 1..10"),
        ({"CHARGE": "2+ and 3+"}, "several charges [2, 3]"),
    ],
)
def test_strict_mode_refuses_with_the_spectrum_index(tmp_path: Path, fields: dict, named: str) -> None:
    rng = np.random.default_rng(9)
    path = _write(tmp_path / "strict.mgf", _good(rng), _good(rng), _good(rng, **fields), _good(rng))
    with pytest.raises(InputError) as caught:
        MgfDataset(path, PreprocessConfig(strict=True))
    assert (caught.value.file, caught.value.key) == (str(path), "spectrum 2")
    assert named in caught.value.message
    assert str(caught.value).startswith(f"{path}: spectrum 2: ")


def test_strict_mode_refuses_too_few_peaks_and_unreadable_blocks(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    few = _block({"PEPMASS": "500.0", "CHARGE": "2+"}, np.array([300.0, 400.0]), np.ones(2))
    path = _write(tmp_path / "few.mgf", _good(rng), few)
    with pytest.raises(InputError, match=r"spectrum 1: has 2 peaks after preprocessing; min_peaks is 5"):
        MgfDataset(path, PreprocessConfig(strict=True))
    bad = "BEGIN IONS\nPEPMASS=500\nCHARGE=2+\n100.0 1.0\n200.0 x\nEND IONS\n"
    path = _write(tmp_path / "bad.mgf", bad, _good(rng))
    with pytest.raises(InputError, match=r"spectrum 0: cannot be parsed") as caught:
        MgfDataset(path, PreprocessConfig(strict=True))
    assert "\n" not in str(caught.value)  # one line for the CLI
    assert len(MgfDataset(path, PreprocessConfig(strict=False))) == 1


# --- not an MGF file ---------------------------------------------------------------------------------


def test_not_an_mgf_file_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "peptides.csv"
    text.write_text("peptide,charge\nPEPTIDE,2\n")
    empty = tmp_path / "empty.mgf"
    empty.write_bytes(b"")
    packed = tmp_path / "packed.mgf.gz"
    packed.write_bytes(gzip.compress(_good(rng).encode()))
    cases = {
        tmp_path / "missing.mgf": "no such file",
        tmp_path: "is a directory",
        empty: "is empty",
        text: "no BEGIN IONS line",
        garbage: "binary file with no BEGIN IONS line",
        packed: "gzip-compressed",
    }
    with pytest.raises(ValueError, match="no MGF paths given"):
        MgfDataset([])
    for path, named in cases.items():
        with pytest.raises(InputError) as caught:
            MgfDataset(path)
        assert (caught.value.file, caught.value.key) == (str(path), "file")
        assert named in caught.value.message
        assert "BEGIN IONS and END IONS" in caught.value.message  # says what is allowed


# --- preprocessing -----------------------------------------------------------------------------------


def test_preprocess_steps_in_order() -> None:
    cfg = PreprocessConfig(min_mz=100.0, max_mz=1000.0, remove_precursor_tol=2.0, top_k=4, min_peaks=2)
    precursor, charge = 500.0, 2  # charge-reduced precursor at 2 * 500 - 1.007 = 998.99
    mz = np.array([50.0, 900.0, 300.0, 501.5, 998.0, 1500.0, 200.0, 400.0, 600.0, np.nan, 700.0])
    intensity = np.array([999.0, 16.0, 4.0, 999.0, 999.0, 999.0, 100.0, 9.0, 1.0, 999.0, 0.0])
    out_mz, out_int = preprocess(mz, intensity, precursor, charge, cfg)
    # window drops 50, 1500 and NaN; precursor drops 501.5 and 998 (1+); zero intensity dropped;
    # sqrt: 900->4, 300->2, 200->10, 400->3, 600->1; top 4 in m/z order; max -> 1.
    np.testing.assert_array_equal(out_mz, np.array([200.0, 300.0, 400.0, 900.0], dtype=np.float32))
    np.testing.assert_allclose(out_int, [1.0, 0.2, 0.3, 0.4], rtol=1e-6)
    assert out_mz.dtype == np.float32 and out_int.dtype == np.float32


def test_preprocess_switches() -> None:
    mz = np.array([300.0, 200.0, 500.5])
    intensity = np.array([4.0, 16.0, 100.0])
    cfg = PreprocessConfig(remove_precursor_tol=0.0, sqrt_intensity=False, normalize=False, min_peaks=1)
    out_mz, out_int = preprocess(mz, intensity, 500.0, 2, cfg)
    np.testing.assert_array_equal(out_mz, [200.0, 300.0, 500.5])
    np.testing.assert_array_equal(out_int, [16.0, 4.0, 100.0])
    assert preprocess(mz, intensity, 500.0, 2, PreprocessConfig(min_peaks=3)) is None  # 500.5 removed
    assert preprocess(np.array([]), np.array([]), 500.0, 2, PreprocessConfig(min_peaks=0)) is None
    with pytest.raises(ValueError, match="one length"):
        preprocess(mz, intensity[:2], 500.0, 2, cfg)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"min_mz": 300.0, "max_mz": 200.0}, "min_mz=300.0, max_mz=200.0"),
        ({"remove_precursor_tol": -1.0}, "remove_precursor_tol must be >= 0"),
        ({"top_k": 0}, "top_k must be >= 1, got 0"),
        ({"min_peaks": 200}, "min_peaks must be in 0..top_k=150, got 200"),
        ({"max_charge": 0}, "max_charge must be >= 1, got 0"),
    ],
)
def test_preprocess_config_refuses_impossible_values(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace(".", r"\.")):
        PreprocessConfig(**kwargs)


def test_dataset_applies_the_configured_preprocessing(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    path = _write(tmp_path / "k.mgf", _good(rng, peptide="PEPTIDEKLLGGR"))  # 24 ions + 8 noise peaks
    cfg = PreprocessConfig(top_k=10, sqrt_intensity=False)
    with MgfDataset(path, cfg) as dataset:
        spectrum = dataset[0]
        assert isinstance(spectrum, Spectrum)
        assert spectrum.mz.size == 10
        text = path.read_text().splitlines()
        peaks = np.array([[float(v) for v in line.split()] for line in text if line[:1].isdigit()])
        expected = preprocess(peaks[:, 0], peaks[:, 1], spectrum.precursor_mz, 2, cfg)
        np.testing.assert_array_equal(spectrum.mz, expected[0])
        np.testing.assert_array_equal(spectrum.intensity, expected[1])


# --- length filter, random access, workers -----------------------------------------------------------


def test_indices_with_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    peptides = ["PEPTIDEK", "[Acetyl]-LAHYNKR", "SPELKR", "GGGAAAKLLR", "AAAAAAAAAAAAAAAK"]
    path = _write(tmp_path / "len.mgf", *(_good(rng, peptide=p) for p in peptides))
    with MgfDataset(path) as dataset:
        assert dataset.peptide_lengths.tolist() == [8, 7, 6, 10, 16]
        assert dataset.indices_with_length(7, 10).tolist() == [0, 1, 3]
        assert dataset.indices_with_length(6, 6).tolist() == [2]
        assert dataset.indices_with_length(17, 30).tolist() == []
        with pytest.raises(ValueError, match="lo=10, hi=7"):
            dataset.indices_with_length(10, 7)
        with pytest.raises(ValueError, match="lo=0"):
            dataset.indices_with_length(0, 7)


def test_random_access_pickle_and_workers_agree() -> None:
    with MgfDataset(SAMPLE) as dataset:
        forward = [dataset[i] for i in range(len(dataset))]
        backward = [dataset[i] for i in reversed(range(len(dataset)))][::-1]
        for a, b in zip(forward, backward):
            np.testing.assert_array_equal(a.mz, b.mz)
            assert a.peptide == b.peptide
        copy = pickle.loads(pickle.dumps(dataset))
        np.testing.assert_array_equal(copy[77].intensity, forward[77].intensity)
        loader = DataLoader(dataset, batch_size=16, num_workers=2, collate_fn=list)
        through_workers = [s for batch in loader for s in batch]
        assert [s.index for s in through_workers] == list(range(128))
        for a, b in zip(forward, through_workers):
            np.testing.assert_array_equal(a.mz, b.mz)
            np.testing.assert_array_equal(a.intensity, b.intensity)


# --- annotations against the precursor: fixed modifications written implicitly -------------------------------

CAM = "C[Carbamidomethyl]"


def _implicit_cam_file(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Three spectra of cysteine peptides whose PEPMASS includes carbamidomethyl but whose SEQ writes plain C,
    and one without cysteine."""
    blocks = [_good(rng, peptide=p.replace("C", CAM), SEQ=p) for p in ("PEPCTIDEK", "ACDCK", "LCAR")]
    blocks.append(_good(rng, peptide="PEPTIDEK"))
    return _write(tmp_path / "implicit.mgf", *blocks)


def test_seq_that_disagrees_with_the_precursor_is_skipped_counted_and_logged(tmp_path, caplog) -> None:
    path = _implicit_cam_file(tmp_path, np.random.default_rng(11))
    with caplog.at_level("WARNING", logger="model.mgf"), MgfDataset(path) as dataset:
        assert dataset.skipped == {MASS_MISMATCH: 3}
        assert dataset.peptides == ["PEPTIDEK"]
    assert "3 annotations disagree with their precursor mass" in caplog.text and "data.fixed_mods" in caplog.text


def test_strict_mode_refuses_a_file_whose_seq_disagrees(tmp_path) -> None:
    path = _implicit_cam_file(tmp_path, np.random.default_rng(12))
    with pytest.raises(InputError) as caught:
        MgfDataset(path, PreprocessConfig(strict=True))
    assert caught.value.key == "spectrum 0"
    assert "SEQ=PEPCTIDEK weighs" in caught.value.message and "data.fixed_mods" in caught.value.message


@pytest.mark.parametrize("written", ["Carbamidomethyl", "UNIMOD:4", "+57.021", "[Carbamidomethyl]"])
def test_fixed_mods_make_implicit_modifications_explicit(tmp_path, written) -> None:
    path = _implicit_cam_file(tmp_path, np.random.default_rng(13))
    with MgfDataset(path, PreprocessConfig(fixed_mods=(("C", written),), strict=True)) as dataset:
        assert not dataset.skipped
        assert dataset.peptides == ["PEP" + CAM + "TIDEK", "A" + CAM + "D" + CAM + "K", "L" + CAM + "AR", "PEPTIDEK"]


def test_an_explicit_modification_is_not_modified_twice(tmp_path) -> None:
    rng = np.random.default_rng(14)
    path = _write(tmp_path / "explicit.mgf", _good(rng, peptide="PEPC[Carbamidomethyl]K", SEQ="PEPC+57.021K"))
    with MgfDataset(path, PreprocessConfig(fixed_mods=(("C", "Carbamidomethyl"),), strict=True)) as dataset:
        assert dataset.peptides == ["PEP" + CAM + "K"]


@pytest.mark.parametrize(("isotopes", "kept"), [(0, True), (1, True), (2, False)])
def test_precursor_picked_at_an_isotope_peak(tmp_path, isotopes, kept) -> None:
    rng = np.random.default_rng(15)
    mz = precursor_mz("PEPTIDEK", 2) + isotopes * C13_DELTA / 2
    path = _write(tmp_path / "iso.mgf", _good(rng, PEPMASS=f"{mz:.6f}"))
    with MgfDataset(path) as dataset:
        assert (len(dataset) == 1) == kept


@pytest.mark.parametrize(("fixed", "named"), [({"X": "Carbamidomethyl"}, "'X' is not a residue"),
                                              ({"C": "Oxidation"}, "cannot sit on C"),
                                              ({"C": "Foo"}, "unknown modification"),
                                              ({"C": 57}, "expected a string"),
                                              ("C", "expected a mapping")])
def test_config_fixed_mods_are_checked(fixed, named) -> None:
    from model.config import load_config

    with pytest.raises(InputError, match="data.fixed_mods") as caught:
        load_config("tiny", {"data.fixed_mods": fixed})
    assert named in str(caught.value)


def test_config_fixed_mods_reach_the_reader(tmp_path) -> None:
    from model.config import load_config
    from model.data import open_mgf

    path = _implicit_cam_file(tmp_path, np.random.default_rng(16))
    cfg = load_config("tiny", {"data.fixed_mods": {"C": "Carbamidomethyl"}, "data.preprocess.strict": True})
    assert open_mgf([str(path)], cfg, "data.train_files").peptides[0] == "PEP" + CAM + "TIDEK"
