"""Fault 3: a second Ray node joins a running search on this machine, takes a trial, and is SIGKILLed.
The trial moves to the head node and finishes from its last checkpoint; nothing else is disturbed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, _free_port

sys.path.insert(0, str(Path(__file__).parent))
from fault_search import SPACE  # noqa: E402

from model import names  # noqa: E402

SEEDS = list(range(8))
EIGHT = {**SPACE, "named": {"curricula": ["original"], "scale": 0.0004}, "seeds": SEEDS,
         "searcher": {**SPACE["searcher"], "num_samples": 0, "max_concurrent": 3}, "scheduler": {"type": "fifo"},
         "search": {}, "curriculum": {}, "failure": {"max_failures": 3, "num_to_keep": 2}}


def rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def session_pids(sid: int) -> set[int]:
    """Processes of one session: the node we started and every process it started."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == sid:
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_killed_second_node_hands_its_trial_back_to_the_head(ray_head, tmp_path):
    path = tmp_path / "eight.yaml"
    path.write_text(yaml.safe_dump(EIGHT, sort_keys=False))
    exp = tmp_path / "results" / "faults"
    # 12 s a trial, two at a time on the head's two CPUs: a minute of work, time for a node to join mid-search.
    env = ray_head.client_env(FAULT_STEP_S="3")
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, str(REPO / "tests" / "fault_search.py"), "--space", str(path),
                               "--storage", str(tmp_path / "results"), "--live-interval", "60", "--no-report"],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    node = None
    try:
        deadline = time.time() + 300
        while not list(exp.glob("*_original_s*")):  # the search runs
            assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.2)
        # Trials wait for the head's two CPUs; a node with one more joins (with its own resources) and takes one.
        ports = [f"--{flag}={_free_port()}" for flag in ("node-manager-port", "object-manager-port",
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port")]
        node = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={ray_head.address}",
                                 "--num-cpus=1", '--resources={"second_node": 1}', "--block", *ports],
                                env=ray_head.env, cwd=REPO, stdout=open(tmp_path / "node.log", "w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        joined = time.time()
        moved, node_pids = None, set()
        while moved is None:
            assert node.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
            assert driver.poll() is None and time.time() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
            node_pids = session_pids(node.pid)
            for trial_dir in exp.glob("*_original_s*"):
                history = rows(trial_dir)
                if history and history[-1]["pid"] in node_pids:  # a checkpointed row from the second node
                    moved = trial_dir
            time.sleep(0.2)
        print(f"the node took a trial {time.time() - joined:.0f} s after it was started")
        killed_at = rows(moved)[-1][names.STEP]
        for pid in sorted(session_pids(node.pid)):  # the node and its workers, by id, all ours
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.wait(timeout=30)
        t_kill, recovery = time.time(), None
        while driver.poll() is None:
            if recovery is None and sum(r["iterations_since_restore"] == 1 for r in rows(moved)) == 2:
                recovery = time.time() - t_kill
            assert time.time() < deadline + 300, "the search did not end after the node died"
            time.sleep(0.2)
        assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
        if node is not None and node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)  # its own session only
        log.close()

    trials = json.loads((exp / "trials.json").read_text())
    assert len(trials) == len(SEEDS) and all(t["status"] == "completed" for t in trials.values()), trials
    history = rows(moved)
    restart = [r for r in history if r["iterations_since_restore"] == 1][1]
    assert restart[names.STEP] == killed_at + 10, [r[names.STEP] for r in history]  # from its checkpoint
    assert restart["pid"] not in node_pids and history[-1][names.STEP] == 40
    print(f"killed after step {killed_at}; restarted on the head from step {killed_at}, "
          f"{recovery:.1f} s from the kill to its next row")
