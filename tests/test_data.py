"""The validation data: built from data.val_* when set (one exam for every curriculum), its fingerprint, its keys."""

from __future__ import annotations

import pytest
import torch

from model.config import load_config
from model.curriculum import curriculum_from_dict
from model.data import fingerprint, validation_sets
from model.errors import InputError
from model.tokenizer import PAD, STOP

CPU = torch.device("cpu")
SMALL = {"data.val_size": 24, "model.max_peaks": 60}


def _curriculum(max_length: int, noise: int):
    return curriculum_from_dict({"name": f"c{max_length}n{noise}", "stages": [
        {"name": "a", "steps": 10, "min_length": 7, "max_length": 10},
        {"name": "b", "steps": 10, "min_length": 7, "max_length": max_length, "noise_peaks": noise},
    ]}, "c.yaml")


def _sets(curriculum, **keys):
    return validation_sets(load_config("tiny", {**SMALL, **keys}), curriculum, CPU)


def _lengths(tokens: torch.Tensor) -> torch.Tensor:
    return ((tokens != PAD) & (tokens != STOP)).sum(dim=1)


FIXED = {"data.val_min_length": 8, "data.val_max_length": 16, "data.val_noise_peaks": 3}


def test_the_val_keys_make_one_exam_for_curricula_with_different_hardest_stages() -> None:
    easy, hard = _curriculum(12, 0), _curriculum(20, 10)
    a, b = _sets(easy, **FIXED), _sets(hard, **FIXED)
    assert fingerprint(a) == fingerprint(b)
    assert all(torch.equal(x, y) for x, y in zip(a["val"].tensors(), b["val"].tensors()))
    lengths = _lengths(a["val"].tokens)
    assert lengths.min() >= 8 and lengths.max() <= 16 and lengths.max() > 12  # the keys' range, not a stage's
    # without the keys each curriculum sits its own hardest stage: different exams, and the fingerprint says so
    c, d = _sets(easy), _sets(hard)
    assert fingerprint(c) != fingerprint(d)
    assert _lengths(c["val"].tokens).max() <= 12 < _lengths(d["val"].tokens).max()
    assert fingerprint(c) == fingerprint(_sets(easy))  # and it is a pure function of the data
    assert torch.equal(a["val_easy"].tokens, c["val_easy"].tokens)  # val_easy never depends on them


@pytest.mark.parametrize("change", [{"data.val_max_length": 15}, {"data.val_noise_peaks": 4},
                                    {"data.val_seed": 1}, {"data.val_size": 25}])
def test_different_val_keys_make_a_different_fingerprint(change: dict) -> None:
    cur = _curriculum(12, 0)
    assert fingerprint(_sets(cur, **FIXED)) != fingerprint(_sets(cur, **{**FIXED, **change}))


def test_noise_and_lengths_are_set_apart() -> None:
    """val_noise_peaks alone keeps the curriculum's hardest lengths; the lengths alone keep its hardest noise."""
    cur = _curriculum(20, 10)
    both = _sets(cur, **FIXED)["val"]
    noise_only = _sets(cur, **{"data.val_noise_peaks": 3})["val"]
    lengths_only = _sets(cur, **{"data.val_min_length": 8, "data.val_max_length": 16})["val"]
    assert _lengths(noise_only.tokens).max() > 16  # up to the hardest stage's 20
    assert torch.equal(lengths_only.tokens, both.tokens)  # lengths are drawn before the noise peaks
    assert lengths_only.peak_mask.sum() > both.peak_mask.sum()  # 10 noise peaks each instead of 3


def test_the_fingerprint_covers_every_tensor() -> None:
    sets = _sets(_curriculum(12, 0), **FIXED)
    before = fingerprint(sets)
    assert len(before) == 16 and int(before, 16) >= 0
    for name in ("val", "val_easy"):
        for i in range(len(sets[name].tensors())):
            changed = dict(sets)
            tensors = [t.clone() for t in sets[name].tensors()]
            flat = tensors[i].view(-1)
            flat[0] = ~flat[0] if flat.dtype == torch.bool else flat[0] + 1
            changed[name] = type(sets[name])(*tensors)
            assert fingerprint(changed) != before, (name, i)


@pytest.mark.parametrize(("keys", "bad"), [
    ({"data.val_min_length": 7}, "data.val_min_length"),  # max left at 0
    ({"data.val_max_length": 10}, "data.val_min_length"),  # min left at 0
    ({"data.val_min_length": 12, "data.val_max_length": 10}, "data.val_min_length"),
    ({"data.val_min_length": 7, "data.val_max_length": 31}, "data.val_min_length"),
    ({"data.val_min_length": -1, "data.val_max_length": 10}, "data.val_min_length"),
    ({"data.val_noise_peaks": -2}, "data.val_noise_peaks"),
])
def test_bad_val_keys_are_rejected_by_name(keys: dict, bad: str) -> None:
    with pytest.raises(InputError) as info:
        load_config("tiny", keys)
    assert info.value.key == bad


def test_good_val_keys_load() -> None:
    cfg = load_config("tiny", {"data.val_min_length": 30, "data.val_max_length": 30, "data.val_noise_peaks": 0})
    assert (cfg.data.val_min_length, cfg.data.val_max_length, cfg.data.val_noise_peaks) == (30, 30, 0)
