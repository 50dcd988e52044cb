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
