"""Replicate statistics: means and t-based CIs, Welch's test in words, binning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search.report import stats


def test_mean_ci_matches_the_t_interval():
    x = [0.80, 0.83, 0.81, 0.86]
    mean, std, low, high = stats.mean_ci(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (mean, std) == pytest.approx((np.mean(x), np.std(x, ddof=1)))
    assert (low, high) == pytest.approx((lo, hi))
    assert high - low == pytest.approx(2 * 3.182446305284263 * std / 2)  # t(0.975, 3) * s / sqrt(4), twice


def test_mean_ci_one_value_and_nans():
    mean, std, low, high = stats.mean_ci([0.7, float("nan")])
    assert mean == 0.7 and all(math.isnan(v) for v in (std, low, high))
    assert all(math.isnan(v) for v in stats.mean_ci([]))
    with pytest.raises(ValueError, match="confidence must be in"):
        stats.mean_ci([1, 2], confidence=95)


def test_group_summary_orders_by_mean_and_counts_finite_values():
    frame = pd.DataFrame({"label": ["a", "a", "b", "b", "b", "c"],
                          "acc": [0.5, 0.6, 0.7, 0.8, float("nan"), float("nan")]})
    out = stats.group_summary(frame, "acc")
    assert list(out["group"]) == ["b", "a", "c"]
    assert list(out["n"]) == [2, 2, 0]
    assert out["mean"].iloc[0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="'missing' not in frame"):
        stats.group_summary(frame, "missing")


def test_welch_significant_sentence():
    best, other = [0.84, 0.85, 0.86], [0.80, 0.81, 0.82]
    c = stats.welch(best, other, "revised", "original")
    expected = sps.ttest_ind(best, other, equal_var=False).pvalue
    assert c.p_value == pytest.approx(expected) and c.significant
    assert c.difference == pytest.approx(4.0)
    assert c.sentence() == f"revised beats original by 4.0 points, {stats.format_p(expected)}, 3 seeds each."


def test_welch_not_significant_and_unequal_sizes():
    c = stats.welch([0.80, 0.86, 0.83, 0.81], [0.79, 0.85], "a", "b")
    assert not c.significant and c.p_value >= 0.05
    assert c.sentence().endswith("4 and 2 seeds: not significant at the 5% level.")


def test_welch_one_seed_and_no_spread_give_no_test():
    c = stats.welch([0.8, 0.82], [0.7], "revised", "current")
    assert not c.tested and math.isnan(c.p_value)
    assert c.sentence() == ("revised beats current by 11.0 points, 2 and 1 seeds: no test (current has 1 seed; "
                            "a test needs at least 2 seeds per curriculum).")
    flat = stats.welch([0.8, 0.8], [0.7, 0.7], "a", "b")
    assert not flat.tested and "no spread" in flat.sentence()


def test_compare_groups_best_against_each_other():
    frame = pd.DataFrame({"label": ["x", "x", "y", "y", "z"], "acc": [0.6, 0.62, 0.7, 0.71, float("nan")]})
    found = stats.compare_groups(frame, "acc")
    assert [(c.best, c.other) for c in found] == [("y", "x")]  # z has no value: nothing to compare
    assert stats.compare_groups(frame[frame.label == "x"], "acc") == []


def test_format_p():
    assert stats.format_p(0.0004) == "p < 0.001"
    assert stats.format_p(0.0213) == "p = 0.021"
    assert stats.format_p(0.4149) == "p = 0.41"
    assert stats.format_p(float("nan")) == "p = n/a"


def test_binned_means_edges_and_last_bin_closed():
    out = stats.binned_means([0.05, 0.15, 0.18, 1.0, float("nan")], [1, 2, 4, 9, 5], [0, 0.1, 0.2, 1.0])
    assert list(out["n"]) == [1, 2, 1]
    assert out["mean"].tolist() == [1, 3, 9]
    with pytest.raises(ValueError, match="increasing"):
        stats.binned_means([1], [1], [0.5, 0.2])


def test_group_summary_clips_the_interval_to_bounds():
    frame = pd.DataFrame({"label": ["a", "a", "b"], "acc": [0.5, 0.99, 0.7]})
    raw = stats.group_summary(frame, "acc").set_index("group")
    clipped = stats.group_summary(frame, "acc", bounds=(0.0, 1.0)).set_index("group")
    assert raw.loc["a", "ci_high"] > 1 and raw.loc["a", "ci_low"] < 0
    assert (clipped.loc["a", "ci_low"], clipped.loc["a", "ci_high"]) == (0.0, 1.0)
    assert math.isnan(clipped.loc["b", "ci_low"])  # one value: no interval, clipped or not
