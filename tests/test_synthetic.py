"""Synthetic spectra: determinism, token layout, masses against chem and pyteomics, the peaks themselves."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pyteomics import mass as pyteomics_mass

from model.batch import Batch
from model.chem import C13_DELTA, PROTON, fragment_mz, peptide_mass
from model.config import DataConfig, PreprocessSection, load_config
from model.errors import InputError
from model.synthetic import INTENSITY_FLOOR, NOISE_MZ_PROFILE, generate, pack_peaks, step_generator
from model.tokenizer import PAD, STOP, TOKEN_ID, decode

CAM = pyteomics_mass.calculate_mass(formula="C2H3NO")  # carbamidomethyl, from its formula
OXIDATION = pyteomics_mass.calculate_mass(formula="O")


def _gen(n: int = 64, lo: int = 7, hi: int = 10, noise: int = 0, seed: int = 0, step: int = 0,
         max_peaks: int = 150, cfg: DataConfig | None = None, **data) -> Batch:
    cfg = cfg if cfg is not None else DataConfig(**data)
    return generate(n, lo, hi, noise, cfg, step_generator(seed, step, "cpu"), "cpu", max_peaks)


def _peaks(batch: Batch, i: int) -> np.ndarray:
    return batch.mz[i][batch.peak_mask[i]].double().numpy()


def _true_ions(peptide: str, charge: int) -> np.ndarray:
    """b and y ions at charge 1, and at charge 2 for precursors of charge >= 3 (DESIGN section 3)."""
    ions = fragment_mz(peptide, "b", 1) + fragment_mz(peptide, "y", 1)
    if charge >= 3:
        ions += fragment_mz(peptide, "b", 2) + fragment_mz(peptide, "y", 2)
    return np.array(ions)


def _lengths(batch: Batch) -> torch.Tensor:
    return ((batch.tokens != PAD) & (batch.tokens != STOP)).sum(dim=1)


# --- determinism --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tiny", "base"])  # base: every realism feature on
def test_same_seed_and_step_give_the_same_batch(preset: str) -> None:
    cfg = load_config(preset).data
    a, b = _gen(seed=3, step=17, noise=4, cfg=cfg), _gen(seed=3, step=17, noise=4, cfg=cfg)
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)


@pytest.mark.parametrize(("seed", "step"), [(3, 18), (4, 17)])
def test_another_step_or_seed_gives_another_batch(seed: int, step: int) -> None:
    a, b = _gen(seed=3, step=17), _gen(seed=seed, step=step)
    assert not torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.precursor_mass, b.precursor_mass)


def test_step_generator_does_not_depend_on_global_rng() -> None:
    torch.manual_seed(1)
    a = _gen(step=5)
    torch.manual_seed(2)
    torch.rand(10)
    b = _gen(step=5)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mz, b.mz)


# --- tokens and masses --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi"), [(7, 10), (7, 14), (3, 3)])
def test_lengths_and_token_layout(lo: int, hi: int) -> None:
    batch = _gen(n=400, lo=lo, hi=hi)
    assert batch.tokens.shape == (400, hi + 1)
    lengths = _lengths(batch)
    assert int(lengths.min()) == lo and int(lengths.max()) == hi  # the whole range, nothing outside it
    for row, n in zip(batch.tokens.tolist(), lengths.tolist()):
        assert all(t not in (PAD, STOP) for t in row[:n])
        assert row[n] == STOP
        assert all(t == PAD for t in row[n + 1 :])


def test_residues_are_the_19_distinct_ones_with_fixed_carbamidomethyl() -> None:
    batch = _gen(n=500, lo=10, hi=10)
    used = set(batch.tokens[:, :10].flatten().tolist())
    allowed = {TOKEN_ID[r] for r in "GASPVTLNDQKEMHFRYW"} | {TOKEN_ID["C[Carbamidomethyl]"]}
    assert used == allowed  # no I (written as L), no bare C, nothing else
    plain = _gen(n=500, lo=10, hi=10, fixed_carbamidomethyl=False)
    assert TOKEN_ID["C"] in set(plain.tokens.flatten().tolist())


def test_precursor_mass_equals_chem_peptide_mass() -> None:
    batch = _gen(n=300, lo=7, hi=14, min_charge=1, max_charge=6, oxidation_prob=0.5)
    assert set(batch.charge.tolist()) == set(range(1, 7))
    assert batch.precursor_mass.dtype == torch.float64
    for row, m in zip(batch.tokens, batch.precursor_mass.tolist()):
        assert m == pytest.approx(peptide_mass(decode(row)), abs=1e-9)


def test_precursor_mass_against_pyteomics() -> None:
    batch = _gen(n=60, lo=7, hi=14, oxidation_prob=0.5)
    oxidised = 0
    for row, m in zip(batch.tokens, batch.precursor_mass.tolist()):
        peptide = decode(row)
        plain = re.sub(r"\[[^\]]*\]", "", peptide)
        n_ox = peptide.count("M[Oxidation]")
        oxidised += n_ox
        expected = pyteomics_mass.fast_mass(plain) + plain.count("C") * CAM + n_ox * OXIDATION
        assert m == pytest.approx(expected, abs=1e-5)
    assert oxidised > 0  # the oxidation branch was exercised


def test_oxidation_probability_one_oxidises_every_methionine() -> None:
    tokens = _gen(n=200, oxidation_prob=1.0).tokens
    assert (tokens == TOKEN_ID["M[Oxidation]"]).any()
    assert not (tokens == TOKEN_ID["M"]).any()


# --- peaks --------------------------------------------------------------------------------------------------


def test_peaks_sorted_padding_last_and_intensity_normalised() -> None:
    batch = _gen(n=100, lo=7, hi=14, noise=5)
    mask = batch.peak_mask
    # real peaks first, then padding (mask is a prefix of True)
    assert torch.equal(mask, mask.cumprod(dim=1).bool())
    for i in range(len(batch)):
        peaks = _peaks(batch, i)
        assert np.all(np.diff(peaks) >= 0)
        assert batch.intensity[i][mask[i]].max() == pytest.approx(1.0)
        assert (batch.intensity[i][mask[i]] > 0).all()
    assert (batch.mz[~mask] == 0).all() and (batch.intensity[~mask] == 0).all()


@pytest.mark.parametrize("charge", [2, 3, 4])
def test_every_peak_is_a_true_ion_within_jitter(charge: int) -> None:
    """No noise: every peak lies within 6 sigma of 5 ppm of a b/y ion of the decoded peptide; charge-2 ions
    only where the precursor charge is >= 3."""
    batch = _gen(n=150, lo=7, hi=14, min_charge=charge, max_charge=charge, jitter_ppm=5.0)
    rel_errors = []
    for i in range(len(batch)):
        ions = _true_ions(decode(batch.tokens[i]), charge)
        peaks = _peaks(batch, i)
        assert len(peaks) > 0
        nearest = ions[np.abs(peaks[:, None] - ions[None, :]).argmin(axis=1)]
        rel = (peaks - nearest) / nearest
        assert np.all(np.abs(rel) <= 30e-6 + 1e-7), (decode(batch.tokens[i]), peaks[np.abs(rel) > 30e-6])
        rel_errors.append(rel)
    spread = np.concatenate(rel_errors).std()
    assert 4e-6 < spread < 6e-6  # the jitter is there, at the configured scale


def test_without_jitter_peaks_are_exact_ions() -> None:
    batch = _gen(n=50, lo=7, hi=12, min_charge=3, max_charge=3, jitter_ppm=0.0)
    for i in range(len(batch)):
        ions = _true_ions(decode(batch.tokens[i]), 3)
        peaks = _peaks(batch, i)
        assert np.abs(peaks[:, None] - ions[None, :]).min(axis=1).max() < 1e-6 * peaks.max()  # float32 rounding


def test_true_sequence_covers_about_ion_keep_prob() -> None:
    """The seeds measured 60-64% coverage for the true sequence; ion_keep_prob 0.62 should give that."""
    batch = _gen(n=1500, lo=7, hi=12, min_charge=2, max_charge=4, ion_keep_prob=0.62, step=3)
    covered = total = 0
    for i in range(len(batch)):
        ions = _true_ions(decode(batch.tokens[i]), int(batch.charge[i]))
        peaks = _peaks(batch, i)
        hit = np.abs(ions[:, None] - peaks[None, :]).min(axis=1) <= 0.05
        covered += int(hit.sum())
        total += len(ions)
    assert 0.60 <= covered / total <= 0.64


def _removed(ions: np.ndarray, precursor_mass: float, charge: int, pre: PreprocessSection) -> np.ndarray:
    """Ions the real files' preprocessing drops: outside [min_mz, max_mz], or within remove_precursor_tol
    of the precursor m/z at a charge 1..z."""
    centres = np.array([(precursor_mass + k * PROTON) / k for k in range(1, charge + 1)])
    near = (np.abs(ions[:, None] - centres[None, :]) <= pre.remove_precursor_tol).any(axis=1)
    return near | (ions < pre.min_mz) | (ions > pre.max_mz)


def test_ion_keep_prob_one_keeps_every_ion_the_preprocessing_keeps() -> None:
    """Changed with issue 9: the generator now drops what the real files' preprocessing drops (ions below
    min_mz, ions within remove_precursor_tol of a precursor m/z); every other ion is there."""
    batch = _gen(n=200, lo=7, hi=12, min_charge=2, max_charge=4, ion_keep_prob=1.0, jitter_ppm=0.0)
    dropped = 0
    for i in range(len(batch)):
        ions = _true_ions(decode(batch.tokens[i]), int(batch.charge[i]))
        peaks = _peaks(batch, i)
        gone = _removed(ions, float(batch.precursor_mass[i]), int(batch.charge[i]), PreprocessSection())
        distance = np.abs(ions[:, None] - peaks[None, :]).min(axis=1)
        assert distance[~gone].max() < 1e-3
        assert (distance[gone] > 1e-3).all()
        assert len(peaks) == int((~gone).sum())
        dropped += int(gone.sum())
    assert dropped > 0  # the removal was exercised
    kept_all = _gen(n=200, lo=7, hi=12, min_charge=2, max_charge=2, ion_keep_prob=1.0, jitter_ppm=0.0,
                    preprocess=PreprocessSection(remove_precursor_tol=0.0))
    for i in range(len(kept_all)):  # 2+ fragments are all >= 58 m/z: without the window nothing is dropped
        assert len(_peaks(kept_all, i)) == len(_true_ions(decode(kept_all.tokens[i]), 2))


@pytest.mark.parametrize(("noise", "preset"), [(1, "tiny"), (5, "tiny"), (20, "tiny"), (34, "base")])
def test_exactly_noise_peaks_extra_peaks_below_the_precursor(noise: int, preset: str) -> None:
    """Noise is drawn after the ions, so the same (seed, step) gives the same ions plus ``noise`` peaks (none
    lost to the precursor windows: they are moved out of them)."""
    cfg = load_config(preset).data
    clean = _gen(n=80, lo=7, hi=12, noise=0, step=9, cfg=cfg)
    noisy = _gen(n=80, lo=7, hi=12, noise=noise, step=9, cfg=cfg)
    assert torch.equal(clean.tokens, noisy.tokens)
    for i in range(len(clean)):
        a, b = _peaks(clean, i), _peaks(noisy, i)
        assert len(b) == len(a) + noise
        extra = np.setdiff1d(b, a)  # the noise peaks
        assert np.isin(a, b).all()
        assert len(extra) == noise
        assert (extra >= 50.0).all() and (extra <= float(noisy.precursor_mass[i]) + 1e-3).all()


def test_max_peaks_keeps_the_most_intense() -> None:
    full = _gen(n=40, lo=10, hi=14, noise=20, step=2, max_peaks=500)
    capped = _gen(n=40, lo=10, hi=14, noise=20, step=2, max_peaks=12)
    assert capped.mz.shape[1] == 12 and int(capped.peak_mask.sum(dim=1).min()) == 12
    for i in range(len(full)):
        mz, inten = _peaks(full, i), full.intensity[i][full.peak_mask[i]].numpy()
        top = np.sort(mz[np.argsort(-inten, kind="stable")[:12]])
        assert np.array_equal(_peaks(capped, i), top)
        # the most intense peak survives, so the normalisation is the same
        assert np.allclose(np.sort(capped.intensity[i].numpy()), np.sort(inten)[-12:])


def test_max_mz_drops_peaks_above_it() -> None:
    batch = _gen(n=100, lo=12, hi=14, max_mz=800.0, noise=3)
    assert float(batch.mz[batch.peak_mask].max()) <= 800.0
    unlimited = _gen(n=100, lo=12, hi=14, noise=3)
    assert float(unlimited.mz[unlimited.peak_mask].max()) > 800.0  # the limit did something


def test_precursor_mz_would_follow_from_mass_and_charge() -> None:
    """The batch stores the neutral mass: a charge-z precursor m/z is (M + z * proton) / z."""
    batch = _gen(n=20, min_charge=2, max_charge=4)
    for row, m, z in zip(batch.tokens, batch.precursor_mass.tolist(), batch.charge.tolist()):
        assert (m + z * PROTON) / z == pytest.approx(pyteomics_mass.fast_mass(
            decode(row).replace("C[Carbamidomethyl]", "C"), charge=z) + decode(row).count("C[") * CAM / z, abs=1e-5)


# --- realism features (issue 9), against pyteomics ----------------------------------------------------------

AA = dict(pyteomics_mass.std_aa_mass, C=pyteomics_mass.std_aa_mass["C"] + CAM)  # every C carbamidomethylated
NO_WINDOW = PreprocessSection(remove_precursor_tol=0.0)
COMPANIONS = {  # key -> the singly charged ion kinds (pyteomics ion types) it adds
    "neutral_loss_prob": ("b-H2O", "b-NH3", "y-H2O", "y-NH3"),
    "a_ion_prob": ("a",),
    "isotope_prob": ("b+iso", "y+iso"),
    "immonium_prob": ("immonium",),
}


def _ions(peptide: str, kind: str) -> np.ndarray:
    """Singly charged ions of a kind: b/a ions 1..n-1, y ions 1..n-1, '+iso' the 13C peak, or immonium ions
    of the distinct residues (the a ion of a one-residue peptide)."""
    seq = peptide.replace("C[Carbamidomethyl]", "C")
    if kind == "immonium":
        return np.array([pyteomics_mass.fast_mass(r, ion_type="a", charge=1, aa_mass=AA) for r in sorted(set(seq))])
    if kind.endswith("+iso"):
        return _ions(peptide, kind[0]) + C13_DELTA
    parts = [seq[:i] for i in range(1, len(seq))] if kind[0] in "ab" else [seq[-j:] for j in range(1, len(seq))]
    return np.array([pyteomics_mass.fast_mass(p, ion_type=kind, charge=1, aa_mass=AA) for p in parts])


def test_every_companion_peak_where_pyteomics_puts_it() -> None:
    """Every ion and every companion at probability 1: the peaks are exactly the ions pyteomics computes."""
    batch = _gen(n=60, lo=7, hi=12, min_charge=2, max_charge=2, ion_keep_prob=1.0, jitter_ppm=0.0,
                 preprocess=NO_WINDOW, **{key: 1.0 for key in COMPANIONS})
    for i in range(len(batch)):
        peptide = decode(batch.tokens[i])
        kinds = ("b", "y", *(k for kinds in COMPANIONS.values() for k in kinds))
        expected = np.concatenate([_ions(peptide, k) for k in kinds])
        expected = expected[expected >= 50.0]  # the m/z window of the preprocessing (G, A immonium ions fall out)
        peaks = _peaks(batch, i)
        assert np.abs(peaks[:, None] - expected[None, :]).min(axis=1).max() < 1e-3
        assert np.abs(expected[:, None] - peaks[None, :]).min(axis=1).max() < 1e-3
        assert len(peaks) == len(expected)


@pytest.mark.parametrize("key", list(COMPANIONS))
def test_companion_probability_is_honoured(key: str) -> None:
    batch = _gen(n=300, lo=8, hi=12, min_charge=2, max_charge=2, ion_keep_prob=1.0, jitter_ppm=0.0,
                 preprocess=NO_WINDOW, step=4, **{key: 0.3})
    shown = total = 0
    for i in range(len(batch)):
        peptide = decode(batch.tokens[i])
        peaks = _peaks(batch, i)
        by = np.concatenate([_ions(peptide, "b"), _ions(peptide, "y")])
        companions = np.concatenate([_ions(peptide, k) for k in COMPANIONS[key]])
        companions = companions[(companions >= 50.0) & (np.abs(companions[:, None] - by[None, :]).min(axis=1) > 1e-3)]
        shown += int((np.abs(companions[:, None] - peaks[None, :]).min(axis=1) < 1e-3).sum())
        total += len(companions)
    assert 0.27 < shown / total < 0.33, shown / total


def _coverage(batch: Batch, kind: str, select=None) -> tuple[int, int]:
    """(present, all) singly charged ions of a kind, optionally only those ``select(peptide, ions)`` marks."""
    present = total = 0
    for i in range(len(batch)):
        peptide = decode(batch.tokens[i])
        ions = _ions(peptide, kind)
        if select is not None:
            ions = ions[select(peptide.replace("C[Carbamidomethyl]", "C"), ions)]
        present += int((np.abs(ions[:, None] - _peaks(batch, i)[None, :]).min(axis=1) < 1e-3).sum())
        total += len(ions)
    return present, total


@pytest.mark.parametrize(("p", "ratio", "p_b", "p_y"), [(0.5, 0.5, 1 / 3, 2 / 3), (0.9, 0.5, 0.8, 1.0), (0.4, 1.0, 0.4, 0.4)])
def test_b_and_y_chances_average_ion_keep_prob(p: float, ratio: float, p_b: float, p_y: float) -> None:
    """b ions are kept b_keep_ratio times as often as y ions, the mean stays ion_keep_prob (y saturates at 1)."""
    batch = _gen(n=400, lo=7, hi=12, min_charge=2, max_charge=2, ion_keep_prob=p, b_keep_ratio=ratio,
                 jitter_ppm=0.0, preprocess=NO_WINDOW)
    for kind, want in (("b", p_b), ("y", p_y)):
        present, total = _coverage(batch, kind)
        assert abs(present / total - want) < 0.03, (kind, present / total, want)


def test_b2_and_proline_effects() -> None:
    batch = _gen(n=300, lo=7, hi=12, min_charge=2, max_charge=2, ion_keep_prob=0.2, b2_keep_prob=1.0,
                 proline_keep_prob=1.0, jitter_ppm=0.0, preprocess=NO_WINDOW)
    b2 = _coverage(batch, "b", lambda seq, ions: np.arange(len(ions)) == 1)
    assert b2[0] == b2[1] == len(batch)
    other_b = _coverage(batch, "b", lambda seq, ions: np.arange(len(ions)) != 1)
    assert other_b[0] / other_b[1] < 0.3
    # y_j is the cleavage before residue n-j: N-terminal to a proline when seq[n-j] is P
    before_p = _coverage(batch, "y", lambda seq, ions: np.array([seq[len(seq) - j] == "P" for j in range(1, len(seq))]))
    assert before_p[1] > 50 and before_p[0] == before_p[1]
    other_y = _coverage(batch, "y", lambda seq, ions: np.array([seq[len(seq) - j] != "P" for j in range(1, len(seq))]))
    assert other_y[0] / other_y[1] < 0.3


def test_precursor_error_in_ppm_with_fragments_from_the_true_mass() -> None:
    batch = _gen(n=2000, lo=7, hi=14, min_charge=2, max_charge=2, precursor_ppm=2.0, jitter_ppm=0.0, step=5)
    true = np.array([peptide_mass(decode(t)) for t in batch.tokens])
    ppm = (batch.precursor_mass.numpy() - true) / true * 1e6
    assert 1.85 < ppm.std() < 2.15 and abs(ppm.mean()) < 0.15
    for i in range(50):  # the fragments are the true peptide's, whatever the reported mass
        ions = _true_ions(decode(batch.tokens[i]), 2)
        assert np.abs(_peaks(batch, i)[:, None] - ions[None, :]).min(axis=1).max() < 1e-3


def test_no_peak_in_a_precursor_window() -> None:
    pre = PreprocessSection()
    cfg = load_config("base").data
    batch = _gen(n=300, lo=7, hi=14, noise=60, cfg=cfg)
    for i in range(len(batch)):
        peaks, mass, charge = _peaks(batch, i), float(batch.precursor_mass[i]), int(batch.charge[i])
        assert not _removed(peaks, mass, charge, pre).any()


def test_intensities_above_the_floor_and_y_above_b() -> None:
    batch = _gen(n=300, lo=7, hi=14, noise=20, cfg=load_config("base").data)
    values = batch.intensity[batch.peak_mask]
    assert float(values.min()) >= INTENSITY_FLOOR - 1e-6 and float(values.max()) == pytest.approx(1.0)
    medians = {}
    for kind in ("b", "y"):
        found = []
        for i in range(len(batch)):
            peaks = _peaks(batch, i)
            ions = _ions(decode(batch.tokens[i]), kind)
            distance = np.abs(peaks[:, None] - ions[None, :]).min(axis=1)
            found.append(batch.intensity[i][batch.peak_mask[i]].numpy()[distance < 0.01])
        medians[kind] = np.median(np.concatenate(found))
    assert medians["y"] > medians["b"] + 0.03


def test_noise_mz_follows_the_real_profile() -> None:
    clean = _gen(n=300, lo=7, hi=12, noise=0, step=6, preprocess=NO_WINDOW)
    noisy = _gen(n=300, lo=7, hi=12, noise=30, step=6, preprocess=NO_WINDOW)
    where = []
    for i in range(len(clean)):
        extra = np.setdiff1d(_peaks(noisy, i), _peaks(clean, i))
        where.append((extra - 50.0) / (float(noisy.precursor_mass[i]) - 50.0))
    where = np.concatenate(where)
    profile = np.array(NOISE_MZ_PROFILE) / sum(NOISE_MZ_PROFILE)
    observed = np.histogram(where, bins=4, range=(0, 1))[0] / len(where)
    assert np.abs(observed - profile.reshape(4, 5).sum(axis=1)).max() < 0.02, observed


@pytest.mark.parametrize(("key", "value"), [
    ("b_keep_ratio", 0.0), ("b_keep_ratio", 1.5), ("b2_keep_prob", 1.5), ("proline_keep_prob", -0.5),
    ("neutral_loss_prob", -0.1), ("a_ion_prob", 1.1), ("isotope_prob", 2), ("immonium_prob", -1),
    ("precursor_ppm", -1.0), ("precursor_ppm", 500.0),
])
def test_config_refuses_bad_generator_values(key: str, value: float) -> None:
    with pytest.raises(InputError, match=f"data.{key}"):
        load_config("tiny", {f"data.{key}": value})


# --- pack_peaks on its own ----------------------------------------------------------------------------------


def test_pack_peaks_by_hand() -> None:
    mz = torch.tensor([[300.0, 100.0, 200.0, 400.0], [10.0, 20.0, 30.0, 40.0]], dtype=torch.float64)
    intensity = torch.tensor([[0.5, 2.0, 1.0, 0.1], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    keep = torch.tensor([[True, True, True, True], [False, True, False, False]])
    out_mz, out_int, mask = pack_peaks(mz, intensity, keep, max_peaks=3)
    assert out_mz.dtype == torch.float32 and out_int.dtype == torch.float32
    assert out_mz.tolist() == [[100.0, 200.0, 300.0], [20.0, 0.0, 0.0]]
    assert out_int.tolist() == [[1.0, 0.5, 0.25], [1.0, 0.0, 0.0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_pack_peaks_with_nothing_kept_gives_an_empty_row() -> None:
    mz = torch.tensor([[100.0, 200.0]], dtype=torch.float64)
    out_mz, out_int, mask = pack_peaks(mz, torch.ones_like(mz), torch.zeros_like(mz, dtype=torch.bool), 10)
    assert mask.shape == (1, 1) and not mask.any()
    assert out_mz.tolist() == [[0.0]] and out_int.tolist() == [[0.0]]
