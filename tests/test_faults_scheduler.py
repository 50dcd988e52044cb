"""The scheduler's state on disk (``scheduler-state.json``) under real Ray Tune with scripted trials: every
STOP request finds its stop already recorded there (a driver killed between the two leaves no stop
unexplained), and the file holds the rungs as the scheduler holds them (what ``--resume`` reads back)."""

from __future__ import annotations

import json
import sys

import ray.cloudpickle
from ray import tune

from model import names
from search.scheduler import STATE_FILE, SettleASHA, StopLog, write_stop_file

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

CURVES = {"a": (0.30, 0.50, 0.60, 0.70), "b": (0.32, 0.52, 0.62, 0.72), "low": (0.10, 0.20, 0.30, 0.40),
          "late": (0.35, 0.40, 0.50, 0.60)}


def scripted(config):
    for i, value in enumerate(CURVES[config["curve"]]):
        tune.report({names.STEP: 10 * (i + 1), names.VAL_ACCURACY: value, names.SPECTRUM_INTRO_STEP: names.MISSING,
                     names.PRECURSOR_INTRO_STEP: names.MISSING})


def test_a_stop_is_on_disk_before_its_stop_file_and_the_rungs_are_saved(ray_driver, tmp_path):
    exp = tmp_path / "persist"
    seen = []

    def request_stop(trial, step: int) -> bool:  # runs in the driver, where the scheduler writes its state
        state = json.loads((exp / STATE_FILE).read_text())
        seen.append((trial.config["curve"], step, state["stopped"].get(trial.trial_id)))
        return write_stop_file(trial, step)

    scheduler = SettleASHA(metric=names.VAL_ACCURACY, mode="max", max_t=40, grace_period=10, reduction_factor=2,
                           stop_log=StopLog(), stop_at_max_t=False, request_stop=request_stop, persist=True)
    tuner = tune.Tuner(scripted, param_space={"curve": tune.grid_search(list(CURVES))},
                       tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                       run_config=tune.RunConfig(name="persist", storage_path=str(tmp_path), verbose=0))
    tuner.fit()
    # "low" is stopped at rung 10, "late" at rung 20; each request saw its own stop on disk already.
    assert seen == [("low", 10, 10), ("late", 20, 20)]
    state = json.loads((exp / STATE_FILE).read_text())
    assert state["num_stopped"] == 2 and sorted(state["stopped"].values()) == [10, 20]
    (bracket,) = state["brackets"]
    assert bracket == json.loads(json.dumps(scheduler._brackets[0].state()))  # what the scheduler holds
    recorded = {milestone: sorted(values.values()) for milestone, values in bracket["recorded"]}
    assert recorded[10.0] == [0.10, 0.30, 0.32, 0.35]
