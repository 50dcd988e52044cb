"""ASHA with settle windows: the bracket's rules at fixed points, then scripted trials under real Ray Tune."""

from __future__ import annotations

import sys

import pytest
import ray.cloudpickle
from ray import tune
from ray.tune.schedulers import TrialScheduler

from model import names
from search.scheduler import SettleASHA, SettleBracket, StopLog

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def test_bracket_rungs_and_cutoff():
    b = SettleBracket(min_t=10, max_t=80, reduction_factor=2, s=0, settle_steps=0)
    assert b.milestones == [10, 20, 40, 80]
    assert b.on_result("a", 10, 0.5, []) == CONTINUE  # nothing recorded yet
    assert b.on_result("b", 10, 0.7, []) == CONTINUE
    assert b.on_result("c", 10, 0.4, []) == STOP  # below the median of 0.5 and 0.7
    assert b.on_result("a", 15, 0.1, []) == CONTINUE  # between rungs: no judgement
    assert b.on_result("a", 10, 0.1, []) == CONTINUE  # a rung is judged once per trial


def test_cutoff_uses_finite_values_only():
    b = SettleBracket(min_t=10, max_t=80, reduction_factor=2, s=0, settle_steps=0)
    assert b.on_result("nan", 10, float("-inf"), []) == CONTINUE  # nothing finite yet: no cutoff
    assert b.cutoff(10) is None
    assert b.on_result("a", 10, 0.5, []) == CONTINUE
    assert b.on_result("b", 10, 0.7, []) == CONTINUE
    assert b.cutoff(10) == 0.6  # the median of 0.5 and 0.7; with -inf in the mix it would be NaN
    assert b.on_result("c", 10, 0.55, []) == STOP
    assert b.on_result("d", 10, float("-inf"), []) == STOP


def test_bracket_skips_a_rung_inside_the_settle_window_and_judges_the_next():
    b = SettleBracket(min_t=10, max_t=80, reduction_factor=2, s=0, settle_steps=10)
    for tid, value in (("a", 0.6), ("b", 0.7)):
        b.on_result(tid, 20, value, [])
        b.on_result(tid, 40, value + 0.1, [])
    # intro at 15: step 20 lies in [15, 25): the dip there is not judged, nor recorded.
    assert b.on_result("d", 20, 0.2, [15.0]) == CONTINUE
    assert "d" not in b.recorded[20] and b.skipped["d"] == [20]
    assert b.on_result("d", 30, 0.2, [15.0]) == CONTINUE  # no rung between 20 and 40
    assert b.on_result("d", 40, 0.3, [15.0]) == STOP  # past the window: judged at the next rung
    # The same dip without an intro event is judged at once.
    assert b.on_result("e", 20, 0.2, []) == STOP


def test_non_finite_metric_counts_as_worst():
    s = SettleASHA(metric=names.VAL_ACCURACY, mode="max", max_t=80, grace_period=10)
    assert s._reward({names.VAL_ACCURACY: float("nan")}) == float("-inf")
    assert s._reward({names.VAL_ACCURACY: 0.5}) == 0.5
    low = SettleASHA(metric=names.STEPS_TO_90, mode="min", max_t=80, grace_period=10)
    assert low._reward({names.STEPS_TO_90: 30.0}) == -30.0
    for missing in ({names.STEPS_TO_90: names.MISSING}, {names.STEPS_TO_90: float("nan")}, {},
                    {names.STEPS_TO_90: None}, {names.STEPS_TO_90: float("inf")}):
        assert low._reward(missing) == float("-inf"), missing
    with pytest.raises(ValueError, match="settle_steps"):
        SettleASHA(metric=names.VAL_ACCURACY, mode="max", max_t=80, grace_period=10, settle_steps=-1)


# Scripted trials: accuracy per step; "dip" has its intro at 15, dips at 20 and recovers by 40;
# "sink" dips the same way and never recovers.
CURVES = {
    "a": {10: 0.30, 20: 0.50, 40: 0.60, 60: 0.65, 80: 0.70},
    "b": {10: 0.32, 20: 0.52, 40: 0.62, 60: 0.66, 80: 0.71},
    "c": {10: 0.34, 20: 0.54, 40: 0.64, 60: 0.67, 80: 0.72},
    "dip": {10: 0.36, 20: 0.40, 40: 0.70, 60: 0.75, 80: 0.80},
    "sink": {10: 0.36, 20: 0.40, 40: 0.41, 60: 0.42, 80: 0.43},
}
INTRO = {"dip": 15.0, "sink": 15.0}


def scripted(config):
    curve = CURVES[config["curve"]]
    for step in sorted(curve):
        intro = INTRO.get(config["curve"], names.MISSING)
        tune.report({names.STEP: step, names.VAL_ACCURACY: curve[step],
                     names.SPECTRUM_INTRO_STEP: intro if step >= intro >= 0 else names.MISSING,
                     names.PRECURSOR_INTRO_STEP: names.MISSING})


def run_scripted(tmp_path, settle_steps: int) -> tuple[StopLog, dict[str, int]]:
    stop_log = StopLog()
    scheduler = SettleASHA(metric=names.VAL_ACCURACY, mode="max", max_t=80, grace_period=10, reduction_factor=2,
                           settle_steps=settle_steps, stop_log=stop_log)
    tuner = tune.Tuner(
        scripted,
        param_space={"curve": tune.grid_search(list(CURVES))},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"settle{settle_steps}", storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    last = {r.config["curve"]: r.metrics[names.STEP] for r in grid}
    ids = {r.config["curve"]: r.metrics["trial_id"] for r in grid}
    return stop_log, {curve: (stop_log.step(ids[curve]), last[curve]) for curve in CURVES}


@pytest.mark.slow
def test_settle_window_with_scripted_trials(ray_driver, tmp_path):
    _, without = run_scripted(tmp_path, settle_steps=0)
    assert without["dip"] == (20, 20)  # judged inside its dip and stopped there
    assert without["a"] == (None, 80)
    _, settled = run_scripted(tmp_path, settle_steps=10)
    assert settled["dip"] == (None, 80)  # rung 20 skipped, judged at 40 after recovering: runs to max_t
    assert settled["sink"] == (40, 40)  # rung 20 skipped, judged at 40 and stopped there


# Mode min, with trials whose metric does not exist. Trials run one at a time in this order, so each is
# judged against those before it at every rung (10, 20, 40; max_t 80).
LOSS = names.VAL_CE
LOSS_CURVES = {  # val/ce_loss per step: two good trials, then NaN, never measured (MISSING) and a high one
    "good": {10: 1.00, 20: 0.80, 40: 0.60, 60: 0.50, 80: 0.40},
    "better": {10: 0.90, 20: 0.70, 40: 0.50, 60: 0.45, 80: 0.35},
    "nan": {10: float("nan"), 20: float("nan"), 40: float("nan"), 60: float("nan"), 80: float("nan")},
    "missing": {10: names.MISSING, 20: names.MISSING, 40: names.MISSING, 60: names.MISSING, 80: names.MISSING},
    "high": {10: 2.00, 20: 1.90, 40: 1.80, 60: 1.70, 80: 1.60},
}
S90 = names.STEPS_TO_90
S90_CURVES = {  # health/steps_to_90 per step: MISSING until reached; "late" first so that "fast" beats it
    "late": {10: names.MISSING, 20: 18.0, 40: 18.0, 60: 18.0, 80: 18.0},
    "fast": {10: names.MISSING, 20: 15.0, 40: 15.0, 60: 15.0, 80: 15.0},
    "never": {10: names.MISSING, 20: names.MISSING, 40: names.MISSING, 60: names.MISSING, 80: names.MISSING},
    "nan": {10: float("nan"), 20: float("nan"), 40: float("nan"), 60: float("nan"), 80: float("nan")},
}
MIN_CASES = {"loss": (LOSS, LOSS_CURVES), "s90": (S90, S90_CURVES)}


def scripted_min(config):
    metric, curves = MIN_CASES[config["case"]]
    for step, value in sorted(curves[config["curve"]].items()):
        tune.report({names.STEP: step, metric: value, names.SPECTRUM_INTRO_STEP: names.MISSING,
                     names.PRECURSOR_INTRO_STEP: names.MISSING})


def run_min(tmp_path, case: str) -> dict[str, tuple[int | None, int]]:
    """curve -> (step ASHA stopped it at, or None; its last step)."""
    metric, curves = MIN_CASES[case]
    stop_log = StopLog()
    scheduler = SettleASHA(metric=metric, mode="min", max_t=80, grace_period=10, reduction_factor=2,
                           stop_log=stop_log)
    tuner = tune.Tuner(
        scripted_min,
        param_space={"case": case, "curve": tune.grid_search(list(curves))},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"min_{case}", storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    return {r.config["curve"]: (stop_log.step(r.metrics["trial_id"]), r.metrics[names.STEP]) for r in grid}


@pytest.mark.slow
def test_mode_min_on_a_loss_stops_nan_missing_and_high(ray_driver, tmp_path):
    outcome = run_min(tmp_path, "loss")
    assert outcome["good"] == (None, 80) and outcome["better"] == (None, 80)
    # At rung 10 the cutoff is the median of 1.0 and 0.9: NaN and MISSING count as +inf, not as -1.
    assert outcome["nan"] == (10, 10) and outcome["missing"] == (10, 10)
    # -inf rewards recorded at the rung must not make the cutoff NaN (which stops no one).
    assert outcome["high"] == (10, 10)


@pytest.mark.slow
def test_mode_min_on_steps_to_90_never_reached_is_worst(ray_driver, tmp_path):
    outcome = run_min(tmp_path, "s90")
    # Rung 10: no one has reached 90% (nothing finite): no cutoff, no stop. Rung 20: late and fast have.
    assert outcome["late"] == (None, 80) and outcome["fast"] == (None, 80)
    assert outcome["never"] == (20, 20) and outcome["nan"] == (20, 20)
