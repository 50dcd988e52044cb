"""``trainer.command`` in a space: the shipped dogfood space mirrors quickstart, placeholders fill and
quote, and every bad command section is one line naming the key, before Ray starts (no Ray here)."""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from model.curriculum import curriculum_from_dict, load_curriculum
from model.errors import InputError
from search.command_spec import placeholders, render
from search.space import SPACE_DIR, load_space

REPO = Path(__file__).resolve().parent.parent
STRANGER = Path(__file__).resolve().parent / "stranger_trainer.py"

GOOD = {
    "name": "byot",
    "trainer": {
        "command": "{python} stranger_trainer.py --curriculum {curriculum} --out {trial_dir} --seed {seed} "
                   "--steps {max_steps} --eval-every {eval_interval} {resume:--resume}",
        "metrics": "log.jsonl",
        "steps": {"max_steps": 400, "eval_interval": 50},
        "workdir": str(STRANGER.parent),
        "metric_names": {"iter": "step", "acc": "val/token_accuracy"},
    },
    "curriculum": {"stages": [{"name": "a", "steps": 400, "min_length": 7, "max_length": 10}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1}},
    "search": {"spectrum.intro_step": {"dist": "qrandint", "low": 20, "high": 300, "q": 10}},
    "searcher": {"num_samples": 3},
    "scheduler": {"type": "asha", "grace_period": 100},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def changed(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def set_pairs(argv: list[str]) -> dict[str, object]:
    return {k: yaml.safe_load(v) for k, v in (argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--set")}


def test_the_dogfood_space_is_quickstart_with_the_trainer_as_a_command():
    quick, dog = load_space(SPACE_DIR / "quickstart.yaml"), load_space(SPACE_DIR / "quickstart_command.yaml")
    for attr in ("metric", "mode", "curriculum", "params", "constraints", "named", "searcher", "seeds", "scheduler",
                 "resources", "failure", "max_steps", "eval_interval"):
        assert getattr(dog, attr) == getattr(quick, attr), attr
    spec = dog.trainer.command
    values = {k: "x" for k in ("curriculum", "trial_dir", "seed", "experiment", "cpus", "python")}
    argv = shlex.split(render(spec.command, {**values, **{k: str(v) for k, v in spec.steps.items()}},
                              env={"WANDB_MODE": "offline", "WANDB_PROJECT": "p", "WANDB_RUN_ID": "r"}))
    # The command's trainer settings are quickstart's overrides, and its steps scale with the space.
    assert argv[1:5] == ["-m", "model.train", "--config", quick.trainer.preset]
    sets = set_pairs(argv)
    assert {k: v for k, v in sets.items() if k in quick.trainer.overrides} == quick.trainer.overrides
    assert Path(spec.workdir) == REPO
    for factor in (0.1, 1 / 15):
        q, d = load_space(SPACE_DIR / "quickstart.yaml", scale=factor), load_space(
            SPACE_DIR / "quickstart_command.yaml", scale=factor)
        assert d.trainer.command.steps == {"max_steps": q.trainer.overrides["optim.max_steps"],
                                           "warmup_steps": q.trainer.overrides["optim.warmup_steps"],
                                           "eval_interval": q.trainer.overrides["train.eval_interval"]}
        assert (d.max_steps, d.eval_interval, d.scheduler, d.curriculum) == (q.max_steps, q.eval_interval,
                                                                              q.scheduler, q.curriculum)
    smoke = load_space(SPACE_DIR / "quickstart_command.yaml", smoke=True)
    assert smoke.trainer.command.steps["eval_interval"] == 10 and smoke.max_steps == 40


def test_placeholders_fill_quote_and_keep_literal_braces():
    values = {"trial_dir": "/tmp/a dir/t1", "seed": "3"}
    template = "run --out {trial_dir} --seed={seed} {resume:--resume --from last} --json '{{\"a\": 1}}'"
    assert placeholders(template) == [("trial_dir", None), ("seed", None), ("resume", "--resume --from last")]
    fresh = shlex.split(render(template, values, quote=True))
    assert fresh == ["run", "--out", "/tmp/a dir/t1", "--seed=3", "--json", '{"a": 1}']
    again = shlex.split(render(template, values, resume=True, quote=True))
    assert again == ["run", "--out", "/tmp/a dir/t1", "--seed=3", "--resume", "--from", "last", "--json", '{"a": 1}']
    assert render("{env:HOME}/x", {}, env={"HOME": "/h"}) == "/h/x"
    with pytest.raises(KeyError, match="NOPE is not set"):
        render("{env:NOPE}", {}, env={})
    with pytest.raises(ValueError, match="unbalanced"):
        placeholders("run {seed")


def test_a_command_space_loads_with_its_own_steps(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    assert space.max_steps == 400 and space.scheduler.max_t == 400 and space.scheduler.grace_period == 100
    assert space.trainer.command.metric_names == {"iter": "step", "acc": "val/token_accuracy"}
    scaled = load_space(write(tmp_path, GOOD), scale=0.1)
    assert scaled.trainer.command.steps == {"max_steps": 40, "eval_interval": 5} and scaled.max_steps == 40
    assert scaled.params["spectrum.intro_step"].extent() == (2, 30)
    # A searched trainer setting reaches the command as its own placeholder.
    lr = changed(lambda d: (d["search"].update(lr={"dist": "loguniform", "low": 1e-4, "high": 1e-2}),
                            d["trainer"].update(command=d["trainer"]["command"] + " --lr {lr}")))
    assert "lr" in load_space(write(tmp_path, lr)).params


def command(text):
    return lambda d: d["trainer"].update(command=text)


BAD = [
    ("unknown placeholder", command("{python} x.py --out {trial_dir} --data {dataset}"), "trainer.command",
     "unknown placeholder {dataset}"),
    ("bare resume", command("{python} x.py {resume}"), "trainer.command", "{resume:TEXT}"),
    ("unbalanced", command("{python} x.py {seed"), "trainer.command", "unbalanced"),
    ("unclosed quote", command("{python} 'x.py"), "trainer.command", "quotation"),
    ("no such program", command("pyhton3 x.py"), "trainer.command", "not found on PATH"),
    ("no such script path", command("./nope.sh {seed}"), "trainer.command", "no program ./nope.sh"),
    ("preset too", lambda d: d["trainer"].update(preset="tiny"), "trainer.preset", "command line"),
    ("no max_steps", lambda d: d["trainer"].update(steps={"eval_interval": 50}), "trainer.steps.max_steps", "missing"),
    ("negative steps", lambda d: d["trainer"]["steps"].update(eval_interval=-5), "trainer.steps.eval_interval", ">= 0"),
    ("shared metrics", lambda d: d["trainer"].update(metrics="/tmp/metrics.csv"), "trainer.metrics", "every trial"),
    ("metrics format", lambda d: d["trainer"].update(metrics="{trial_dir}/m.parquet"), "trainer.metrics", ".jsonl"),
    ("metrics placeholder", lambda d: d["trainer"].update(metrics="{curriculum}.csv"), "trainer.metrics",
     "unknown placeholder {curriculum}"),
    ("unknown target", lambda d: d["trainer"]["metric_names"].update(acc="val/acc"), "trainer.metric_names.acc",
     "unknown name"),
    ("two to one", lambda d: d["trainer"]["metric_names"].update(acc2="val/token_accuracy"), "trainer.metric_names",
     "two columns"),
    ("no workdir", lambda d: d["trainer"].update(workdir="/nonexistent/repo"), "trainer.workdir", "not a directory"),
    ("timeout", lambda d: d["trainer"].update(metrics_timeout_s=0), "trainer.metrics_timeout_s", "> 0"),
    ("env name", lambda d: d["trainer"].update(env={"BAD-NAME": "1"}), "trainer.env.BAD-NAME", "not a valid"),
    ("setting not passed", lambda d: d["search"].update(lr={"dist": "uniform", "low": 0.1, "high": 0.2}),
     "search.lr", "put {lr} in trainer.command"),
    ("intro past max_steps", lambda d: d["trainer"]["steps"].update(max_steps=200), "search.spectrum.intro_step.high",
     "not before the last step"),
]


@pytest.mark.parametrize("case, change, key, text", BAD, ids=[b[0] for b in BAD])
def test_bad_command_section_names_file_and_key(tmp_path, case, change, key, text):
    path = write(tmp_path, changed(change))
    with pytest.raises(InputError) as err:
        load_space(path)
    assert err.value.file == str(path) and err.value.key == key and text in err.value.message, str(err.value)


def test_cli_unknown_placeholder_exits_2_with_one_line_before_ray(tmp_path):
    space = write(tmp_path, changed(command("{python} x.py --out {trial_dir} {curiculum}")))
    storage = tmp_path / "results"
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "search.run", "--space", str(space), "--storage", str(storage)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {space}: trainer.command: unknown placeholder {{curiculum}}; allowed: ")
    assert not storage.exists() and time.time() - start < 30


def documented_reader() -> tuple[str, dict]:
    """The Python block of docs/curriculum_schema.md: its source, and what it defines."""
    doc = (REPO / "docs" / "curriculum_schema.md").read_text()
    source = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    namespace: dict = {}
    exec(source, namespace)
    return source, namespace


def test_curriculum_yaml_round_trips_through_the_documented_reader(tmp_path):
    """The reader of docs/curriculum_schema.md agrees with Curriculum.at at every step, both forms and a gate;
    the stranger's trainer holds it word for word."""
    source, reader = documented_reader()
    function = source[source.index("def curriculum_at"):]
    assert len(function.splitlines()) <= 22 and function in STRANGER.read_text()
    parametric = {"name": "p", "stages": [{"name": "a", "steps": 30, "min_length": 7, "max_length": 10},
                                          {"name": "b", "steps": 30, "min_length": 8, "max_length": 14,
                                           "noise_peaks": 3}],
                  "spectrum": {"intro_step": 12, "start_weight": 0.03, "final_weight": 0.17, "ramp_steps": 7},
                  "precursor": {"intro_accuracy": 0.6, "start_weight": 0.01, "final_weight": 0.05, "ramp_steps": 9}}
    for curriculum in (curriculum_from_dict(parametric, "test"), load_curriculum("revised").scaled(0.001)):
        path = tmp_path / f"{curriculum.name}.yaml"
        path.write_text(curriculum.to_yaml())
        read = yaml.safe_load(path.read_text())
        assert curriculum_from_dict(read, path) == curriculum
        for step in range(0, curriculum.total_steps + 5):
            gates = {"precursor": 20} if step >= 20 else {}
            ours, theirs = curriculum.at(step, gates), reader["curriculum_at"](read, step, gates)
            assert theirs == {"stage": ours.stage, "min_length": ours.min_length, "max_length": ours.max_length,
                              "noise_peaks": ours.noise_peaks, "spectrum_weight": ours.spectrum_weight,
                              "precursor_weight": ours.precursor_weight}, step
