"""Spec2Pep: shapes, causality, PAD handling, the peak lookup against brute force, and the ion evidence."""

from __future__ import annotations

import pytest
import torch

from model.batch import Batch
from model.chem import H2O
from model.config import DataConfig, ModelConfig
from model.network import N_ION_FEATURES, IonEvidence, MassEncoding, Spec2Pep, peak_lookup
from model.synthetic import generate, step_generator
from model.tokenizer import PAD, STOP, VOCAB_SIZE

SMALL = ModelConfig(dim=32, n_head=4, dim_feedforward=64, encoder_layers=1, decoder_layers=1)


def _gen(n: int = 8, lo: int = 7, hi: int = 10, noise: int = 2, step: int = 0, **data) -> Batch:
    return generate(n, lo, hi, noise, DataConfig(**data), step_generator(5, step, "cpu"))


# Small tensors: one thread is faster than two fighting over a busy machine's cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def spec2pep() -> Spec2Pep:
    torch.manual_seed(0)
    return Spec2Pep(SMALL).eval()


# --- shapes and masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ion_features", [True, False])
def test_output_shapes(ion_features: bool) -> None:
    torch.manual_seed(0)
    net = Spec2Pep(ModelConfig(**{**SMALL.__dict__, "ion_features": ion_features}))
    batch = _gen(n=5, lo=7, hi=12, noise=3)
    prefix = batch.tokens[:, :-1]  # (B, L)
    memory, pad = net.encode(batch)
    assert memory.shape == (5, batch.mz.shape[1] + 1, SMALL.dim)
    assert pad.shape == (5, batch.mz.shape[1] + 1) and not pad[:, 0].any()
    assert torch.equal(pad[:, 1:], ~batch.peak_mask)
    logits = net(batch, prefix)
    assert logits.shape == (5, prefix.shape[1] + 1, VOCAB_SIZE) == (*batch.tokens.shape, VOCAB_SIZE)
    assert torch.isfinite(logits).all()
    # the first decoding step has no tokens yet; it reads the precursor only, and agrees with position 0
    first = net(batch, prefix[:, :0])
    assert first.shape == (5, 1, VOCAB_SIZE)
    assert torch.allclose(first[:, 0], logits[:, 0], atol=1e-5)


def test_pad_is_never_the_argmax(spec2pep: Spec2Pep) -> None:
    batch = _gen(n=16, lo=7, hi=14)
    with torch.no_grad():
        spec2pep.head.bias[PAD] += 1e3  # even a head that loves PAD cannot predict it
        try:
            logits = spec2pep(batch, batch.tokens[:, :-1])
        finally:
            spec2pep.head.bias[PAD] -= 1e3
    assert (logits.argmax(dim=-1) != PAD).all()
    assert (logits[..., PAD] < logits.amax(dim=-1) - 100).all()


def test_decoder_is_causal(spec2pep: Spec2Pep) -> None:
    """Changing the prefix token at position j changes no logit at positions <= j."""
    batch = _gen(n=4, lo=10, hi=10)
    prefix = batch.tokens[:, :-1].clone()
    with torch.no_grad():
        base = spec2pep(batch, prefix)
        for j in (0, 4, 9):
            changed = prefix.clone()
            changed[:, j] = STOP if int(changed[0, j]) != STOP else 3
            out = spec2pep(batch, changed)
            assert torch.allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-5), j
            assert not torch.allclose(out[:, j + 1 :], base[:, j + 1 :], atol=1e-5), j


def test_padding_peaks_change_nothing(spec2pep: Spec2Pep) -> None:
    """Extra padding columns (mask False) with arbitrary m/z and intensity leave every logit as it was."""
    batch = _gen(n=6, lo=7, hi=12, noise=2)
    extra = 7
    padded = Batch(
        torch.cat([batch.mz, torch.rand(6, extra) * 1000], dim=1),
        torch.cat([batch.intensity, torch.rand(6, extra)], dim=1),
        torch.cat([batch.peak_mask, torch.zeros(6, extra, dtype=torch.bool)], dim=1),
        batch.precursor_mass, batch.charge, batch.tokens,
    )
    with torch.no_grad():
        a = spec2pep(batch, batch.tokens[:, :-1])
        b = spec2pep(padded, padded.tokens[:, :-1])
    assert torch.allclose(a, b, atol=1e-4)


def test_the_spectrum_matters(spec2pep: Spec2Pep) -> None:
    batch = _gen(n=4)
    other = _gen(n=4, step=1)
    swapped = Batch(other.mz, other.intensity, other.peak_mask, batch.precursor_mass, batch.charge, batch.tokens)
    with torch.no_grad():
        assert not torch.allclose(spec2pep(batch, batch.tokens[:, :-1]), spec2pep(swapped, batch.tokens[:, :-1]), atol=1e-3)


def test_finite_outputs_and_gradients_for_empty_spectra_and_pad_rows() -> None:
    torch.manual_seed(0)
    net = Spec2Pep(SMALL)
    batch = _gen(n=6)
    mask = batch.peak_mask.clone()
    mask[:3] = False  # three spectra without a single peak
    tokens = batch.tokens.clone()
    tokens[::2] = PAD  # and three unannotated rows
    odd = Batch(batch.mz, batch.intensity * (torch.arange(6) % 3 != 1)[:, None], mask, batch.precursor_mass,
                batch.charge, tokens)
    logits = net(odd, odd.tokens[:, :-1])
    assert torch.isfinite(logits).all()
    logits[..., 1:].sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_prefix_masses_are_cumulative_token_masses(spec2pep: Spec2Pep) -> None:
    batch = _gen(n=3)
    prefix = batch.tokens[:, :-1]
    pm = spec2pep.prefix_masses(prefix)
    assert pm.shape == (3, prefix.shape[1] + 1) and pm.dtype == torch.float64
    assert (pm[:, 0] == 0).all()
    # after all the residues: the neutral precursor mass less water
    assert torch.allclose(pm[:, -1] + H2O, batch.precursor_mass, atol=1e-9)


def test_mass_encoding_resolves_small_differences() -> None:
    """K and Q differ by 0.036 Da: the m/z features must tell them apart at m/z ~1000."""
    enc = MassEncoding(128)
    k, q = enc(torch.tensor([1000.0 + 128.094963], dtype=torch.float64)), enc(
        torch.tensor([1000.0 + 128.058578], dtype=torch.float64))
    assert enc(torch.tensor([5.0])).shape == (1, 128)
    assert (k - q).abs().max() > 0.1


# --- peak_lookup against brute force ------------------------------------------------------------------------


def _brute_force(query: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor, sigma: float):
    dist = query[:, :, None].double() - mz[:, None, :].double()  # (B, Q, P)
    match = torch.exp(-0.5 * (dist / sigma) ** 2)
    match = torch.where(torch.isfinite(mz)[:, None, :], match, torch.zeros_like(match))
    return match.amax(dim=2), (match * intensity[:, None, :].double()).amax(dim=2)


def _sorted_peaks(n_rows: int, n_peaks: int, n_pad: int, spacing: float, gen: torch.Generator):
    """Sorted peaks at least ``spacing`` apart, +inf padding at the end of each row."""
    gaps = spacing + torch.rand(n_rows, n_peaks, generator=gen) * 3.0
    mz = 100.0 + gaps.cumsum(dim=1)
    mz = torch.cat([mz, torch.full((n_rows, n_pad), float("inf"))], dim=1).float()
    intensity = torch.cat([torch.rand(n_rows, n_peaks, generator=gen), torch.zeros(n_rows, n_pad)], dim=1)
    return mz, intensity


def test_peak_lookup_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    sigma = 0.02
    mz, intensity = _sorted_peaks(4, 30, 5, spacing=10 * sigma, gen=gen)
    finite = mz[torch.isfinite(mz)].reshape(4, 30)
    near = finite[:, torch.randint(0, 30, (40,), generator=gen)] + torch.randn(4, 40, generator=gen) * 2 * sigma
    far = 50.0 + torch.rand(4, 40, generator=gen) * 200  # below, between and above the peaks
    exact = finite[:, :5]
    query = torch.cat([near, far, exact], dim=1)
    match, match_int = peak_lookup(query, mz, intensity, sigma)
    ref_match, ref_int = _brute_force(query, mz, intensity, sigma)
    assert match.shape == match_int.shape == query.shape
    assert torch.allclose(match.double(), ref_match, atol=1e-4)
    assert torch.allclose(match_int.double(), ref_int, atol=1e-4)
    assert torch.allclose(match[:, -5:], torch.ones(4, 5))  # a query on a peak matches fully
    assert (match[:, 40:80] <= 1).all() and (match >= 0).all()
    assert ref_match[:, :40].mean() > 0.3  # the near queries did hit


def test_peak_lookup_nearest_peak_wins_for_crowded_peaks() -> None:
    gen = torch.Generator().manual_seed(1)
    mz, intensity = _sorted_peaks(3, 200, 0, spacing=0.001, gen=gen)
    query = mz[:, torch.randint(0, 200, (100,), generator=gen)] + torch.randn(3, 100, generator=gen) * 0.03
    match, _ = peak_lookup(query, mz, intensity, 0.02)
    assert torch.allclose(match.double(), _brute_force(query, mz, intensity, 0.02)[0], atol=1e-4)


def test_peak_lookup_on_a_row_without_peaks_is_zero() -> None:
    mz = torch.tensor([[100.0, 200.0], [float("inf"), float("inf")]])
    intensity = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    match, match_int = peak_lookup(torch.tensor([[100.0, 200.0], [100.0, 200.0]]), mz, intensity, 0.02)
    assert match.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert match_int.tolist() == [[1.0, 0.5], [0.0, 0.0]]


# --- the ion evidence lights up for the true next residue ---------------------------------------------------


def test_ion_evidence_favours_the_true_next_residue(spec2pep: Spec2Pep) -> None:
    batch = _gen(n=64, lo=7, hi=12, noise=0, min_charge=2, max_charge=2)
    head = IonEvidence(SMALL.dim, 0.02)
    prefix = batch.tokens[:, :-1]
    mz_sorted = torch.where(batch.peak_mask, batch.mz, torch.full_like(batch.mz, float("inf")))
    feats = head.evidence(spec2pep.prefix_masses(prefix), batch, mz_sorted)  # (B, T, V, 14)
    bsz, steps, vocab, n_feat = feats.shape
    assert (bsz, steps, vocab) == (64, prefix.shape[1] + 1, VOCAB_SIZE) and n_feat <= N_ION_FEATURES
    assert torch.isfinite(feats).all()

    target = batch.tokens  # the true next token at each position
    lengths = ((target != PAD) & (target != STOP)).sum(dim=1)
    pos = torch.arange(steps)[None, :]
    # positions whose true next residue is not the last one: its b and y ions exist in the spectrum's world
    inner = pos < (lengths[:, None] - 1)
    true_feat = feats.gather(2, target[:, :, None, None].expand(-1, -1, 1, n_feat)).squeeze(2)  # (B, T, F)
    is_true = torch.nn.functional.one_hot(target, VOCAB_SIZE).bool()
    residue = torch.ones(VOCAB_SIZE, dtype=torch.bool)
    residue[[PAD, STOP]] = False
    other = (~is_true) & residue & inner[:, :, None]
    for f in (0, 1):  # b and y ion match, charge 1
        true_mean = float(true_feat[..., f][inner].mean())
        other_mean = float(feats[..., f][other].mean())
        assert 0.5 < true_mean < 0.75, (f, true_mean)  # about ion_keep_prob
        assert other_mean < 0.1, (f, other_mean)
    # the charge-2 ions of a charge-2 precursor are never in the spectrum
    assert float(true_feat[..., 2][inner].mean()) < 0.1
    # at the last residue the remaining mass is exactly used up for the true residue only
    last = pos == (lengths[:, None] - 1)
    done_true = true_feat[..., 10][last]
    done_other = feats[..., 10][other.new_zeros(other.shape) | ((~is_true) & residue & last[:, :, None])]
    assert float(done_true.min()) > 0.99
    assert float(done_other.mean()) < 0.05
