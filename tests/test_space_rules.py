"""The space loader refuses searched schedule keys that cannot change what the trainer does.

Each refused space is checked three ways: ``load_space`` names the file and key, the CLI prints one line
and exits 2 with nothing written, and a brute force over ``LossSchedule.weight`` agrees that no value in
the key's range changes a weight before ``scheduler.max_t``. Every shipped space passes the same brute
force the other way: each of its searched schedule keys can change some weight.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model.curriculum import LossSchedule
from model.errors import InputError
from search.run import main
from search.space import SPACE_DIR, load_space

REPO = Path(__file__).resolve().parent.parent
BASE = {
    "name": "rules",
    "trainer": {"preset": "tiny", "overrides": {"optim.max_steps": 400, "optim.warmup_steps": 40,
                                                "train.eval_interval": 50}},
    "curriculum": {"stages": [{"name": "a", "steps": 400, "min_length": 7, "max_length": 10}],
                   "spectrum": {"intro_step": 100}},
    "search": {},
    "searcher": {"algorithm": "random", "num_samples": 2},
}


def space_data(spectrum: dict, search: dict, max_t: int | None = None) -> dict:
    """BASE with the fixed spectrum schedule, the searched keys and (optionally) scheduler.max_t."""
    data = copy.deepcopy(BASE)
    data["curriculum"]["spectrum"] = spectrum
    data["search"] = search
    if max_t is not None:
        data["scheduler"] = {"type": "fifo", "max_t": max_t}
    return data


UNIFORM = {"dist": "uniform", "low": 0.05, "high": 0.2}
RAMP = {"dist": "randint", "low": 0, "high": 100}
INTRO = {"dist": "randint", "low": 50, "high": 150}

# name -> (space, the key the one line must name). Each has a control in ACCEPTED that differs in one value.
REFUSED = {
    "start_weight_without_ramp_never_on": (space_data({"intro_step": 100}, {"spectrum.start_weight": UNIFORM}),
                                           "search.spectrum.start_weight"),
    "start_weight_without_ramp": (space_data({"intro_step": 100, "final_weight": 0.1},
                                             {"spectrum.start_weight": UNIFORM}), "search.spectrum.start_weight"),
    "ramp_without_weight": (space_data({"intro_step": 100}, {"spectrum.ramp_steps": RAMP}),
                            "search.spectrum.ramp_steps"),
    "ramp_between_equal_weights": (space_data({"intro_step": 100, "start_weight": 0.1, "final_weight": 0.1},
                                              {"spectrum.ramp_steps": RAMP}), "search.spectrum.ramp_steps"),
    "intro_of_a_loss_never_on": (space_data({"final_weight": 0.0}, {"spectrum.intro_step": INTRO}),
                                 "search.spectrum.intro_step"),
    "intro_range_past_max_steps": (space_data({"final_weight": 0.1},
                                              {"spectrum.intro_step": {"dist": "randint", "low": 450, "high": 500}}),
                                   "search.spectrum.intro_step.high"),
    "intro_range_past_max_t": (space_data({"final_weight": 0.1},
                                          {"spectrum.intro_step": {"dist": "randint", "low": 250, "high": 300}}, 200),
                               "search.spectrum.intro_step.high"),
    "intro_range_reaching_max_t": (space_data({"final_weight": 0.1}, {"spectrum.intro_step": INTRO}, 150),
                                   "search.spectrum.intro_step.high"),
    "fixed_intro_past_max_t": (space_data({"intro_step": 250}, {"spectrum.final_weight": UNIFORM}, 200),
                               "curriculum.spectrum.intro_step"),
}
ACCEPTED = {
    "start_weight_with_ramp": space_data({"intro_step": 100, "ramp_steps": 50}, {"spectrum.start_weight": UNIFORM}),
    "start_weight_with_searched_ramp": space_data({"intro_step": 100},
                                                  {"spectrum.start_weight": UNIFORM, "spectrum.ramp_steps": RAMP}),
    "ramp_between_two_weights": space_data({"intro_step": 100, "start_weight": 0.05, "final_weight": 0.1},
                                           {"spectrum.ramp_steps": RAMP}),
    "final_weight_without_ramp": space_data({"intro_step": 100}, {"spectrum.final_weight": UNIFORM}),
    "intro_before_max_t": space_data({"final_weight": 0.1}, {"spectrum.intro_step": INTRO}, 151),
    "fixed_intro_before_max_t": space_data({"intro_step": 199}, {"spectrum.final_weight": UNIFORM}, 200),
}


def write(tmp_path: Path, data: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def key_takes_effect(fixed: dict, ranges: dict[str, tuple], key: str, max_t: int) -> bool:
    """Brute force: with the loss's other searched keys at their low or high ends, does moving ``key`` from
    its low to its high end change the loss's weight at any step before ``max_t``?"""
    loss, attr = key.split(".")
    own = {k.split(".")[1]: r for k, r in ranges.items() if k.startswith(f"{loss}.") and k != key}
    steps = range(0, max_t, max(1, max_t // 4000))
    for ends in itertools.product((0, 1), repeat=len(own)):
        values = {**fixed, **{a: r[e] for (a, r), e in zip(own.items(), ends)}}
        if attr == "intro_step" or "intro_step" in own:  # a searched step replaces a fixed gate (curriculum_for)
            values.pop("intro_accuracy", None)
        low, high = (LossSchedule(**{**values, attr: ranges[key][e]}) for e in (0, 1))
        if any(low.weight(s, None) != high.weight(s, None) for s in steps):
            return True
    return False


def _ranges(search: dict) -> dict[str, tuple]:
    return {k: (d["low"], d["high"]) for k, d in search.items()}


@pytest.mark.parametrize("case", REFUSED)
def test_load_space_refuses_a_key_that_cannot_take_effect(case: str, tmp_path: Path) -> None:
    data, key = REFUSED[case]
    path = write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_space(path)
    assert (info.value.file, info.value.key) == (str(path), key)
    if key.startswith("search.") and not key.endswith(".high"):  # the brute force agrees: the key is dead
        max_t = (data.get("scheduler") or {}).get("max_t") or 400
        assert not key_takes_effect(data["curriculum"]["spectrum"], _ranges(data["search"]), key[7:], max_t)


@pytest.mark.parametrize("case", ACCEPTED)
def test_each_control_loads_and_its_keys_take_effect(case: str, tmp_path: Path) -> None:
    space = load_space(write(tmp_path, ACCEPTED[case]))
    ranges = {k: d.extent() for k, d in space.params.items()}
    for key in ranges:
        assert key_takes_effect(space.curriculum["spectrum"], ranges, key, space.scheduler.max_t), key


def test_a_searched_final_weight_without_a_ramp_is_the_weight() -> None:
    """final_weight with ramp_steps 0 is not dead: it is the weight from the intro on."""
    schedules = [LossSchedule(intro_step=100, final_weight=w) for w in (0.05, 0.2)]
    assert [s.weight(150, None) for s in schedules] == [0.05, 0.2]


@pytest.mark.parametrize("path", sorted(SPACE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_searched_key_of_a_shipped_space_takes_effect(path: Path) -> None:
    for space in (load_space(path), load_space(path, smoke=True)):
        ranges = {k: d.extent() for k, d in space.params.items() if k.split(".")[-1] != "intro_accuracy"}
        for key in ranges:
            if key.split(".")[0] in ("spectrum", "precursor"):
                fixed = {k: v for k, v in (space.curriculum.get(key.split(".")[0]) or {}).items()
                         if k in {f.name for f in dataclasses.fields(LossSchedule)}}
                assert key_takes_effect(fixed, ranges, key, space.scheduler.max_t), (path.name, key)


# --- the CLI: one line, exit 2, nothing written ------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSED)
def test_cli_refuses_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, key = REFUSED[case]
    path = write(tmp_path, data)
    storage = tmp_path / "results"
    with pytest.raises(InputError):  # fail fast: a space that loads would start a real search below
        load_space(path)
    with pytest.raises(SystemExit) as info:
        main(["--space", str(path), "--storage", str(storage)])
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {key}: "), lines
    assert not storage.exists()


def test_cli_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    data, key = REFUSED["start_weight_without_ramp_never_on"]
    path = write(tmp_path, data)
    storage = tmp_path / "results"
    with pytest.raises(InputError):  # fail fast: a space that loads would start a real search below
        load_space(path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "search.run", "--space", str(path), "--storage", str(storage)],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {path}: {key}: cannot change training: ")
    assert "never on" in result.stderr
    assert not storage.exists()
