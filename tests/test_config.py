"""The strict config loader, the curriculum loader's input checks, and the trainer CLI's handling of bad input.

Every shipped YAML is globbed, so a new preset or curriculum is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from model.config import CONFIG_DIR, TrainConfig, load_config, to_dict
from model.curriculum import CURRICULUM_DIR, curriculum_from_dict, load_curriculum
from model.errors import InputError
from model.train import build_run, main, parse_args

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
CURRICULA = sorted(CURRICULUM_DIR.glob("*.yaml"))
TINY = CONFIG_DIR / "tiny.yaml"


def _dotted_fields(cls: type, prefix: str = "") -> set[str]:
    """Every leaf key of a config dataclass, dotted (``optim.lr``)."""
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _dotted_fields(tp, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def _dotted_items(data: dict, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested mapping by its dotted key (``{"optim.lr": 0.001, ...}``)."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:  # an empty mapping (data.fixed_mods: {}) is a leaf
            out.update(_dotted_items(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _dotted_keys(data: dict, prefix: str = "") -> set[str]:
    return set(_dotted_items(data, prefix))


def _write_tiny_with(tmp_path: Path, dotted: str, value, name: str = "bad.yaml") -> Path:
    """tiny.yaml with one key set (or added) to ``value``, written to tmp_path."""
    data = yaml.safe_load(TINY.read_text())
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _run_comment(path: Path) -> list[str]:
    """The arguments of the ``# Run:  python -m model.train ...`` line at the top of a shipped YAML."""
    for line in path.read_text().splitlines():
        if line.startswith("# Run:"):
            words = shlex.split(line.split(":", 1)[1])
            assert words[:3] == ["python", "-m", "model.train"], line
            return words[3:]
    raise AssertionError(f"{path} has no '# Run:' line")


# --- shipped files -------------------------------------------------------------------------------------


def test_the_shipped_files_are_found() -> None:
    assert {"tiny", "base"} <= {p.stem for p in CONFIGS}
    assert {"original", "delayed", "current", "revised", "conservative"} <= {p.stem for p in CURRICULA}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_every_value_as_written(path: Path, tmp_path: Path) -> None:
    """Each value of the preset's YAML lands at its key (not a default), and the config round-trips."""
    cfg = load_config(path)
    for dotted, value in _dotted_items(yaml.safe_load(path.read_text())).items():
        got = functools.reduce(getattr, dotted.split("."), cfg)
        assert got == (float(value) if isinstance(got, float) else value), dotted
    assert cfg != TrainConfig()  # the comparison above could not tell a preset from the defaults otherwise
    written = tmp_path / "written.yaml"
    written.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_config(written) == cfg
    assert load_config(path.stem) == cfg  # the preset name resolves to the same file
    if cfg.curriculum:
        load_curriculum(cfg.curriculum).validate_steps(cfg.optim.max_steps, path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_spells_out_every_key(path: Path) -> None:
    """The presets promise every key with a comment: a new config field must be added to them too."""
    assert _dotted_keys(yaml.safe_load(path.read_text())) == _dotted_fields(TrainConfig)


@pytest.mark.parametrize("path", CURRICULA, ids=lambda p: p.stem)
def test_shipped_curriculum_loads_and_validates(path: Path) -> None:
    cur = load_curriculum(path)
    assert cur.name == path.stem
    assert load_curriculum(path.stem).to_dict() == cur.to_dict()
    assert "spectrum" in cur.events(), "every seed curriculum introduces the spectrum loss"
    cur.validate_steps(load_config("base").optim.max_steps, path)


@pytest.mark.parametrize("path", CONFIGS + CURRICULA, ids=lambda p: p.stem)
def test_shipped_run_command_builds(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command each YAML begins with parses and passes every check (build_run trains nothing)."""
    monkeypatch.chdir(REPO)
    cfg, curriculum, out = build_run(parse_args(_run_comment(path)))
    if path.parent == CURRICULUM_DIR:
        assert curriculum.name == path.stem
    else:
        assert cfg == load_config(path)


# --- the loader: coercion and rejection by name ----------------------------------------------------------


def test_loader_coerces_yaml_spellings(tmp_path: Path) -> None:
    """YAML reads 1e-3 (no dot) as a string and 64.0 as a float: both are what the user meant."""
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  max_steps: 500.0\nmodel:\n  dim: 64\n")
    cfg = load_config(path)
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.max_steps == 500 and isinstance(cfg.optim.max_steps, int)
    assert cfg.model.dim == 64
    # keys not given keep their defaults
    assert cfg.data == TrainConfig().data


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == TrainConfig()


BAD_VALUES = [
    ("bogus", 1, "bogus"),
    ("model.dimm", 64, "model.dimm"),
    ("data.preprocess.topk", 5, "data.preprocess.topk"),
    ("optim.lr", "abc", "optim.lr"),
    ("model.dim", 1.5, "model.dim"),
    ("model.dim", "wide", "model.dim"),
    ("model.dim", True, "model.dim"),
    ("train.compile", "yes", "train.compile"),
    ("optim.betas", 0.9, "optim.betas"),
    ("optim.betas", [0.9, "x"], "optim.betas[1]"),
    ("model", 3, "model"),
    ("wandb.tags", "a,b", "wandb.tags"),
    ("optim.lr", 0, "optim.lr"),
    ("optim.lr", -1e-3, "optim.lr"),
    ("optim.weight_decay", -0.1, "optim.weight_decay"),
    ("model.dim", 30, "model.dim"),  # not a multiple of n_head (4)
    ("model.encoder_layers", 0, "model.encoder_layers"),
    ("model.dropout", 1.0, "model.dropout"),
    ("data.min_charge", 5, "data.min_charge"),  # above max_charge (4)
    ("data.ion_keep_prob", 0.0, "data.ion_keep_prob"),
    ("data.batch_size", 0, "data.batch_size"),
    ("data.train_files", ["/no/such/file.mgf"], "data.train_files"),
    ("optim.warmup_steps", 3001, "optim.warmup_steps"),  # max_steps is 3000
    ("optim.max_steps", 0, "optim.max_steps"),
    ("optim.min_lr_ratio", 1.5, "optim.min_lr_ratio"),
    ("loss.spectrum_tolerance_da", 0.0, "loss.spectrum_tolerance_da"),
    ("train.eval_interval", 0, "train.eval_interval"),
    ("train.stop_at_accuracy", 1.2, "train.stop_at_accuracy"),
    ("train.spike_factor", 1.0, "train.spike_factor"),
    ("train.device", "tpu", "train.device"),
    ("wandb.mode", "cloud", "wandb.mode"),
]


def test_a_good_value_written_the_same_way_loads(tmp_path: Path) -> None:
    """The control for the cases below: only the bad value makes them fail."""
    cfg = load_config(_write_tiny_with(tmp_path, "optim.lr", 0.002))
    assert cfg.optim.lr == 0.002
    assert dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.001)) == load_config("tiny")


@pytest.mark.parametrize(("dotted", "value", "key"), BAD_VALUES, ids=lambda v: str(v))
def test_bad_value_is_rejected_by_name(tmp_path: Path, dotted: str, value, key: str) -> None:
    path = _write_tiny_with(tmp_path, dotted, value)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert info.value.key == key
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(("dotted", "value", "key"), BAD_VALUES[:12], ids=lambda v: str(v))
def test_bad_override_is_rejected_by_name(dotted: str, value, key: str) -> None:
    with pytest.raises(InputError) as info:
        load_config("tiny", {dotted: value})
    assert info.value.key == key


def test_unknown_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="allowed: .*lr.*warmup_steps"):
        load_config(_write_tiny_with(tmp_path, "optim.learning_rate", 1e-3))


@pytest.mark.parametrize(
    ("text", "key"),
    [("model: [1, 2\n", "line"), ("optim:\n  lr: 1\n    max_steps: 3\n", "line"), ("- 1\n- 2\n", "top level")],
    ids=["unclosed", "indent", "list"],
)
def test_malformed_yaml_names_the_file_and_line(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key.startswith(key)


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.key == "file"
    with pytest.raises(InputError, match="shipped: .*tiny"):
        load_config("no_such_preset")


# --- curriculum input checks ------------------------------------------------------------------------------

GOOD_STAGE = {"name": "a", "steps": 100, "min_length": 7, "max_length": 10}


def _curriculum(stages: list[dict] | None = None, **extra) -> dict:
    return {"name": "t", "stages": stages if stages is not None else [dict(GOOD_STAGE)], **extra}


BAD_CURRICULA = [
    (_curriculum([{**GOOD_STAGE, "steps": 0}]), "stages[0].steps"),
    (_curriculum([GOOD_STAGE, {**GOOD_STAGE, "steps": -5}]), "stages[1].steps"),
    (_curriculum([{**GOOD_STAGE, "min_length": 12}]), "stages[0].min_length"),
    (_curriculum([{**GOOD_STAGE, "min_length": 0}]), "stages[0].min_length"),
    (_curriculum([{**GOOD_STAGE, "max_length": 99}]), "stages[0].min_length"),
    (_curriculum([{**GOOD_STAGE, "noise_peaks": -1}]), "stages[0].noise_peaks"),
    (_curriculum([GOOD_STAGE, {**GOOD_STAGE, "spectrum_loss_weight": -0.1}]), "stages[1].spectrum_loss_weight"),
    (_curriculum([{**GOOD_STAGE, "precursor_loss_weight": math.nan}]), "stages[0].precursor_loss_weight"),
    (_curriculum([{**GOOD_STAGE, "spectrum_loss_weight": math.inf}]), "stages[0].spectrum_loss_weight"),
    (_curriculum([{**GOOD_STAGE, "steps": "many"}]), "stages[0].steps"),
    (_curriculum([{**GOOD_STAGE, "colour": "red"}]), "stages[0].colour"),
    (_curriculum([{k: v for k, v in GOOD_STAGE.items() if k != "steps"}]), "stages[0].steps"),
    (_curriculum([]), "stages"),
    ({"name": "t"}, "stages"),
    (_curriculum(stagez=[]), "stagez"),
    (_curriculum(spectrum={"intro_step": 10, "final_weight": -0.1}), "spectrum.final_weight"),
    (_curriculum(spectrum={"intro_step": 10, "start_weight": -0.1, "final_weight": 0.1}), "spectrum.start_weight"),
    (_curriculum(precursor={"intro_step": -1, "final_weight": 0.1}), "precursor.intro_step"),
    (_curriculum(spectrum={"final_weight": 0.1}), "spectrum.intro_step"),
    (_curriculum(spectrum={"intro_step": 10, "intro_accuracy": 0.6, "final_weight": 0.1}), "spectrum.intro_step"),
    (_curriculum(spectrum={"intro_accuracy": 1.5, "final_weight": 0.1}), "spectrum.intro_accuracy"),
    (_curriculum(spectrum={"intro_step": 10, "final_weight": 0.1, "ramp_steps": -1}), "spectrum.ramp_steps"),
    (_curriculum(spectrum={"intro_step": 10, "weight": 0.1}), "spectrum.weight"),
    (_curriculum(spectrum=0.1), "spectrum"),
    (_curriculum([{**GOOD_STAGE, "spectrum_loss_weight": 0.1}], spectrum={"intro_step": 10, "final_weight": 0.1}),
     "spectrum"),
    (_curriculum(name=""), "name"),
]


@pytest.mark.parametrize(("data", "key"), BAD_CURRICULA, ids=[k for _, k in BAD_CURRICULA])
def test_bad_curriculum_is_rejected_by_name(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "cur.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as info:
        load_curriculum(path)
    assert info.value.key == key
    assert info.value.file == str(path)


def test_intro_step_must_come_before_the_last_step() -> None:
    cur = curriculum_from_dict(_curriculum(spectrum={"intro_step": 3000, "final_weight": 0.1}), "c.yaml")
    cur.validate_steps(3001, "c.yaml")  # one step with the loss on: allowed
    for max_steps in (3000, 2000):
        with pytest.raises(InputError) as info:
            cur.validate_steps(max_steps, "c.yaml")
        assert info.value.key == "spectrum.intro_step"
    gated = curriculum_from_dict(_curriculum(precursor={"intro_accuracy": 0.7, "final_weight": 0.1}), "c.yaml")
    gated.validate_steps(10, "c.yaml")  # an accuracy gate has no step to check


# --- the CLI: one line on stderr, exit 2, nothing trained -----------------------------------------------------

def _bad_cli_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after --out, the prefix the one stderr line must start with)."""
    bad_key = _write_tiny_with(tmp_path, "model.dimm", 32, "bad_key.yaml")
    bad_type = _write_tiny_with(tmp_path, "optim.lr", "abc", "bad_type.yaml")
    bad_float = _write_tiny_with(tmp_path, "model.dim", 1.5, "bad_float.yaml")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("optim: {lr: 1\n")
    missing = tmp_path / "missing.yaml"
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump(_curriculum(spectrum={"intro_step": 500, "final_weight": 0.1})))
    zero = tmp_path / "zero.yaml"
    zero.write_text(yaml.safe_dump(_curriculum([{**GOOD_STAGE, "steps": 0}])))
    return {
        "unknown_key": (["--config", str(bad_key)], f"error: {bad_key}: model.dimm: "),
        "wrong_type": (["--config", str(bad_type)], f"error: {bad_type}: optim.lr: "),
        "float_for_int": (["--config", str(bad_float)], f"error: {bad_float}: model.dim: "),
        "malformed_yaml": (["--config", str(malformed)], f"error: {malformed}: line "),
        "missing_file": (["--config", str(missing)], f"error: {missing}: file: "),
        "bad_set_value": (["--config", str(TINY), "--set", "optim.lr=abc"], f"error: {TINY}: optim.lr: "),
        "bad_set_key": (["--config", str(TINY), "--set", "optim.lrr=0.1"], f"error: {TINY}: optim.lrr: "),
        "set_without_equals": (["--config", str(TINY), "--set", "optim.lr"], "error: --set: optim.lr: "),
        "set_malformed_yaml": (["--config", str(TINY), "--set", "optim.betas=[0.9,"], "error: --set: optim.betas: "),
        "bad_flag": (["--config", str(TINY), "--bogus"], "error: command line: arguments: "),
        "bad_int_flag": (["--config", str(TINY), "--max-steps", "abc"], "error: command line: arguments: "),
        "zero_max_steps": (["--config", str(TINY), "--max-steps", "0"], "error: --max-steps: 0: "),
        "unknown_curriculum": (["--config", str(TINY), "--curriculum", "nonesuch"], "error: nonesuch: curriculum: "),
        "stage_with_no_steps": (["--config", str(TINY), "--curriculum", str(zero)], f"error: {zero}: stages[0].steps: "),
        "intro_after_last_step": (["--config", str(TINY), "--curriculum", str(late), "--max-steps", "400"],
                                  f"error: {late}: spectrum.intro_step: "),
        "missing_init_from": (["--config", str(TINY), "--init-from", str(tmp_path / "no.pt")],
                              f"error: {tmp_path / 'no.pt'}: --init-from: "),
    }


CLI_CASES = [
    "unknown_key", "wrong_type", "float_for_int", "malformed_yaml", "missing_file", "bad_set_value", "bad_set_key",
    "set_without_equals", "set_malformed_yaml", "bad_flag", "bad_int_flag", "zero_max_steps", "unknown_curriculum",
    "stage_with_no_steps", "intro_after_last_step", "missing_init_from",
]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = _bad_cli_cases(tmp_path)
    assert sorted(cases) == sorted(CLI_CASES)
    args, prefix = cases[case]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    assert not (out / "metrics.csv").exists()
    assert not (out / "checkpoints").exists()


# Two processes in parallel (about 3 s): a bad config file and a bad --set value; the in-process test
# above covers every case, these show that the real entry point prints no traceback.
SUBPROCESS_CASES = ["unknown_key", "set_malformed_yaml"]


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, str, Path]]:
    """Bad inputs through the real ``python -m model.train``, run side by side to save time."""
    tmp = tmp_path_factory.mktemp("cli")
    cases = _bad_cli_cases(tmp)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    for name in SUBPROCESS_CASES:
        args, prefix = cases[name]
        out = tmp / f"out_{name}"
        cmd = [sys.executable, "-m", "model.train", *args, "--out", str(out)]
        procs[name] = (subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True), prefix, out)
    results = {}
    for name, (proc, prefix, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), prefix, out)
    return results


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_cli_subprocess_exits_2_without_traceback(case: str, subprocess_results) -> None:
    result, prefix, out = subprocess_results[case]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix)
    assert not out.exists()


# --- the CLI's overrides ----------------------------------------------------------------------------------------


def test_cli_overrides_reach_the_config(tmp_path: Path) -> None:
    args = parse_args(["--config", "tiny", "--set", "model.dim=64", "--set", "optim.lr=5e-4",
                       "--set", "wandb.tags=[a, b]", "--seed", "7", "--max-steps", "1000", "--out", str(tmp_path)])
    cfg, curriculum, out = build_run(args)
    assert (cfg.model.dim, cfg.optim.lr, cfg.wandb.tags, cfg.seed) == (64, 5e-4, ["a", "b"], 7)
    assert cfg.optim.max_steps == 1000 and cfg.optim.warmup_steps == load_config("tiny").optim.warmup_steps
    assert curriculum.name == "clean_ce" and curriculum.total_steps == 1000
    assert out == tmp_path


def test_cli_short_run_gets_a_warmup_that_fits() -> None:
    """--max-steps below the preset's warm-up (tiny: 100) must shorten the warm-up, not fail validation."""
    cfg, _, _ = build_run(parse_args(["--config", "tiny", "--max-steps", "20"]))
    assert cfg.optim.max_steps == 20
    assert 0 <= cfg.optim.warmup_steps <= 20
    # an explicit warm-up is the user's word and is checked as given
    cfg, _, _ = build_run(parse_args(["--config", "tiny", "--max-steps", "20", "--set", "optim.warmup_steps=5"]))
    assert cfg.optim.warmup_steps == 5
    with pytest.raises(InputError) as info:
        build_run(parse_args(["--config", "tiny", "--max-steps", "20", "--set", "optim.warmup_steps=50"]))
    assert info.value.key == "optim.warmup_steps"


def test_cli_refuses_resume_with_init_from(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(InputError):
        build_run(parse_args(["--config", "tiny", "--resume", "--init-from", str(ckpt)]))
