"""Faults 1 and 5, against an uninterrupted search of the same seed.

The driver SIGKILLed while trials start, mid-training (right after ASHA asked a trial to stop) and while
the report is written; the storage filling up mid-search (a small tmpfs). After ``--resume`` each search
ends with the trials of the uninterrupted one, none lost, none run twice, with the same ASHA stops and the
same Optuna trials.

Scripted trials (``tests/fault_search.py``) make every value a function of configuration, seed and step;
they run one at a time, so ASHA's decisions depend only on the order of trials, which the searcher fixes.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tmpfs

from search.layout import TRIALS_JSON

sys.path.insert(0, str(Path(__file__).parent))
from fault_search import SPACE  # noqa: E402

DRIVER = [sys.executable, str(REPO / "tests" / "fault_search.py")]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """The scripted search in its own process; its output goes to ``log`` (a pipe left unread could block)."""
    with open(log, "a") as out:
        return subprocess.Popen([*DRIVER, *args, "--live-interval", "60"], env=env, cwd=REPO, text=True,
                                stdout=out, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def result_rows(exp: Path) -> int:
    return sum(len(Path(p).read_text().splitlines()) for p in glob.glob(str(exp / "*" / "result.json")))


def kill_when(driver: subprocess.Popen, ready: Callable[[], bool], exp: Path, log: Path,
              timeout: float = 300) -> float | None:
    """SIGKILL the driver once ``ready()``; returns seconds from now to the first new evaluation meanwhile."""
    t0, rows, progress = time.time(), result_rows(exp), None
    while not ready():
        if progress is None and result_rows(exp) > rows:
            progress = time.time() - t0
        if driver.poll() is not None:
            pytest.fail(f"the driver ended before the moment to kill it:\n{tail(log)}")
        if time.time() - t0 > timeout:
            driver.kill()
            pytest.fail("the search never reached the moment to kill it")
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    return progress


def outcome(exp: Path) -> dict:
    """What a search decided, keyed by what it ran (configuration and seed), not by Ray's trial ids."""
    trials = read_json(exp / TRIALS_JSON)
    runs = {}
    for entry in trials.values():
        params = read_json(exp / entry["trial_dir"] / "params.json")
        key = (params["config_id"], params["seed"])
        assert key not in runs, f"configuration {key} ran twice"
        runs[key] = (params["label"], json.dumps(params["params"], sort_keys=True), entry["status"],
                     entry["stopped_at_step"], entry["last_step"])
    with open(sorted(glob.glob(str(exp / "searcher-state-*.pkl")))[-1], "rb") as f:
        study = pickle.loads(pickle.load(f)["inner"])["_ot_study"]
    told = [(t.number, t.params, t.state.name, round(t.value, 6) if t.value is not None else None,
             sorted(t.intermediate_values.items())) for t in study.trials]
    return {"trials": runs, "optuna": told}


@pytest.fixture(scope="module")
def uninterrupted(ray_head, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    space = tmp / "faults.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    log = tmp / "driver.log"
    driver = start(["--space", str(space), "--storage", str(tmp / "results")], ray_head.client_env(), log)
    assert driver.wait(timeout=400) == 0, tail(log)
    return outcome(tmp / "results" / "faults")


def stopped_after_snapshot(exp: Path) -> bool:
    """A trial that Ray's last experiment snapshot knows has just been asked to stop (its STOP file): killed
    now, the snapshot restores it as running, and only the scheduler's own record says it was stopped."""
    snapshots = sorted(glob.glob(str(exp / "experiment_state-*.json")))
    known = Path(snapshots[-1]).read_text() if snapshots else ""
    return any(Path(p).parent.name.split("_")[0] in known for p in glob.glob(str(exp / "*" / "STOP")))


@pytest.mark.slow
def test_driver_killed_three_times_resumes_to_the_uninterrupted_search(uninterrupted, ray_head, tmp_path):
    expected = uninterrupted["trials"]
    assert sorted(s for _, _, s, _, _ in expected.values()).count("stopped") == 5  # the script's design
    assert expected[(3, 0)][2] == "completed" and expected[(3, 1)][2:4] == ("stopped", 10)
    space = tmp_path / "faults.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    exp = tmp_path / "results" / "faults"
    args = ["--space", str(space), "--storage", str(tmp_path / "results")]
    env = ray_head.client_env(FAULT_STEP_S="0.8")  # trials long enough to be in a snapshot when stopped
    moments = {  # in the order they come in one search
        "trials start": lambda: bool(read_json(exp / TRIALS_JSON)),
        "mid-training, right after a STOP file": lambda: stopped_after_snapshot(exp),
        "report being written": lambda: (exp / "report").is_dir(),
    }
    recovery = {}
    log = tmp_path / "driver.log"
    driver = start(args, env, log)
    first = None
    for moment, ready in moments.items():
        progress = kill_when(driver, ready, exp, log)
        if first is not None:
            recovery[first] = round(progress, 1) if progress is not None else None
        first = moment
        driver = start([*args, "--resume"], env, log)
    restart = time.time()
    assert driver.wait(timeout=400) == 0, tail(log)
    recovery[first] = round(time.time() - restart, 1)  # nothing left to train: to the end of the driver
    got = outcome(exp)
    print(f"seconds from the restart to the first new evaluation: {recovery}")
    assert got["trials"] == expected
    assert got["optuna"] == uninterrupted["optuna"]
    assert read_json(exp / "search.json")["status"] == "finished"
    assert (exp / "report" / "ranking.md").is_file()
    known = {e["trial_dir"] for e in read_json(exp / TRIALS_JSON).values()}
    assert {p.name for p in exp.iterdir() if (p / "params.json").is_file()} == known  # the lost set aside


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only); unmounted at the end."""
    with tmpfs(tmp_path / "disk", "size=3m") as mount:
        yield mount


@pytest.mark.slow
def test_a_full_disk_stops_the_search_with_one_line_and_resume_finishes_it(uninterrupted, ray_head, small_disk,
                                                                           tmp_path):
    space = tmp_path / "faults.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    exp = small_disk / "faults"
    args = [*DRIVER, "--space", str(space), "--storage", str(small_disk), "--live-interval", "60"]
    # 300 kB checkpoints, one a second: 3 MiB fill up after three or four trials.
    env = ray_head.client_env(FAULT_STEP_S="1", FAULT_CKPT_BYTES="300000")
    full = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-2000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {exp}: storage: only ") and "--resume" in errors[0]
    assert full.stderr.rstrip().endswith(errors[0])  # the last word, no traceback after it
    # Everything written stays readable: Ray's snapshot, the searcher's, the index, every result row.
    for path in [*exp.glob("experiment_state-*.json"), exp / "search.json", exp / "trials.json",
                 exp / "scheduler-state.json", *exp.glob("*/result.json")]:
        for line in [path.read_text()] if path.suffix == ".json" and path.name != "result.json" else \
                path.read_text().splitlines():
            json.loads(line)
    for path in exp.glob("searcher-state-*.pkl"):
        pickle.loads(path.read_bytes())
    done = read_json(exp / TRIALS_JSON)
    assert 0 < len(done) < 8 and read_json(exp / "search.json")["status"] == "interrupted"
    free = os.statvfs(small_disk)
    print(f"stopped with {free.f_bavail * free.f_frsize / 2**20:.2f} MiB free, {len(done)} trials started")

    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)  # space freed
    start = time.time()
    resumed = subprocess.run([*args, "--resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    print(f"resumed to the end in {time.time() - start:.0f} s")
    got = outcome(exp)
    assert got["trials"] == uninterrupted["trials"] and got["optuna"] == uninterrupted["optuna"]
