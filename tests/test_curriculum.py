"""Curricula as pure functions of (step, gate state): both forms at fixed steps, gates, events, scaling."""

from __future__ import annotations

import math

import pytest

from model.curriculum import (
    Curriculum,
    CurriculumState,
    LossSchedule,
    Stage,
    clean_ce,
    curriculum_from_dict,
    load_curriculum,
    shipped_curricula,
)


def _parametric(spectrum: dict | None = None, precursor: dict | None = None) -> Curriculum:
    data = {
        "name": "p",
        "stages": [
            {"name": "easy", "steps": 1000, "min_length": 7, "max_length": 10},
            {"name": "hard", "steps": 1000, "min_length": 7, "max_length": 14, "noise_peaks": 5},
        ],
    }
    if spectrum is not None:
        data["spectrum"] = spectrum
    if precursor is not None:
        data["precursor"] = precursor
    return curriculum_from_dict(data, "p.yaml")


# --- the stage form: the seeds' curricula at fixed steps ---------------------------------------------------


def test_original_at_the_seed_steps() -> None:
    """Seed 000: no spectrum loss until 15K, 0.08 from 15K, 0.12 from 22.5K; the last stage holds."""
    cur = load_curriculum("original")
    expected = {
        0: ("foundation", 0.0, 7, 10, 0),
        7499: ("foundation", 0.0, 7, 10, 0),
        7500: ("stabilization", 0.0, 7, 10, 0),
        14999: ("stabilization", 0.0, 7, 10, 0),
        15000: ("spectrum_intro", 0.08, 7, 11, 4),  # the seed's noise 1, 2, 5 times 34/8, rounded
        22499: ("spectrum_intro", 0.08, 7, 11, 4),
        22500: ("spectrum_ramp", 0.12, 7, 12, 8),
        cur.total_steps - 1: ("continue_14", 0.12, 7, 14, 21),
        cur.total_steps: ("continue_14", 0.12, 7, 14, 21),
        10 * cur.total_steps: ("continue_14", 0.12, 7, 14, 21),
    }
    for step, (stage, spectrum, lo, hi, noise) in expected.items():
        assert cur.at(step) == CurriculumState(stage, lo, hi, noise, spectrum, 0.0), step
    assert cur.events() == {"spectrum": 15000}


def test_revised_and_delayed_intro_steps() -> None:
    revised = load_curriculum("revised")
    assert revised.events() == {"spectrum": 15000, "precursor": 30000}
    assert revised.at(29999).precursor_weight == 0.0 and revised.at(30000).precursor_weight == 0.01
    assert revised.at(29999).spectrum_weight == 0.12 and revised.at(30000).spectrum_weight == 0.15
    delayed = load_curriculum("delayed")
    assert delayed.events() == {"spectrum": 30000}
    assert delayed.at(29999).spectrum_weight == 0.0 and delayed.at(30000).spectrum_weight == 0.06
    assert delayed.at(37500).spectrum_weight == 0.10


@pytest.mark.parametrize("name", shipped_curricula())
def test_weights_never_negative_and_lengths_valid(name: str) -> None:
    cur = load_curriculum(name)
    for step in range(0, cur.total_steps + 5000, 250):
        s = cur.at(step)
        assert s.spectrum_weight >= 0 and s.precursor_weight >= 0
        assert 1 <= s.min_length <= s.max_length <= cur.max_length
    # the intro step reported is the first step with a positive weight
    for loss, intro in cur.events().items():
        assert getattr(cur.at(intro), f"{loss}_weight") > 0
        assert intro == 0 or getattr(cur.at(intro - 1), f"{loss}_weight") == 0


def test_a_stage_without_weights_means_zero() -> None:
    cur = Curriculum("c", [Stage("a", 10, 7, 10), Stage("b", 10, 7, 10, 0, 0.2, None)])
    assert cur.at(5).spectrum_weight == 0.0 and cur.at(5).precursor_weight == 0.0
    assert cur.at(15).spectrum_weight == 0.2 and cur.at(15).precursor_weight == 0.0
    assert cur.events() == {"spectrum": 10}


def test_clean_ce_never_turns_an_auxiliary_loss_on() -> None:
    cur = clean_ce(500)
    assert cur.total_steps == 500 and cur.events() == {}
    assert cur.at(0) == cur.at(10_000) == CurriculumState("clean_ce", 7, 10, 0, 0.0, 0.0)


# --- the parametric form -------------------------------------------------------------------------------------


def test_parametric_ramp_at_fixed_steps() -> None:
    cur = _parametric(spectrum={"intro_step": 400, "start_weight": 0.02, "final_weight": 0.1, "ramp_steps": 200})
    expected = {0: 0.0, 399: 0.0, 400: 0.02, 450: 0.04, 500: 0.06, 599: 0.0996, 600: 0.1, 1500: 0.1, 10**6: 0.1}
    for step, weight in expected.items():
        assert cur.at(step).spectrum_weight == pytest.approx(weight, abs=1e-12), step
        assert cur.at(step).precursor_weight == 0.0
    # the data difficulty still follows the stages
    assert (cur.at(999).max_length, cur.at(1000).max_length, cur.at(1000).noise_peaks) == (10, 14, 5)
    assert cur.events() == {"spectrum": 400}


def test_parametric_ramp_down_and_zero_ramp() -> None:
    down = _parametric(precursor={"intro_step": 100, "start_weight": 0.3, "final_weight": 0.1, "ramp_steps": 100})
    assert [down.at(s).precursor_weight for s in (99, 100, 150, 200, 900)] == pytest.approx([0, 0.3, 0.2, 0.1, 0.1])
    step = _parametric(precursor={"intro_step": 100, "start_weight": 0.3, "final_weight": 0.05, "ramp_steps": 0})
    assert [step.at(s).precursor_weight for s in (99, 100, 101, 5000)] == [0.0, 0.05, 0.05, 0.05]


def test_parametric_loss_with_zero_weights_has_no_intro() -> None:
    cur = _parametric(spectrum={"intro_step": 100, "final_weight": 0.0})
    assert cur.events() == {}
    assert all(cur.at(s).spectrum_weight == 0 for s in (0, 100, 5000))


# --- accuracy gates -------------------------------------------------------------------------------------------


GATED = {"intro_accuracy": 0.65, "start_weight": 0.05, "final_weight": 0.15, "ramp_steps": 100}


def test_gate_closed_until_the_threshold_then_ramps_from_the_opening_step() -> None:
    cur = _parametric(spectrum=GATED)
    assert cur.gated() == ["spectrum"]
    gates: dict = {}
    for step, acc in ((100, 0.3), (200, 0.5), (300, 0.649)):
        gates = cur.update_gates(gates, step, acc)
        assert gates.get("spectrum") is None
        assert cur.at(step, gates).spectrum_weight == 0.0
        assert cur.events(gates) == {}
    gates = cur.update_gates(gates, 400, 0.65)  # reaching the threshold exactly opens it
    assert gates == {"spectrum": 400}
    assert cur.events(gates) == {"spectrum": 400}
    assert cur.at(399, gates).spectrum_weight == 0.0
    assert cur.at(400, gates).spectrum_weight == pytest.approx(0.05)
    assert cur.at(450, gates).spectrum_weight == pytest.approx(0.10)
    assert cur.at(500, gates).spectrum_weight == pytest.approx(0.15)
    assert cur.at(5000, gates).spectrum_weight == pytest.approx(0.15)


def test_gate_is_not_reopened_or_closed_again() -> None:
    cur = _parametric(spectrum=GATED)
    gates = cur.update_gates({}, 400, 0.7)
    for step, acc in ((500, 0.9), (600, 0.1), (700, math.nan), (800, 0.66)):
        gates = cur.update_gates(gates, step, acc)
        assert gates == {"spectrum": 400}
    assert cur.at(450, gates).spectrum_weight == pytest.approx(0.10)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_non_finite_accuracy_never_opens_a_gate(bad: float) -> None:
    cur = _parametric(spectrum={**GATED, "intro_accuracy": 0.01})
    assert cur.update_gates({}, 100, bad) == {}


def test_update_gates_does_not_mutate_its_input_and_opens_each_gate_on_its_own() -> None:
    cur = _parametric(spectrum=GATED, precursor={"intro_accuracy": 0.8, "final_weight": 0.02})
    before: dict = {}
    after = cur.update_gates(before, 100, 0.7)
    assert before == {} and after == {"spectrum": 100}
    after = cur.update_gates(after, 200, 0.85)
    assert after == {"spectrum": 100, "precursor": 200}
    assert cur.at(200, after).precursor_weight == 0.02


def test_step_gates_ignore_the_gate_state() -> None:
    cur = _parametric(spectrum={"intro_step": 300, "final_weight": 0.1})
    assert cur.gated() == []
    assert cur.update_gates({}, 100, 0.99) == {}
    assert cur.at(299, {"spectrum": 0}).spectrum_weight == 0.0  # a stray gate entry cannot move a step intro


# --- equivalent forms, scaling, round trips -------------------------------------------------------------------


def test_stage_and_parametric_forms_compile_to_the_same_state() -> None:
    stages = [
        {"name": "a", "steps": 300, "min_length": 7, "max_length": 10, "noise_peaks": 0},
        {"name": "b", "steps": 200, "min_length": 7, "max_length": 12, "noise_peaks": 2},
        {"name": "c", "steps": 500, "min_length": 7, "max_length": 14, "noise_peaks": 4},
    ]
    weights = [(0.0, 0.0), (0.1, 0.0), (0.1, 0.02)]
    stage_form = curriculum_from_dict(
        {"name": "s", "stages": [{**s, "spectrum_loss_weight": w, "precursor_loss_weight": p}
                                 for s, (w, p) in zip(stages, weights)]}, "s.yaml")
    param_form = curriculum_from_dict(
        {"name": "p", "stages": stages,
         "spectrum": {"intro_step": 300, "start_weight": 0.1, "final_weight": 0.1},
         "precursor": {"intro_step": 500, "final_weight": 0.02}}, "p.yaml")
    for step in range(0, 1500, 7):
        assert stage_form.at(step) == param_form.at(step), step
    assert stage_form.events() == param_form.events() == {"spectrum": 300, "precursor": 500}


@pytest.mark.parametrize("factor", [0.1, 0.002, 2.0])
def test_scaled_multiplies_every_step_count(factor: float) -> None:
    cur = load_curriculum("revised")
    small = cur.scaled(factor)
    assert [s.steps for s in small.stages] == [max(1, round(s.steps * factor)) for s in cur.stages]
    assert [s.name for s in small.stages] == [s.name for s in cur.stages]
    assert small.events() == {k: round(v * factor) for k, v in cur.events().items()}
    for stage, end in zip(small.stages, small.boundaries):
        assert small.at(end - 1).stage == stage.name
    assert cur.at(15000) == small.at(round(15000 * factor)) and cur.at(0) == small.at(0)


def test_scaled_parametric_scales_intro_and_ramp_but_not_weights_or_gates() -> None:
    cur = _parametric(spectrum={"intro_step": 400, "start_weight": 0.02, "final_weight": 0.1, "ramp_steps": 200},
                      precursor={"intro_accuracy": 0.7, "final_weight": 0.03, "ramp_steps": 300})
    half = cur.scaled(0.5)
    assert half.spectrum == LossSchedule(200, None, 0.02, 0.1, 100)
    assert half.precursor == LossSchedule(None, 0.7, 0.0, 0.03, 150)
    for step in (0, 399, 400, 450, 600, 1000, 1999):
        assert half.at(step // 2).spectrum_weight == pytest.approx(cur.at(step - step % 2).spectrum_weight), step
    assert cur.total_steps == 2000 and half.total_steps == 1000
    assert cur.spectrum.intro_step == 400, "scaled must not change the original"


def test_scaled_keeps_at_least_one_step_a_stage() -> None:
    tiny = load_curriculum("original").scaled(1e-6)
    assert all(s.steps == 1 for s in tiny.stages)
    assert tiny.total_steps == len(tiny.stages)


@pytest.mark.parametrize("name", shipped_curricula())
def test_to_dict_round_trips(name: str) -> None:
    cur = load_curriculum(name)
    again = curriculum_from_dict(cur.to_dict(), "again")
    for step in range(0, cur.total_steps + 1000, 500):
        assert again.at(step) == cur.at(step)
    assert again.params() == cur.params()


def test_parametric_round_trip_and_params() -> None:
    cur = _parametric(spectrum={"intro_step": 400, "start_weight": 0.02, "final_weight": 0.1, "ramp_steps": 200},
                      precursor={"intro_accuracy": 0.7, "final_weight": 0.03})
    again = curriculum_from_dict(cur.to_dict(), "again")
    assert (again.spectrum, again.precursor) == (cur.spectrum, cur.precursor)
    params = cur.params()
    assert params["spectrum.intro_step"] == 400 and params["precursor.intro_accuracy"] == 0.7
    assert "precursor.intro_step" not in params
    assert load_curriculum("revised").params()["precursor.intro_step"] == 30000
