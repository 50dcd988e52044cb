"""The space loader: every shipped space loads, bad input is rejected by file and key, scaling and smoke,
and sampling keeps the constraints (through a real Optuna study, no Ray)."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from model import names
from model.config import load_config
from model.errors import InputError
from search.distributions import parse_distribution
from search.layout import search_meta
from search.optuna_glue import REPAIRS, SpaceSampler, make_optuna
from search.space import SPACE_DIR, load_space
from search.trials import curriculum_label, named_config, searched_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(SPACE_DIR.glob("*.yaml"))

GOOD = {
    "name": "unit",
    "trainer": {"preset": "tiny", "overrides": {"optim.max_steps": 400, "optim.warmup_steps": 40,
                                                "train.eval_interval": 50}},
    "curriculum": {"stages": [{"name": "a", "steps": 200, "min_length": 7, "max_length": 10},
                              {"name": "b", "steps": 200, "min_length": 7, "max_length": 12, "noise_peaks": 2}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1, "ramp_steps": 50},
                   "precursor": {"start_weight": 0.01, "final_weight": 0.02, "ramp_steps": 0}},
    "search": {"spectrum.intro_step": {"dist": "qrandint", "low": 20, "high": 240, "q": 10},
               "precursor.intro_step": {"dist": "qrandint", "low": 60, "high": 300, "q": 10},
               "spectrum.final_weight": {"dist": "uniform", "low": 0.08, "high": 0.25},
               "optim.lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-3}},
    "constraints": ["precursor.intro_step >= spectrum.intro_step"],
    "named": {"curricula": ["original", "revised"], "scale": 0.004},
    "searcher": {"algorithm": "tpe", "seed": 3, "num_samples": 6, "startup_trials": 2},
    "seeds": [0, 1],
    "scheduler": {"type": "asha", "max_t": 400, "grace_period": 100, "settle_steps": 50},
}


def write(tmp_path: Path, data: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_change(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_loads_and_smokes(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Run:") and "python -m search.run --space spaces/" in first
    space = load_space(path)
    assert space.num_trials > 0 and space.scheduler.max_t <= space.max_steps
    smoke = load_space(path, smoke=True)
    assert smoke.max_steps <= 40 and smoke.trainer.preset == "tiny" and smoke.resources.gpu == 0
    assert smoke.num_trials <= 4
    for name in smoke.named.curricula:
        smoke.named_curriculum(name)


def test_shipped_spaces_state_the_issue_settings():
    assert len(SHIPPED) >= 4
    assert {load_space(path).metric for path in SHIPPED} == {names.VAL_RESIDUE_ACCURACY}
    quick = load_space(SPACE_DIR / "quickstart.yaml")
    assert quick.trainer.preset == "seedlike" and quick.scheduler.type == "asha" and 8 <= quick.num_trials <= 16
    ab_laptop = load_space(SPACE_DIR / "ab_laptop.yaml")
    assert ab_laptop.trainer.preset == "seedlike" and ab_laptop.scheduler.type == "fifo"
    assert ab_laptop.num_trials == 15 and ab_laptop.seeds == [0, 1, 2]
    assert set(ab_laptop.named.curricula) == {"original", "delayed", "current", "revised", "conservative"}
    timing = load_space(SPACE_DIR / "intro_timing.yaml")
    assert timing.max_steps == 100_000 and 0 < timing.resources.gpu < 1
    assert set(timing.named.curricula) == {"original", "delayed", "current", "revised", "conservative"}
    assert timing.params["spectrum.intro_step"].extent() == (5000, 40000)
    assert timing.params["precursor.intro_step"].extent() == (15000, 50000)
    gates = load_space(SPACE_DIR / "intro_gates.yaml")
    assert all(k.endswith("intro_accuracy") for k in gates.params) and gates.searcher.algorithm == "grid"
    ab = load_space(SPACE_DIR / "ab_seed_curricula.yaml")
    assert ab.num_trials == 15 and ab.scheduler.type == "fifo" and ab.scheduler.max_t == 50_000


def test_good_space_and_defaults(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    assert space.metric == names.VAL_RESIDUE_ACCURACY and space.mode == "max"
    assert space.num_configurations == 8 and space.num_trials == 16
    assert space.max_steps == 400 and space.eval_interval == 50


def test_scale_multiplies_every_step_count(tmp_path):
    space = load_space(write(tmp_path, GOOD), scale=0.5)
    assert space.max_steps == 200 and space.eval_interval == 25
    assert [s["steps"] for s in space.curriculum["stages"]] == [100, 100]
    assert space.curriculum["spectrum"]["ramp_steps"] == 25
    assert space.params["spectrum.intro_step"].extent() == (10, 120)
    assert space.params["spectrum.final_weight"].extent() == (0.08, 0.25)  # weights are not steps
    assert (space.scheduler.max_t, space.scheduler.grace_period, space.scheduler.settle_steps) == (200, 50, 25)
    assert space.named_curriculum("revised").total_steps == pytest.approx(200, abs=8)


def test_num_samples_and_smoke(tmp_path):
    assert load_space(write(tmp_path, GOOD), num_samples=1).num_trials == (2 + 1) * 2
    smoke = load_space(write(tmp_path, GOOD), smoke=True)
    assert smoke.max_steps == 40 and smoke.eval_interval == 10 and smoke.seeds == [0]
    assert smoke.searcher.num_samples == 2 and smoke.searcher.max_concurrent <= 2


BAD = [
    ("unknown top key", lambda d: d.update(serach={}), "serach"),
    ("unknown section key", lambda d: d["scheduler"].update(grace=3), "scheduler.grace"),
    ("wrong type", lambda d: d["searcher"].update(num_samples="many"), "searcher.num_samples"),
    ("low above high", lambda d: d["search"]["spectrum.final_weight"].update(low=0.3), "search.spectrum.final_weight.low"),
    ("unknown distribution", lambda d: d["search"]["optim.lr"].update(dist="lognormal"), "search.optim.lr.dist"),
    ("intro beyond max steps", lambda d: d["search"]["spectrum.intro_step"].update(high=400),
     "search.spectrum.intro_step.high"),
    ("negative weight", lambda d: d["search"]["spectrum.final_weight"].update(low=-0.1),
     "search.spectrum.final_weight.low"),
    ("negative fixed weight", lambda d: d["curriculum"]["precursor"].update(final_weight=-1),
     "curriculum.precursor.final_weight"),
    ("grace above max_t", lambda d: d["scheduler"].update(grace_period=500), "scheduler.grace_period"),
    ("max_t above max steps", lambda d: d["scheduler"].update(max_t=800), "scheduler.max_t"),
    ("unknown curriculum", lambda d: d["named"].update(curricula=["original", "later"]), "named.curricula[1]"),
    ("unknown preset", lambda d: d["trainer"].update(preset="huge"), "trainer.preset"),
    ("bad override", lambda d: d["trainer"]["overrides"].update({"optim.lrr": 1}), "trainer.overrides.optim.lrr"),
    ("bad searched trainer key", lambda d: d["search"].update({"optim.lr": {"dist": "uniform", "low": -1, "high": 1}}),
     "search.optim.lr"),
    ("reserved key", lambda d: d["trainer"]["overrides"].update(seed=4), "trainer.overrides.seed"),
    ("unknown metric", lambda d: d.update(metric="val/acc"), "metric"),
    ("the fingerprint is no metric", lambda d: d.update(metric=names.VAL_FINGERPRINT), "metric"),
    ("unknown validation key", lambda d: d.update(validation={"noise": 3}), "validation.noise"),
    ("validation not a mapping", lambda d: d.update(validation=[7, 14]), "validation"),
    ("validation length not an integer", lambda d: d.update(validation={"max_length": "long"}),
     "validation.max_length"),
    ("validation min above max", lambda d: d.update(validation={"min_length": 15}), "validation.min_length"),
    ("validation max too long", lambda d: d.update(validation={"max_length": 40}), "validation.max_length"),
    ("validation noise negative", lambda d: d.update(validation={"noise_peaks": -1}), "validation.noise_peaks"),
    ("validation size zero", lambda d: d.update(validation={"size": 0}), "validation.size"),
    ("validation seed negative", lambda d: d.update(validation={"seed": -3}), "validation.seed"),
    ("validation lengths as trainer overrides", lambda d: d["trainer"]["overrides"].update(
        {"data.val_noise_peaks": 3}), "trainer.overrides.data.val_noise_peaks"),
    ("validation searched", lambda d: d["search"].update({"data.val_size": {"dist": "choice", "values": [64, 128]}}),
     "search.data.val_size"),
    ("validation size stated twice", lambda d: (d["trainer"]["overrides"].update({"data.val_size": 64}),
                                                d.update(validation={"size": 128})), "validation.size"),
    ("constraint on nothing", lambda d: d.update(constraints=["spectrum.intro_step >= precursor.ramp_step"]),
     "constraints[0]"),
    ("constraint never holds", lambda d: d.update(constraints=["spectrum.intro_step >= precursor.intro_step + 500"]),
     "constraints[0]"),
    ("unreadable constraint", lambda d: d.update(constraints=["spectrum.intro_step > = 3"]), "constraints[0]"),
    ("grid with tpe", lambda d: d["search"].update({"optim.lr": {"dist": "grid", "values": [1e-3]}}),
     "search.optim.lr.dist"),
    ("float intro step", lambda d: d["search"].update({"spectrum.intro_step": {"dist": "uniform", "low": 20, "high": 30}}),
     "search.spectrum.intro_step.dist"),
    ("q does not divide", lambda d: d["search"]["spectrum.intro_step"].update(high=245), "search.spectrum.intro_step.high"),
    ("repeated seeds", lambda d: d.update(seeds=[1, 1]), "seeds"),
    ("gpu above one but fractional", lambda d: d.update(resources={"gpu": 1.5}), "resources.gpu"),
    ("wandb mode", lambda d: d.update(wandb={"mode": "cloud"}), "wandb.mode"),
    ("nothing to run", lambda d: (d.update(named={"curricula": []}), d["searcher"].update(num_samples=0)),
     "searcher.num_samples"),
]


@pytest.mark.parametrize("case, change, key", BAD, ids=[c[0] for c in BAD])
def test_bad_space_names_file_and_key(tmp_path, case, change, key):
    path = write(tmp_path, with_change(change))
    with pytest.raises(InputError) as err:
        load_space(path)
    assert err.value.file == str(path)
    assert err.value.key == key, err.value


def test_validation_defaults_to_the_hardest_stage_of_every_curriculum(tmp_path):
    # Fixed stages reach 7-12 with 2 noise peaks; the named original 7-14 with 21 and revised with 34.
    space = load_space(write(tmp_path, GOOD))
    assert (space.validation.min_length, space.validation.max_length, space.validation.noise_peaks) == (7, 14, 34)
    preset = load_config("tiny")
    assert (space.validation.size, space.validation.seed) == (preset.data.val_size, preset.data.val_seed)
    only_original = load_space(write(tmp_path, with_change(lambda d: d["named"].update(curricula=["original"]))))
    assert only_original.validation.noise_peaks == 21
    no_named = with_change(lambda d: (d["named"].update(curricula=[]), d["curriculum"]["stages"].append(
        {"name": "c", "steps": 1, "min_length": 6, "max_length": 9, "noise_peaks": 1})))
    no_named["trainer"]["overrides"]["optim.max_steps"] = 401
    no_named["trainer"]["overrides"]["data.val_size"] = 96  # the preset's size, as overridden
    v = load_space(write(tmp_path, no_named)).validation
    assert (v.min_length, v.max_length, v.noise_peaks, v.size) == (6, 12, 2, 96)


def test_validation_stated_and_kept_by_scale_and_smoke(tmp_path):
    stated = {"min_length": 8, "max_length": 12, "noise_peaks": 3, "size": 200, "seed": 11}
    space = load_space(write(tmp_path, with_change(lambda d: d.update(validation=stated))))
    assert dataclasses.asdict(space.validation) == stated
    assert dataclasses.asdict(load_space(write(tmp_path, with_change(lambda d: d.update(validation=stated))),
                                         scale=0.5).validation) == stated
    # --smoke keeps the full space's validation data, although it runs only two named curricula
    # (ab_seed_curricula: original and delayed, whose hardest stage has 21 noise peaks, not 34); only smaller.
    full, smoke = load_space(SPACE_DIR / "ab_seed_curricula.yaml"), load_space(SPACE_DIR / "ab_seed_curricula.yaml",
                                                                               smoke=True)
    assert smoke.named.curricula == ["original", "delayed"] and full.validation.noise_peaks == 34
    assert dataclasses.replace(smoke.validation, size=full.validation.size) == full.validation
    assert smoke.validation.size == 64
    assert load_space(SPACE_DIR / "quickstart.yaml").validation.size == 256


def test_every_trial_config_carries_the_validation_set(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    expected = {"data.val_min_length": 7, "data.val_max_length": 14, "data.val_noise_peaks": 34,
                "data.val_size": space.validation.size, "data.val_seed": space.validation.seed}
    values = {"spectrum.intro_step": 120, "precursor.intro_step": 200, "spectrum.final_weight": 0.2, "optim.lr": 3e-4}
    configs = [named_config(space, "exp", "revised", 1, 1), named_config(space, "exp", "original", 0, 0),
               searched_config(space, "exp", values, 0, 5), searched_config(space, "exp", values, 1, 5)]
    for config in configs:
        assert {k: config["trainer"]["overrides"][k] for k in expected} == expected
        load_config(config["trainer"]["preset"], config["trainer"]["overrides"])  # the trainer accepts them
    assert search_meta(space, "exp", "running", "now")["validation"] == {
        "min_length": 7, "max_length": 14, "noise_peaks": 34, "size": space.validation.size,
        "seed": space.validation.seed}


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsearch: {a: [1, 2\n")
    with pytest.raises(InputError) as err:
        load_space(bad)
    assert err.value.key.startswith("line ")
    with pytest.raises(InputError) as err:
        load_space(tmp_path / "missing.yaml")
    assert err.value.key == "file"


def test_distribution_rules():
    assert parse_distribution({"dist": "qrandint", "low": 0, "high": 100, "q": 25}, "f", "k").kind == "qrandint"
    for raw, key in [({"dist": "choice", "values": []}, "k.values"), ({"dist": "uniform", "low": 1}, "k.high"),
                     ({"dist": "randint", "low": 1.5, "high": 3}, "k.low"),
                     ({"dist": "loguniform", "low": 0, "high": 1}, "k.low"),
                     ({"dist": "uniform", "low": 0, "high": 1, "q": 2}, "k.q")]:
        with pytest.raises(InputError) as err:
            parse_distribution(raw, "f", "k")
        assert err.value.key == key


def _draw(space, n: int, recorded_as_run: bool = True) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    sampler = SpaceSampler(space.params, space.constraints, space.fixed_values())
    drawn = []
    for i in range(n):
        trial = study.ask()
        values = sampler(trial)
        if recorded_as_run:  # narrowed ranges: Optuna records the values that run
            assert trial.params == {k: v for k, v in values.items() if k != REPAIRS}
        study.tell(trial, float(values["spectrum.final_weight"]) + i * 1e-3)
        drawn.append(values)
    return drawn


def test_sampling_keeps_constraints_by_narrowing(tmp_path):
    data = with_change(lambda d: d["search"].update(
        {"spectrum.intro_step": {"dist": "qrandint", "low": 20, "high": 290, "q": 10}}))
    space = load_space(write(tmp_path, data))
    drawn = _draw(space, 40)
    for values in drawn:
        assert values["precursor.intro_step"] >= values["spectrum.intro_step"]
        assert values["precursor.intro_step"] % 10 == 0 and 60 <= values["precursor.intro_step"] <= 300
    assert any(v[REPAIRS] for v in drawn)


def test_choice_is_clamped_to_the_nearest_allowed_value(tmp_path):
    data = with_change(lambda d: d["search"].update(
        {"precursor.intro_step": {"dist": "choice", "values": [60, 150, 300]}}))
    space = load_space(write(tmp_path, data))
    drawn = _draw(space, 30, recorded_as_run=False)
    assert any("clamped" in " ".join(v[REPAIRS]) for v in drawn)
    for values in drawn:
        assert values["precursor.intro_step"] >= values["spectrum.intro_step"]
        assert values["precursor.intro_step"] in (60, 150, 300)


def test_trial_configs_are_self_contained(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    named = named_config(space, "exp", "revised", 1, 1)
    assert named["label"] == named["family"] == "revised" and named["seed"] == 1 and named["replicate"] == 1
    assert named["curriculum"]["name"] == "revised" and named["params"]["curriculum"] == "revised"
    values = {"spectrum.intro_step": 120, "precursor.intro_step": 200, "spectrum.final_weight": 0.2, "optim.lr": 3e-4}
    config = searched_config(space, "exp", values, 0, 5, ["note"])
    assert config["family"] == "searched" and config["params"]["spectrum.intro_step"] == 120
    assert config["trainer"]["overrides"]["optim.lr"] == 3e-4 and config["repairs"] == ["note"]
    assert config["curriculum"]["spectrum"]["intro_step"] == 120
    assert config["label"].startswith("spec@120 w.05-.2 r50 | prec@200 w.02") and "lr=0.0003" in config["label"]
    assert config["wandb"]["group"] == "exp" and config["wandb"]["mode"] == "offline"


def test_curriculum_label_of_gates():
    space = load_space(SPACE_DIR / "intro_gates.yaml")
    label = curriculum_label(space.curriculum_for({"spectrum.intro_accuracy": 0.55}))
    assert label == "spec@55% w.08-.25 r30k | prec@75% w.01-.08 r30k"


def test_optuna_samplers_per_searcher(tmp_path):
    assert isinstance(make_optuna(load_space(write(tmp_path, GOOD))).study.sampler, optuna.samplers.TPESampler)
    grid = load_space(SPACE_DIR / "intro_gates.yaml")
    assert grid.searcher.num_samples == 9
    assert isinstance(make_optuna(grid).study.sampler, optuna.samplers.GridSampler)


BAD_CLI = [
    (lambda t: ["--space", str(write(t, with_change(lambda d: d["scheduler"].update(grace_period=500))))],
     "scheduler.grace_period"),
    (lambda t: ["--space", str(t / "nope.yaml")], "file"),
    (lambda t: ["--space", str(write(t, with_change(lambda d: d.update(resources={"gpu": 0.25}))))], "resources.gpu"),
    (lambda t: ["--space", str(write(t, GOOD)), "--scale", "-1"], "--scale"),
]


@pytest.mark.parametrize("make_args, key", BAD_CLI, ids=["grace", "missing", "gpu", "scale"])
def test_cli_bad_input_exits_2_with_one_line_before_ray(tmp_path, make_args, key):
    import torch

    if key == "resources.gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    storage = tmp_path / "results"
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "search.run", *make_args(tmp_path), "--storage", str(storage)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f": {key}: " in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not storage.exists()
    assert time.time() - start < 30
