"""The searcher stack with scripted trials under real Ray Tune and a real Optuna study: named curricula
first, replicates told as one Optuna trial, ASHA stops and divergence told PRUNED, trials.json agrees."""

from __future__ import annotations

import glob
import json
import math
import pickle
import sys

import optuna
import pytest
import ray.cloudpickle
import yaml
from ray import tune

from model import names
from search.layout import TRIALS_JSON
from search.run import build_tuner
from search.space import load_space
from search.trials import DIVERGED_KEY

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/

SPACE = {
    "name": "scripted",
    "trainer": {"preset": "tiny", "overrides": {"optim.max_steps": 40, "optim.warmup_steps": 4,
                                                "train.eval_interval": 10}},
    "curriculum": {"stages": [{"name": "a", "steps": 40, "min_length": 7, "max_length": 10}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1}},
    "search": {"spectrum.intro_step": {"dist": "qrandint", "low": 5, "high": 35, "q": 5}},
    "named": {"curricula": ["original", "revised"], "scale": 0.0004},
    "searcher": {"algorithm": "tpe", "seed": 7, "num_samples": 4, "startup_trials": 4, "max_concurrent": 2},
    "seeds": [0, 1],
    "scheduler": {"type": "asha", "max_t": 40, "grace_period": 10, "reduction_factor": 2},
    "wandb": {"mode": "disabled"},
}
# Searched configurations get ids 2..5 (after the two named ones): 3 diverges, 4 is hopeless, 2 and 5
# beat the named curricula, so ASHA keeps them.
DIVERGES, HOPELESS = 3, 4
QUALITY = {0: 0.6, 1: 0.65, 2: 0.95, 3: 0.9, 4: 0.05, 5: 0.97}


def scripted(config):
    """Accuracy rises with the step to the configuration's quality; the seed adds 0.02."""
    cid, seed = config["config_id"], config["seed"]
    for step in (10, 20, 30, 40):
        row = {names.STEP: step, names.VAL_RESIDUE_ACCURACY: QUALITY[cid] * step / 40 + 0.02 * seed,
               names.SPECTRUM_INTRO_STEP: names.MISSING, names.PRECURSOR_INTRO_STEP: names.MISSING,
               names.NAN_COUNT: 0.0, DIVERGED_KEY: 0.0}
        if cid == DIVERGES and step == 20:
            tune.report({**row, names.NAN_COUNT: 3.0, DIVERGED_KEY: 1.0})
            return
        tune.report(row)


@pytest.mark.slow
def test_named_first_replicates_and_pruned_states(ray_driver, tmp_path):
    path = tmp_path / "scripted.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    space = load_space(path)
    exp_dir = tmp_path / "results" / "scripted"
    tuner = build_tuner(space, "scripted", str(tmp_path / "results"), exp_dir, trainable=scripted, live_interval=5)
    tuner.fit()

    trials = json.loads((exp_dir / TRIALS_JSON).read_text())
    assert len(trials) == space.num_trials == 12
    configs = {}
    for tid, entry in trials.items():
        params = json.loads((exp_dir / entry["trial_dir"] / "params.json").read_text())
        for key in ("label", "family", "curriculum", "params", "seed", "replicate"):
            assert key in params
        configs[tid] = params
    # The named curricula come first, each with both seeds (trials.json lists trials as Tune created them).
    created = list(trials)
    assert [configs[t]["family"] for t in created[:4]] == ["original"] * 2 + ["revised"] * 2
    assert [configs[t]["seed"] for t in created[:4]] == [0, 1, 0, 1]
    status = {(configs[t]["config_id"], configs[t]["seed"]): trials[t]["status"] for t in trials}
    assert status[(DIVERGES, 0)] == status[(DIVERGES, 1)] == "diverged"
    assert status[(HOPELESS, 0)] == status[(HOPELESS, 1)] == "stopped"
    assert all(trials[t]["stopped_at_step"] in (10, 20, 30) for t in trials if trials[t]["status"] == "stopped")

    state_file = sorted(glob.glob(str(exp_dir / "searcher-state-*.pkl")))[-1]
    with open(state_file, "rb") as f:
        state = pickle.load(f)
    study: optuna.Study = pickle.loads(state["inner"])["_ot_study"]
    assert len(study.trials) == space.searcher.num_samples == 4  # one Optuna trial per configuration
    states = [t.state for t in study.trials]
    assert states[DIVERGES - 2] == optuna.trial.TrialState.PRUNED
    assert states[HOPELESS - 2] == optuna.trial.TrialState.PRUNED
    for cid in (2, 5):
        assert status[(cid, 0)] == status[(cid, 1)] == "completed"
        ot = study.trials[cid - 2]
        assert ot.state == optuna.trial.TrialState.COMPLETE
        assert ot.value == pytest.approx(QUALITY[cid] + 0.01)  # the mean over the two seeds at max_t
    hopeless = study.trials[HOPELESS - 2]
    assert hopeless.value is not None and max(hopeless.intermediate_values) in (10, 20, 30)
    # Every trial that trials.json calls stopped is in the scheduler's log, and no other.
    assert set(state["stop_log"]) == {t for t in trials if trials[t]["status"] == "stopped"}


# Missing means worst, told straight to the searcher stack (no Ray run needed): mode min on steps to 90%.
MIN_SPACE = {
    "name": "missing",
    "metric": names.STEPS_TO_90,
    "mode": "min",
    "trainer": {"preset": "tiny", "overrides": {"optim.max_steps": 40, "optim.warmup_steps": 4,
                                                "train.eval_interval": 10}},
    "curriculum": {"stages": [{"name": "a", "steps": 40, "min_length": 7, "max_length": 10}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1}},
    "search": {"spectrum.intro_step": {"dist": "qrandint", "low": 5, "high": 35, "q": 5}},
    "searcher": {"algorithm": "tpe", "seed": 1, "num_samples": 4, "startup_trials": 4, "max_concurrent": 8},
    "seeds": [0, 1],
    "scheduler": {"type": "fifo"},
    "wandb": {"mode": "disabled"},
}
NAN = float("nan")
# config id -> steps to 90% of its two seeds at the end (MISSING: never reached); config 3 is stopped early.
FINAL_S90 = {0: (30.0, 40.0), 1: (names.MISSING, 20.0), 2: (NAN, NAN), 3: (25.0, 25.0)}


def test_missing_metric_is_told_worst_never_best(tmp_path):
    from search.optuna_glue import build_searcher
    from search.scheduler import StopLog

    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(MIN_SPACE))
    stop_log = StopLog()
    limiter = build_searcher(load_space(path), "missing", stop_log)
    trials = {}
    for i in range(8):
        config = limiter.suggest(f"t{i}")
        trials[f"t{i}"] = (config["config_id"], config["replicate"])
    assert sorted(trials.values()) == [(c, r) for c in range(4) for r in range(2)]
    for tid, (cid, rep) in trials.items():
        # Intermediate rows: not reached yet (MISSING) at step 10, then the final value at step 40.
        limiter.on_trial_result(tid, {names.STEP: 10, names.STEPS_TO_90: names.MISSING})
        if cid == 3:
            stop_log.record(tid, 20)
            limiter.on_trial_complete(tid, {names.STEP: 20, names.STEPS_TO_90: names.MISSING})
            continue
        limiter.on_trial_result(tid, {names.STEP: 40, names.STEPS_TO_90: FINAL_S90[cid][rep]})
        limiter.on_trial_complete(tid, {names.STEP: 40, names.STEPS_TO_90: FINAL_S90[cid][rep]})
    study = limiter.searcher.inner.study
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    by_config = sorted(study.trials, key=lambda t: t.number)
    assert by_config[0].state == optuna.trial.TrialState.COMPLETE and by_config[0].value == 35.0
    for never in (1, 2):  # one seed never reached 90%; both NaN: the worst value, not the mean with -1
        assert by_config[never].state == optuna.trial.TrialState.COMPLETE
        assert by_config[never].value == math.inf
    assert by_config[3].state == optuna.trial.TrialState.PRUNED
    for ot in by_config:  # a missing value is never an intermediate value
        assert names.MISSING not in ot.intermediate_values.values()
        assert all(math.isfinite(v) for v in ot.intermediate_values.values())
    assert by_config[3].intermediate_values == {}
    assert by_config[0].intermediate_values == {40: 35.0}  # the mean over both seeds, step by step


# Replicates: the seed that ASHA stops need not be the first. Config 0's seed 0 runs to 40 and improves;
# seed 1 is stopped at step 20. Optuna must learn the configuration's value where it was stopped (the mean
# over both seeds at step 20), not seed 0's later, better value.
REPLICATE_CURVES = {0: {10: 0.30, 20: 0.50, 30: 0.80, 40: 0.90}, 1: {10: 0.20, 20: 0.30}}


def test_a_stopped_replicate_other_than_the_first_prunes_at_its_own_step(tmp_path):
    from search.optuna_glue import build_searcher
    from search.scheduler import StopLog

    space = {**MIN_SPACE, "metric": names.VAL_RESIDUE_ACCURACY, "mode": "max",
             "searcher": {**MIN_SPACE["searcher"], "num_samples": 1}}
    path = tmp_path / "replicates.yaml"
    path.write_text(yaml.safe_dump(space))
    stop_log = StopLog()
    limiter = build_searcher(load_space(path), "replicates", stop_log)
    ids = {}
    for i in range(2):
        config = limiter.suggest(f"t{i}")
        ids[config["replicate"]] = f"t{i}"
    for replicate in (1, 0):  # seed 1 stops first; seed 0 finishes later
        tid, curve = ids[replicate], REPLICATE_CURVES[replicate]
        for step, value in curve.items():
            limiter.on_trial_result(tid, {names.STEP: step, names.VAL_RESIDUE_ACCURACY: value})
        last = max(curve)
        if replicate == 1:
            stop_log.record(tid, last)
        limiter.on_trial_complete(tid, {names.STEP: last, names.VAL_RESIDUE_ACCURACY: curve[last]})
    (ot,) = limiter.searcher.inner.study.trials
    assert ot.state == optuna.trial.TrialState.PRUNED
    assert ot.intermediate_values == {10: pytest.approx(0.25), 20: pytest.approx(0.40)}
    assert max(ot.intermediate_values) == 20  # nothing after the stop reaches Optuna
    assert ot.value == pytest.approx(0.40)  # a pruned trial's value: its last intermediate value
