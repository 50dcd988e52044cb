"""The command trainer at run time. A stranger's trainer (tests/stranger_trainer.py) is searched under real
Ray and ASHA with real faults: ASHA's SIGTERM that it ignores (so SIGKILL follows), a SIGKILL from outside,
a planned failure, each resumed; its bad outputs end as one-line trial errors. This project's own trainer,
run as a command (spaces/quickstart_command.yaml), reports the in-process trainable's metrics bit for bit."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from model import names
from model.curriculum import curriculum_from_dict
from search.command import ERROR_TAIL, FATAL, LOG, Command, FatalCommandError, Follower
from search.layout import TRIALS_JSON
from search.space import SPACE_DIR, load_space, validate

TESTS = Path(__file__).resolve().parent
STRANGER = TESTS / "stranger_trainer.py"
COMMAND = ("{python} stranger_trainer.py --curriculum {curriculum} --out {trial_dir} --seed {seed} "
           "--steps {max_steps} --eval-every {eval_interval} {resume:--resume}")
STAGES = [{"name": "short", "steps": 20, "min_length": 7, "max_length": 10},
          {"name": "long", "steps": 20, "min_length": 7, "max_length": 12, "noise_peaks": 2}]
# Named curricula in the order they run: good and twin alike, poor far worse; the rest fail on purpose.
CURRICULA = {
    "good": {"spectrum": {"intro_step": 10, "start_weight": 0.02, "final_weight": 0.05, "ramp_steps": 10}},
    "twin": {"spectrum": {"intro_step": 10, "start_weight": 0.02, "final_weight": 0.05, "ramp_steps": 10}},
    "crash": {}, "nostep": {}, "silent": {},
    "poor": {"spectrum": {"intro_step": 0, "start_weight": 0.9, "final_weight": 0.9}},
}
FAULTS = {"STRANGER_STEP_S": "0.05", "STRANGER_FAIL_ONCE": "good@20", "STRANGER_IGNORE_TERM": "poor",
          "STRANGER_CRASH": "crash", "STRANGER_NO_STEP": "nostep", "STRANGER_SILENT": "silent"}


def stranger_space(tmp_path: Path) -> dict:
    named = []
    for name, schedules in CURRICULA.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "stages": STAGES, **schedules}))
        named.append(str(path))
    return {
        "name": "stranger",
        "trainer": {"command": COMMAND, "metrics": "log.jsonl", "steps": {"max_steps": 40, "eval_interval": 10},
                    "workdir": str(TESTS), "env": FAULTS, "metrics_timeout_s": 5, "stop_grace_s": 1,
                    "metric_names": {"iter": "step", "acc": names.VAL_RESIDUE_ACCURACY, "loss": names.TRAIN_LOSS}},
        "named": {"curricula": named},
        "searcher": {"num_samples": 0, "max_concurrent": 2},
        "scheduler": {"type": "asha", "max_t": 40, "grace_period": 20, "reduction_factor": 2},
        "failure": {"max_failures": 1},
        "wandb": {"mode": "disabled"},
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").is_dir() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def rows(trial_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (trial_dir / "result.json").read_text().splitlines() if x.strip()]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_follower_reads_each_complete_row_once(tmp_path):
    path = tmp_path / "m.jsonl"
    follower = Follower(path, {"iter": "step", "acc": names.VAL_ACCURACY}, names.VAL_ACCURACY)
    assert follower.new_rows() == []
    path.write_text('{"iter": 10, "acc": 0.5, "note": "warm"}\n{"iter": 20, "ac')
    got = follower.new_rows()
    assert [r[names.STEP] for r in got] == [10] and got[0][names.VAL_ACCURACY] == 0.5
    assert got[0]["note"] == names.MISSING and got[0][names.VAL_PEPTIDE_RECALL] == names.MISSING
    path.write_text('{"iter": 10, "acc": 0.5}\n{"iter": 20, "acc": 0.25}\n{"iter": 10, "acc": 0.5}\n'
                    '{"iter": 20, "acc": 0.25}\n{"iter": 30, "acc": NaN}')  # a resumed trainer appends again
    assert [r[names.STEP] for r in follower.new_rows()] == [20]
    last = follower.new_rows(complete=True)  # the writer exited: its last line counts without a newline
    assert [r[names.STEP] for r in last] == [30] and last[0][names.VAL_ACCURACY] == names.MISSING
    assert last[0]["search/diverged"] == 1.0  # a non-finite metric marks the trial diverged

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(f"step,{names.VAL_ACCURACY},{names.STEPS_TO_90}\n10,0.125,\n20,0.5,20\n")
    follower = Follower(csv_path, {}, names.VAL_ACCURACY, last_step=10)  # restored: step 10 was reported
    (row,) = follower.new_rows()
    assert row[names.STEP] == 20 and row[names.VAL_ACCURACY] == 0.5 and row[names.STEPS_TO_90] == 20.0


@pytest.mark.parametrize("text, message", [
    ('{"it": 10, "acc": 0.5}\n', "row 1 has no 'step' column (it has: it, acc)"),
    ('{"iter": 10, "accuracy": 0.5}\n', f"no column for the search's metric {names.VAL_ACCURACY}"),
    ('{"iter": 10.5, "acc": 0.5}\n', "step must be a whole number"),
    ('[10, 0.5]\n', "line 1: expected a JSON object"),
])
def test_follower_rejects_rows_it_cannot_use(tmp_path, text, message):
    path = tmp_path / "m.jsonl"
    path.write_text(text)
    with pytest.raises(FatalCommandError) as err:
        Follower(path, {"iter": "step", "acc": names.VAL_ACCURACY}, names.VAL_ACCURACY).new_rows()
    assert message in str(err.value) and "\n" not in str(err.value)


def start_stranger(tmp_path: Path, name: str, **env: str) -> tuple[Command, Path]:
    cur = tmp_path / f"{name}.yaml"
    cur.write_text(yaml.safe_dump({"name": name, "stages": STAGES}))
    out = tmp_path / name
    argv = [sys.executable, str(STRANGER), "--curriculum", str(cur), "--out", str(out), "--steps", "4000",
            "--eval-every", "1"]
    command = Command(argv, str(TESTS), {**os.environ, "STRANGER_STEP_S": "0.01", **env}, tmp_path / f"{name}.log",
                      resume=False)
    wait_for(lambda: (out / "log.jsonl").is_file())
    return command, out


def test_stop_is_sigterm_then_sigkill_after_the_grace_period(tmp_path):
    polite, _ = start_stranger(tmp_path, "polite")
    assert polite.stop(grace_s=10) == 0 and "SIGTERM at step" in "\n".join(polite.tail())
    stubborn, _ = start_stranger(tmp_path, "stubborn", STRANGER_IGNORE_TERM="stubborn")
    start = time.monotonic()
    assert stubborn.stop(grace_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - start >= 0.5 and stubborn.tail()[-1] == "stranger: ignoring SIGTERM"
    for command in (polite, stubborn):
        command.close()
    with pytest.raises(FileNotFoundError):  # the trial turns this into a one-line configuration error
        Command([str(tmp_path / "no-such-trainer")], str(tmp_path), dict(os.environ), tmp_path / "x.log", False)


def test_the_command_dies_with_the_process_that_started_it(tmp_path):
    """A trial's worker killed outright (SIGKILL) takes its command with it: no orphan holds a GPU."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from test_command import start_stranger; "
            "from pathlib import Path; start_stranger(Path(sys.argv[2]), 'orphan'); print('up', flush=True); "
            "time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(TESTS), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": f"{TESTS}:{REPO}"})
    assert parent.stdout.readline().strip() == "up"
    pid = int((tmp_path / "orphan" / "pid").read_text())
    assert alive(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    wait_for(lambda: not alive(pid), timeout=10)


@pytest.fixture(scope="module")
def stranger_search(ray_driver, tmp_path_factory):
    """One search of the stranger's trainer with every fault; returns (experiment dir, trials by name)."""
    from search.run import build_tuner

    tmp = tmp_path_factory.mktemp("stranger")
    path = tmp / "stranger.yaml"
    path.write_text(yaml.safe_dump(stranger_space(tmp), sort_keys=False))
    space = load_space(path)
    exp = tmp / "results" / "stranger"
    killed: list[int] = []

    def kill_twin_midway() -> None:  # SIGKILL from outside, once the twin has evaluated step 20
        deadline = time.time() + 300
        while not killed and time.time() < deadline:
            for log in exp.glob("*/log.jsonl"):
                if "twin" in (log.parent / "curriculum.yaml").read_text() and '"iter": 20' in log.read_text():
                    pid = int((log.parent / "pid").read_text())
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_twin_midway, daemon=True)
    killer.start()
    start = time.time()
    build_tuner(space, "stranger", str(tmp / "results"), exp, live_interval=5).fit()
    print(f"stranger search: {time.time() - start:.1f} s")
    killer.join(timeout=1)
    assert killed, "the twin was never killed"
    trials = json.loads((exp / TRIALS_JSON).read_text())
    return exp, {Path(t["label"]).stem: {**t, "dir": exp / t["trial_dir"]} for t in trials.values()}


def attempts(trial: dict) -> list[str]:
    return [line for line in (trial["dir"] / LOG).read_text().splitlines() if line.startswith("=== ")]


@pytest.mark.slow
def test_stranger_is_searched_stopped_killed_and_resumed(stranger_search):
    exp, trials = stranger_search
    assert {n: t["status"] for n, t in trials.items()} == {
        "good": "completed", "twin": "completed", "poor": "stopped", "crash": "errored", "nostep": "errored",
        "silent": "errored"}
    for name in ("good", "twin"):  # failed once / killed once, resumed from its checkpoint, every row once
        trial = trials[name]
        starts = attempts(trial)
        assert len(starts) == 2 and "--resume" not in starts[0] and starts[1].endswith("--resume"), starts
        assert "resumed" in starts[1] and "stranger: resumed at step" in (trial["dir"] / LOG).read_text()
        assert [r[names.STEP] for r in rows(trial["dir"])] == [10, 20, 30, 40]
    assert "RuntimeError: planned failure at step 20" in (trials["good"]["dir"] / ERROR_TAIL).read_text()
    run_id = trials["good"]["dir"].name.split("_")[0]  # the trial id: the same W&B run when resumed
    env = (f"stranger: env CUDA_VISIBLE_DEVICES='' OMP_NUM_THREADS='1' WANDB_MODE='disabled' "
           f"WANDB_RUN_GROUP='stranger' WANDB_RUN_ID='{run_id}'")
    assert (trials["good"]["dir"] / LOG).read_text().count(env) == 2  # a CPU trial sees no GPU
    assert "the trainer command was killed by SIGKILL at step" in (trials["twin"]["dir"] / "error.txt").read_text()
    # ASHA stopped poor at its first rung; it ignored SIGTERM, so SIGKILL ended it.
    poor = trials["poor"]
    assert poor["stopped_at_step"] == 20 and [r[names.STEP] for r in rows(poor["dir"])] == [10, 20]
    assert "stranger: ignoring SIGTERM" in (poor["dir"] / LOG).read_text()
    assert not alive(int((poor["dir"] / "pid").read_text()))


@pytest.mark.slow
def test_stranger_rows_are_renamed_and_its_reader_applied_the_curriculum(stranger_search):
    _, trials = stranger_search
    for name in ("good", "poor"):
        params = json.loads((trials[name]["dir"] / "params.json").read_text())
        curriculum = curriculum_from_dict(params["curriculum"], "params.json")
        for row in rows(trials[name]["dir"]):
            state = curriculum.at(row[names.STEP] - 1)  # the state of the last step trained
            assert (row["spec_w"], row["prec_w"], row["max_len"]) == (
                state.spectrum_weight, state.precursor_weight, state.max_length)
            assert 0 < row[names.VAL_RESIDUE_ACCURACY] < 1 and row[names.TRAIN_LOSS] > 0 and "acc" not in row
    good, poor = (rows(trials[n]["dir"])[1][names.VAL_RESIDUE_ACCURACY] for n in ("good", "poor"))
    assert poor < good


@pytest.mark.slow
def test_stranger_faults_are_one_line_errors_and_nothing_hangs(stranger_search):
    _, trials = stranger_search
    crash = trials["crash"]
    assert crash["error"] == "the trainer command exited with code 3 at step 0 of 40, 0 new rows in this attempt"
    tail = (crash["dir"] / ERROR_TAIL).read_text().splitlines()
    assert len(tail) == 20 and tail[-1] == "stranger: ValueError: shard 24 is corrupt" and tail[0].endswith("shard 6")
    assert len(attempts(crash)) == 2  # max_failures 1: started again once, with --resume
    nostep = trials["nostep"]
    assert nostep["error"].startswith(f"{nostep['dir'] / 'log.jsonl'}: row 1 has no 'step' column (it has: it, acc, "
                                      "loss, spec_w, prec_w, max_len); write one, or name yours in")
    assert len(attempts(nostep)) == 1 and (nostep["dir"] / FATAL).is_file()  # restarts fail at once
    silent = trials["silent"]
    assert silent["error"].startswith("trainer.metrics: ") and silent["error"].endswith("log.jsonl did not appear within 5 s of the command's start "
                                    "(trainer.metrics_timeout_s)")
    assert not alive(int((silent["dir"] / "pid").read_text())) and len(attempts(silent)) == 1


SMALL = {"train.eval_interval": 10}
SMALL_COMMAND = {"data.val_size=256": "data.val_size=32"}
TIMING = {names.ELAPSED_S, names.TRAIN_STEPS_PER_S, "search/report_s"}


def dogfood_pair():
    """quickstart.yaml and quickstart_command.yaml at 20 steps: one named and one searched curriculum."""
    out = []
    for file in ("quickstart.yaml", "quickstart_command.yaml"):
        space = load_space(SPACE_DIR / file, scale=20 / 400, num_samples=1)
        trainer = space.trainer
        if trainer.command is None:
            trainer = dataclasses.replace(trainer, overrides={**trainer.overrides, **SMALL})
        else:
            text = trainer.command.command
            for old, new in SMALL_COMMAND.items():
                assert text.count(old) == 1
                text = text.replace(old, new)
            steps = {**trainer.command.steps, "eval_interval": 10}
            trainer = dataclasses.replace(trainer, command=dataclasses.replace(trainer.command, command=text,
                                                                              steps=steps))
        out.append(validate(dataclasses.replace(
            space, trainer=trainer, validation=dataclasses.replace(space.validation, size=32), named=dataclasses.replace(space.named, curricula=["revised"]),
            scheduler=dataclasses.replace(space.scheduler, type="fifo"),
            wandb=dataclasses.replace(space.wandb, mode="disabled"))))
    return out


@pytest.mark.slow
def test_own_trainer_as_a_command_matches_the_in_process_trainable(ray_driver, tmp_path):
    from search.run import build_tuner

    by_mode = {}
    for space in dogfood_pair():
        name = space.name
        start = time.time()
        build_tuner(space, name, str(tmp_path), tmp_path / name, live_interval=30).fit()
        print(f"{name}: {time.time() - start:.1f} s")
        trials = json.loads((tmp_path / name / TRIALS_JSON).read_text())
        assert {t["status"] for t in trials.values()} == {"completed"}, trials
        by_config = {}
        for t in trials.values():
            trial_dir = tmp_path / name / t["trial_dir"]
            params = json.loads((trial_dir / "params.json").read_text())
            with open(trial_dir / "metrics.csv") as f:
                table = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
            reported = [{k: v for k, v in r.items() if k in {names.STEP, *names_all()} - TIMING}
                        for r in rows(trial_dir)]
            by_config[params["config_id"]] = (params["curriculum"], table, reported)
        by_mode[name] = by_config
    inproc, command = by_mode["quickstart"], by_mode["quickstart_command"]
    assert sorted(inproc) == sorted(command) == [0, 1]
    for config_id in inproc:
        assert command[config_id][0] == inproc[config_id][0]  # the same curriculum
        assert command[config_id][1] == inproc[config_id][1]  # metrics.csv, every value as written
        assert [r[names.STEP] for r in command[config_id][2]] == [10, 20]
        assert command[config_id][2] == inproc[config_id][2]  # what Ray got


def names_all() -> set[str]:
    return {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and "/" in v}
