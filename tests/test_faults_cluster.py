"""The main job and dead clusters: without RAY_ADDRESS or --address it starts its own local Ray (never the
last cluster that Ray's temp dir remembers, which may be dead); an address where nothing answers fails
within seconds with one line that names the address and the fix, exit 2, nothing written."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(Path(__file__).parent))
from fault_search import SPACE  # noqa: E402


def _dead_address() -> str:
    with socket.socket() as s:  # a port that nothing listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "--address"])
def test_an_address_that_does_not_answer_fails_fast_with_one_line(ray_head, tmp_path, how):
    address = _dead_address()
    env = {k: v for k, v in ray_head.env.items() if k != "RAY_ADDRESS"}
    args = ["--space", "quickstart", "--storage", str(tmp_path / "results")]
    if how == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address
    else:
        args += ["--address", address]
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "search.run", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    elapsed = time.time() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {how}: {address}: no Ray cluster answers there")
    assert "ray start --head" in lines[0] and "unset" in lines[0]
    assert elapsed < 30, elapsed
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_dead_cluster_in_rays_temp_dir_is_not_joined(ray_head, tmp_path):
    """What a killed ``ray start --head`` leaves: its address in ``<temp>/ray/ray_current_cluster``. Ray's
    ``init()`` would retry it for minutes; the main job starts a local Ray of its own instead."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))  # short: Ray's socket paths have a limit
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(_dead_address())
    space = {**SPACE, "named": {"curricula": ["original"], "scale": 0.0004}, "seeds": [0],
             "searcher": {**SPACE["searcher"], "num_samples": 0}, "scheduler": {"type": "fifo"},
             "search": {}, "curriculum": {}}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    env = {k: v for k, v in ray_head.env.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), FAULT_STEP_S="0")
    start = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "fault_search.py"), "--space", str(path),
                           "--storage", str(tmp_path / "results"), "--no-report"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    print(f"a search of one trial on its own local Ray: {time.time() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 trials" in proc.stdout
