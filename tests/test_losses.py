"""The three losses (and both spectrum-loss forms) against independent references, their masking, and their
behaviour on degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pyteomics import mass as pyteomics_mass

from model.batch import Batch
from model.chem import H2O, PROTON, fragment_mz, peptide_mass
from model.config import SPECTRUM_FORMS, DataConfig, load_config
from model.errors import InputError
from model.losses import (
    coverage,
    cross_entropy,
    hard_coverage,
    precursor_loss,
    residue_mask,
    soft_masses,
    spectrum_loss,
    theoretical_ions,
)
from model.synthetic import generate, step_generator
from model.tokenizer import PAD, RESIDUES, STOP, TOKEN_ID, VOCAB_SIZE, decode, mass_table, tokenize

MASSES = mass_table(torch.float64)
TOL = 0.05


# Small tensors: one thread is faster than two fighting over a busy machine's cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(n: int = 64, lo: int = 7, hi: int = 12, noise: int = 0, step: int = 0, **data) -> Batch:
    return generate(n, lo, hi, noise, DataConfig(**data), step_generator(11, step, "cpu"))


def _one_hot_logits(tokens: torch.Tensor, scale: float = 50.0) -> torch.Tensor:
    """(B, T, V) logits whose argmax (and, in float32, whose softmax) is exactly the given tokens."""
    return F.one_hot(tokens, VOCAB_SIZE).float() * scale


def _np_ions(peptide: str, charge: int) -> np.ndarray:
    ions = fragment_mz(peptide, "b", 1) + fragment_mz(peptide, "y", 1)
    if charge >= 3:
        ions += fragment_mz(peptide, "b", 2) + fragment_mz(peptide, "y", 2)
    return np.array(ions)


def _np_hard_coverage(batch: Batch, i: int, tol: float = TOL) -> tuple[float, float]:
    """(hard coverage of the true peptide, distance from an unmatched ion to its nearest peak)."""
    ions = _np_ions(decode(batch.tokens[i]), int(batch.charge[i]))
    peaks = batch.mz[i][batch.peak_mask[i]].double().numpy()
    nearest = np.abs(ions[:, None] - peaks[None, :]).min(axis=1)
    hit = nearest <= tol
    unmatched = nearest[~hit]
    return float(hit.mean()), float(unmatched.min()) if len(unmatched) else np.inf


# --- cross-entropy ------------------------------------------------------------------------------------------


def test_cross_entropy_ignores_pad_and_counts_stop() -> None:
    torch.manual_seed(0)
    tokens = tokenize(["PEPTIDE", "ACDK", "GGGGGGGGGG"])  # (3, 11)
    logits = torch.randn(*tokens.shape, VOCAB_SIZE)
    keep = tokens != PAD
    expected = F.cross_entropy(logits[keep], tokens[keep])
    assert float(cross_entropy(logits, tokens)) == pytest.approx(float(expected), rel=1e-6)
    # anything at a PAD target changes nothing; at a STOP target it does
    changed = logits.clone()
    changed[~keep] = torch.randn_like(changed[~keep]) * 100
    assert float(cross_entropy(changed, tokens)) == pytest.approx(float(expected), rel=1e-6)
    changed[tokens == STOP] += 100 * F.one_hot(torch.tensor(PAD), VOCAB_SIZE).float()
    assert float(cross_entropy(changed, tokens)) > float(expected) + 1


def test_label_smoothing_spreads_over_the_non_pad_tokens_only() -> None:
    """Against a numpy reference of smoothed CE whose uniform part skips PAD; smoothing 0 is plain CE."""
    torch.manual_seed(5)
    tokens = tokenize(["PEPTIDE", "ACDK"])
    logits = torch.randn(*tokens.shape, VOCAB_SIZE) * 3
    logits[..., PAD] = -1e4  # as the model does
    keep = (tokens != PAD).numpy()
    logp = torch.log_softmax(logits.double(), dim=-1).numpy()[keep]  # (N, V)
    nll = -logp[np.arange(len(logp)), tokens.numpy()[keep]]
    spread = -np.delete(logp, PAD, axis=1).mean(axis=1)
    for eps in (0.01, 0.1):
        want = float(((1 - eps) * nll + eps * spread).mean())
        assert float(cross_entropy(logits, tokens, eps)) == pytest.approx(want, rel=1e-5)
    plain = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), tokens.reshape(-1), ignore_index=PAD)
    assert float(cross_entropy(logits, tokens, 0.0)) == float(plain)


def test_label_smoothing_optimum_costs_its_entropy_and_never_pulls_pad_up() -> None:
    """At the smoothed target's own log-probabilities (PAD pinned at -1e4) the loss is that target's entropy,
    about 0.085 nats at 0.01, not the ~4 nats of smoothing that puts 0.01 / V on PAD; and PAD's gradient is
    never negative (a descent step never raises it), even where PAD's logit is free."""
    eps, k = 0.01, VOCAB_SIZE - 1
    tokens = tokenize(["PEPTIDE"])
    hi, lo = 1 - eps + eps / k, eps / k
    logits = torch.full((*tokens.shape, VOCAB_SIZE), math.log(lo))
    logits.scatter_(2, tokens[..., None], math.log(hi))
    logits[..., PAD] = -1e4
    entropy = -(hi * math.log(hi) + (k - 1) * lo * math.log(lo))
    logits.requires_grad_()
    loss = cross_entropy(logits, tokens, eps)
    assert float(loss.detach()) == pytest.approx(entropy, rel=1e-4) and float(loss.detach()) < 0.1
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad.abs().max() < 1e-6  # the optimum
    torch.manual_seed(6)
    free = torch.randn(*tokens.shape, VOCAB_SIZE, requires_grad=True)  # PAD not pinned
    (grad,) = torch.autograd.grad(cross_entropy(free, tokens, 0.1), free)
    assert (grad[..., PAD] > 0).all()


# --- theoretical ions and hard coverage ---------------------------------------------------------------------


@pytest.mark.parametrize("charge", [1, 2, 3, 5])
def test_theoretical_ions_of_exact_masses_are_chem_fragments(charge: int) -> None:
    peptides = ["PEPTIDE", "HAPPYNEWYEAR", "GA", "K"]
    tokens = tokenize(peptides)
    masses = MASSES[tokens] * residue_mask(tokens)
    lengths = residue_mask(tokens).sum(dim=1)
    ions, mask = theoretical_ions(masses, lengths, torch.full((len(peptides),), charge))
    assert ions.shape == mask.shape == (len(peptides), 4 * (tokens.shape[1] - 1))
    for i, peptide in enumerate(peptides):
        got = np.sort(ions[i][mask[i]].numpy())
        want = np.sort(_np_ions(peptide, charge))
        assert got.shape == want.shape
        assert np.allclose(got, want, atol=1e-9)


@pytest.mark.parametrize(("lo", "charge", "noise"), [(2, 2, 0), (3, 3, 0), (2, 4, 5)], ids=["z2", "z3", "z2-4+noise"])
def test_hard_coverage_of_the_truth_matches_numpy(lo: int, charge: int, noise: int) -> None:
    batch = _gen(n=200, noise=noise, min_charge=lo, max_charge=charge)
    got = hard_coverage(_one_hot_logits(batch.tokens), batch, MASSES, TOL)
    want = [_np_hard_coverage(batch, i)[0] for i in range(len(batch))]
    assert np.allclose(got.numpy(), want, atol=1e-9)
    assert 0.5 < float(got.mean()) < 0.75


def test_hard_coverage_is_nan_without_ions() -> None:
    batch = _gen(n=4)
    tokens = batch.tokens.clone()
    tokens[0] = PAD  # no residues at all
    tokens[1, 1:] = PAD  # one residue: no b or y ion
    tokens[1, 1] = STOP
    batch = Batch(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mass, batch.charge, tokens)
    cov = hard_coverage(_one_hot_logits(tokens), batch, MASSES, TOL)
    assert cov[:2].isnan().all() and not cov[2:].isnan().any()


# --- spectrum loss ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "noise"), [(2, 2, 0), (3, 3, 0), (3, 3, 5), (2, 4, 3)],
                         ids=["z2", "z3", "z3+noise", "z2-4+noise"])
def test_spectrum_loss_of_the_truth_is_one_minus_hard_coverage(lo: int, hi: int, noise: int) -> None:
    """At one-hot logits of the true sequence, 1 - loss is the hard coverage (numpy, from chem.fragment_mz).

    The loss's kernel has a Gaussian shoulder beyond the tolerance, so a spectrum with a peak just outside
    the tolerance of an unmatched ion scores a little more: exact agreement is asserted on the spectra with
    no peak within 7 tolerances of an unmatched ion, and a small one-sided gap on the whole batch.
    """
    batch = _gen(n=300, noise=noise, min_charge=lo, max_charge=hi, step=lo * 10 + noise)
    logits = _one_hot_logits(batch.tokens)
    ref = [_np_hard_coverage(batch, i) for i in range(len(batch))]
    cov = np.array([c for c, _ in ref])
    clean = torch.tensor([gap > 7 * TOL for _, gap in ref])
    assert clean.float().mean() > 0.8
    sub = batch.select(clean)
    loss_clean = float(spectrum_loss(_one_hot_logits(sub.tokens), sub, MASSES, TOL))
    assert loss_clean == pytest.approx(1.0 - cov[clean.numpy()].mean(), abs=1e-4)
    loss_all = float(spectrum_loss(logits, batch, MASSES, TOL))
    assert 0.0 <= (1.0 - cov.mean()) - loss_all < 5e-3


@pytest.mark.parametrize("form", SPECTRUM_FORMS)
def test_spectrum_loss_decreases_as_logits_move_towards_the_truth(form: str) -> None:
    batch = _gen(n=64, noise=2, min_charge=2, max_charge=3)
    torch.manual_seed(0)
    noise = torch.randn(*batch.tokens.shape, VOCAB_SIZE) * 2
    truth = _one_hot_logits(batch.tokens, 1.0)
    losses = [float(spectrum_loss(noise + t * truth, batch, MASSES, TOL, form)) for t in (0, 4, 8, 16, 40)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[0] > 0.85 and losses[-1] < 0.45


@pytest.mark.parametrize(("form", "scale"), [("soft_mass", 10.0), ("expected_match", 5.0)])
def test_spectrum_loss_gradient_points_towards_the_truth(form: str, scale: float) -> None:
    """Near the truth, one gradient step on the logits lowers the loss (soft_mass: the shoulder gives a gradient;
    expected_match, linear in p, is tested less saturated: at scale 10 its softmax gradient is ~1e-4)."""
    batch = _gen(n=32, min_charge=2, max_charge=3)
    torch.manual_seed(1)
    logits = (_one_hot_logits(batch.tokens, scale) + torch.randn(*batch.tokens.shape, VOCAB_SIZE)).requires_grad_()
    loss = spectrum_loss(logits, batch, MASSES, TOL, form)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.norm()) > 0
    with torch.no_grad():
        after = spectrum_loss(logits - 0.1 * logits.grad / logits.grad.norm(), batch, MASSES, TOL, form)
    assert float(after) < float(loss.detach()) - 1e-4


@pytest.mark.parametrize("form", SPECTRUM_FORMS)
def test_pad_and_stop_positions_are_masked(form: str) -> None:
    """Logits at PAD or STOP target positions change neither auxiliary loss (the seeds' spectrum-loss bug)."""
    batch = _gen(n=64, lo=7, hi=14, noise=3, min_charge=2, max_charge=4)
    torch.manual_seed(2)
    logits = _one_hot_logits(batch.tokens, 5.0) + torch.randn(*batch.tokens.shape, VOCAB_SIZE)
    outside = ~residue_mask(batch.tokens)
    assert outside.any() and (batch.tokens == PAD).any()
    changed = logits.clone()
    changed[outside] = torch.randn_like(changed[outside]) * 50
    assert float(spectrum_loss(changed, batch, MASSES, TOL, form)) == pytest.approx(
        float(spectrum_loss(logits, batch, MASSES, TOL, form)), abs=1e-7)
    assert float(precursor_loss(changed, batch, MASSES)) == pytest.approx(
        float(precursor_loss(logits, batch, MASSES)), abs=1e-7)
    # and the masked positions get no gradient
    logits.requires_grad_()
    (spectrum_loss(logits, batch, MASSES, TOL, form) + precursor_loss(logits, batch, MASSES)).backward()
    assert logits.grad[outside].abs().max() == 0
    assert logits.grad[~outside].abs().max() > 0


def test_soft_masses_are_expected_residue_masses() -> None:
    tokens = tokenize(["GA"])  # (1, 3): G, A, STOP
    logits = torch.full((1, 3, VOCAB_SIZE), -1e4)
    g, a = MASSES[tokens[0, 0]], MASSES[tokens[0, 1]]
    logits[0, 0, tokens[0, 0]] = logits[0, 0, tokens[0, 1]] = 0.0  # position 0: half G, half A
    logits[0, 1, tokens[0, 1]] = 0.0
    soft = soft_masses(logits, tokens, MASSES)
    assert soft[0].tolist() == pytest.approx([float(g + a) / 2, float(a), 0.0])


# --- expected-match spectrum loss ---------------------------------------------------------------------------

_WRONG = torch.tensor([TOKEN_ID[r] for r in RESIDUES])


def _logits_with_true_share(tokens: torch.Tensor, p: float) -> torch.Tensor:
    """p on the true token, 1 - p spread evenly over the 18 other plain residues, at every position."""
    other = torch.zeros(*tokens.shape, VOCAB_SIZE, dtype=torch.bool)
    other[..., _WRONG] = True
    other.scatter_(2, tokens[..., None], False)
    probs = other.double() * (1 - p) / other.sum(dim=-1, keepdim=True)
    probs.scatter_(2, tokens[..., None], p)
    return probs.clamp(min=1e-30).log().float()


def _np_expected_match(logits: torch.Tensor, batch: Batch, tol: float = TOL) -> float:
    """The expected-match loss by loops: per cleavage after residue t < n - 1, sum over candidates v of
    p(v) * the share of b = prefix + m(v) + proton, y = M - prefix - m(v) + proton (and the 2+ ions) within tol."""
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    masses = MASSES.numpy()
    per_spectrum = []
    for i in range(len(batch)):
        residues = [int(t) for t in batch.tokens[i] if int(t) not in (PAD, STOP)]
        peaks = batch.mz[i][batch.peak_mask[i]].double().numpy()
        neutral = sum(masses[r] for r in residues) + H2O
        scores = []
        for t in range(len(residues) - 1):
            prefix = sum(masses[r] for r in residues[:t])
            score = 0.0
            for v in range(VOCAB_SIZE):
                if v in (PAD, STOP):
                    continue
                b, y = prefix + masses[v] + PROTON, neutral - prefix - masses[v] + PROTON
                ions = [b, y] + ([(b + PROTON) / 2, (y + PROTON) / 2] if batch.charge[i] >= 3 else [])
                hits = [len(peaks) > 0 and np.abs(peaks - ion).min() <= tol for ion in ions]
                score += probs[i, t, v] * np.mean(hits)
            scores.append(score)
        if scores:
            per_spectrum.append(1.0 - np.mean(scores))
    return float(np.mean(per_spectrum))


@pytest.mark.parametrize(("lo", "hi", "noise"), [(2, 2, 0), (3, 3, 5), (2, 4, 3)], ids=["z2", "z3+noise", "z2-4+noise"])
def test_expected_match_of_the_truth_is_one_minus_hard_coverage(lo: int, hi: int, noise: int) -> None:
    """At one-hot logits of the truth: exactly 1 - the mean hard coverage (numpy, from chem.fragment_mz)."""
    batch = _gen(n=300, noise=noise, min_charge=lo, max_charge=hi, step=lo * 10 + noise)
    cov = np.array([_np_hard_coverage(batch, i)[0] for i in range(len(batch))])
    loss = float(spectrum_loss(_one_hot_logits(batch.tokens), batch, MASSES, TOL, "expected_match"))
    assert loss == pytest.approx(1.0 - cov.mean(), abs=1e-6)


def test_expected_match_agrees_with_a_loop_reference_at_random_logits() -> None:
    batch = _gen(n=12, lo=2, hi=9, noise=4, min_charge=2, max_charge=4, step=3)
    torch.manual_seed(7)
    logits = _one_hot_logits(batch.tokens, 3.0) + torch.randn(*batch.tokens.shape, VOCAB_SIZE)
    got = float(spectrum_loss(logits, batch, MASSES, TOL, "expected_match"))
    assert got == pytest.approx(_np_expected_match(logits, batch), rel=1e-5)


def test_expected_match_rewards_the_true_residue_where_soft_mass_sees_noise() -> None:
    """As p(true) rises from 0.1 to 0.9 (the rest on wrong residues) expected_match falls linearly and far;
    soft_mass, whose expected masses stay off the truth, barely moves."""
    batch = _gen(n=256, min_charge=2, max_charge=3)
    ps = [0.1, 0.3, 0.5, 0.7, 0.9]
    soft, match = ([float(spectrum_loss(_logits_with_true_share(batch.tokens, p), batch, MASSES, TOL, form))
                    for p in ps] for form in ("soft_mass", "expected_match"))
    steps = np.diff(match)
    assert (steps < 0).all() and match[0] - match[-1] > 0.35, match
    assert np.allclose(steps, steps.mean(), atol=1e-5)  # linear in p
    assert max(soft) - min(soft) < 0.02, soft


def test_a_mass_matched_mixture_gets_no_credit_from_expected_match() -> None:
    """53% G + 47% S weighs exactly A: soft_mass gives it the truth's loss, expected_match only G's and S's."""
    batch = _gen(n=256, min_charge=2, max_charge=3, ion_keep_prob=1.0)
    g, s, a = TOKEN_ID["G"], TOKEN_ID["S"], TOKEN_ID["A"]
    w = float((MASSES[s] - MASSES[a]) / (MASSES[s] - MASSES[g]))
    truth = _one_hot_logits(batch.tokens)
    mixture = truth.clone()
    is_a = batch.tokens == a
    assert is_a.sum() > 50
    mixture[is_a] = torch.full((VOCAB_SIZE,), -1e4).index_put((torch.tensor([g, s]),), torch.tensor([w, 1 - w]).log())
    assert torch.allclose(soft_masses(mixture, batch.tokens, MASSES)[is_a], MASSES[a], atol=1e-4)

    def loss(logits: torch.Tensor, form: str) -> float:
        return float(spectrum_loss(logits, batch, MASSES, TOL, form))

    assert loss(mixture, "soft_mass") == pytest.approx(loss(truth, "soft_mass"), abs=1e-6)
    # Every true ion is generated; the few the preprocessing drops (below 50 m/z, in a precursor window) miss.
    assert loss(truth, "expected_match") == pytest.approx(_np_expected_match(truth, batch), rel=1e-5)
    assert loss(truth, "expected_match") < 0.03
    assert loss(mixture, "expected_match") == pytest.approx(_np_expected_match(mixture, batch), rel=1e-5)
    assert loss(mixture, "expected_match") > loss(truth, "expected_match") + 0.04


def test_expected_match_gives_stop_and_pad_no_credit_at_a_residue_position() -> None:
    """STOP adds no mass, so its 'ions' are the previous cleavage's, often present: they must not count."""
    batch = _gen(n=64, min_charge=2, max_charge=3, ion_keep_prob=1.0)
    for token in (STOP, PAD):
        logits = _one_hot_logits(torch.full_like(batch.tokens, token))
        assert float(spectrum_loss(logits, batch, MASSES, TOL, "expected_match")) == 1.0


def test_unknown_spectrum_form_is_refused() -> None:
    with pytest.raises(ValueError, match="soft_mass, expected_match"):
        spectrum_loss(torch.zeros(1, 2, VOCAB_SIZE), _gen(n=1), MASSES, TOL, "soft")
    assert load_config("tiny", {"loss.spectrum_form": "expected_match"}).loss.spectrum_form == "expected_match"
    with pytest.raises(InputError, match="loss.spectrum_form: must be one of soft_mass, expected_match, got 'soft'"):
        load_config("tiny", {"loss.spectrum_form": "soft"})


# --- precursor loss -----------------------------------------------------------------------------------------


def test_precursor_loss_of_the_truth_is_zero() -> None:
    batch = _gen(n=64, lo=7, hi=14, oxidation_prob=0.5)
    assert float(precursor_loss(_one_hot_logits(batch.tokens), batch, MASSES)) < 1e-10


def test_precursor_loss_is_comparable_across_lengths() -> None:
    """The same per-residue error costs the same in a 7-mer and a 14-mer (error divided by length)."""
    short = tokenize(["PEPTIDE"])
    long = tokenize(["PEPTIDEPEPTIDE"])
    results = {}
    for name, tokens in (("short", short), ("long", long)):
        n = int(residue_mask(tokens).sum())
        for per_residue in (0.3, 2.5):  # quadratic and linear regime of the Huber loss (scale 1 Da)
            true_mass = peptide_mass(decode(tokens[0]))
            batch = Batch(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.bool),
                          torch.tensor([true_mass + per_residue * n], dtype=torch.float64), torch.tensor([2]), tokens)
            results[name, per_residue] = float(precursor_loss(_one_hot_logits(tokens), batch, MASSES))
    for per_residue, huber in ((0.3, 0.5 * 0.3**2), (2.5, 2.5 - 0.5)):
        assert results["short", per_residue] == pytest.approx(huber, rel=1e-6)
        assert results["long", per_residue] == pytest.approx(huber, rel=1e-6)


def test_precursor_loss_scale_and_sign() -> None:
    """Against the Huber loss by hand of (residues + water - precursor) / length, masses from pyteomics."""
    tokens = tokenize(["PEPTIDE"])
    m = pyteomics_mass.fast_mass("PEPTIDE")  # neutral: residues + H2O
    logits = _one_hot_logits(tokens)

    def loss(offset: float, scale: float = 1.0) -> float:
        batch = Batch(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.bool),
                      torch.tensor([m + offset], dtype=torch.float64), torch.tensor([2]), tokens)
        return float(precursor_loss(logits, batch, MASSES, scale))

    assert loss(0.0) < 1e-10
    assert loss(7 * 0.4) == pytest.approx(loss(-7 * 0.4)) == pytest.approx(0.5 * 0.4**2, rel=1e-6)
    assert loss(7 * 3.0) == pytest.approx(3.0 - 0.5, rel=1e-6)
    assert loss(7 * 2.0, scale=2.0) == pytest.approx(0.5)  # error / scale = 1: the Huber knee
    assert loss(7 * 3.0, scale=2.0) == pytest.approx(1.5 - 0.5, rel=1e-6)


# --- degenerate input: finite losses and gradients ----------------------------------------------------------


def _degenerate_batches() -> dict[str, Batch]:
    real = _gen(n=6, lo=7, hi=10, noise=2, min_charge=2, max_charge=4)
    n, p = len(real), real.mz.shape[1]
    no_peaks = torch.zeros(n, p, dtype=torch.bool)
    all_pad = torch.full_like(real.tokens, PAD)
    mixed_tokens = real.tokens.clone()
    mixed_tokens[::2] = PAD
    mixed_mask = real.peak_mask.clone()
    mixed_mask[1::3] = False
    mixed_int = real.intensity.clone()
    mixed_int[2::3] = 0.0
    return {
        "zero_width_spectra": Batch(torch.zeros(n, 0), torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.bool),
                                    real.precursor_mass, real.charge, real.tokens),
        "all_masked_peaks": Batch(real.mz, real.intensity, no_peaks, real.precursor_mass, real.charge, real.tokens),
        "all_pad_tokens": Batch(real.mz, real.intensity, real.peak_mask, real.precursor_mass, real.charge, all_pad),
        "zero_intensity": Batch(real.mz, torch.zeros_like(real.intensity), real.peak_mask, real.precursor_mass,
                                real.charge, real.tokens),
        "empty_and_all_pad": Batch(real.mz, real.intensity, no_peaks, real.precursor_mass, real.charge, all_pad),
        "mixed": Batch(real.mz, mixed_int, mixed_mask, real.precursor_mass, real.charge, mixed_tokens),
    }


@pytest.mark.parametrize("case", list(_degenerate_batches()))
def test_losses_finite_with_finite_gradients(case: str) -> None:
    batch = _degenerate_batches()[case]
    torch.manual_seed(3)
    logits = torch.randn(*batch.tokens.shape, VOCAB_SIZE, requires_grad=True)
    parts = {
        "ce": cross_entropy(logits, batch.tokens),
        "ce_smoothed": cross_entropy(logits, batch.tokens, 0.1),
        "spectrum": spectrum_loss(logits, batch, MASSES, TOL),
        "expected_match": spectrum_loss(logits, batch, MASSES, TOL, "expected_match"),
        "precursor": precursor_loss(logits, batch, MASSES),
    }
    for name, value in parts.items():
        assert value.dim() == 0 and torch.isfinite(value), (name, value)
        assert value.dtype == torch.float32, name
        (grad,) = torch.autograd.grad(value, logits, retain_graph=True)
        assert torch.isfinite(grad).all(), name
    values = {name: float(value.detach()) for name, value in parts.items()}
    if (batch.tokens == PAD).all():
        assert values["ce"] == values["spectrum"] == values["expected_match"] == values["precursor"] == 0.0
    elif case in ("zero_width_spectra", "all_masked_peaks"):
        assert values["spectrum"] == pytest.approx(1.0)  # nothing observed: nothing covered
        assert values["expected_match"] == 1.0


def test_coverage_with_no_peaks_is_zero_not_nan() -> None:
    batch = _degenerate_batches()["zero_width_spectra"]
    tokens = batch.tokens
    ions, mask = theoretical_ions(MASSES[tokens] * residue_mask(tokens), residue_mask(tokens).sum(dim=1), batch.charge)
    for hard in (False, True):
        cov, has = coverage(ions, mask, batch, TOL, hard=hard)
        assert has.all() and (cov == 0).all()


@pytest.mark.parametrize("form", SPECTRUM_FORMS)
def test_the_all_pad_rows_of_a_mixed_batch_do_not_dilute_the_losses(form: str) -> None:
    """Rows without residues are left out of the spectrum and precursor means, not counted as zero."""
    batches = _degenerate_batches()
    mixed = batches["mixed"]
    torch.manual_seed(4)
    logits = torch.randn(*mixed.tokens.shape, VOCAB_SIZE)
    has = residue_mask(mixed.tokens).any(dim=1)
    sub = mixed.select(has)
    assert float(spectrum_loss(logits, mixed, MASSES, TOL, form)) == pytest.approx(
        float(spectrum_loss(logits[has], sub, MASSES, TOL, form)), rel=1e-6)
    assert float(precursor_loss(logits, mixed, MASSES)) == pytest.approx(
        float(precursor_loss(logits[has], sub, MASSES)), rel=1e-6)
