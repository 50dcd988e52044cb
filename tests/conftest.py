"""Shared fixtures for the search tests: one local Ray head node for the whole session.

The head runs ``ray start --head --block`` on free ports with its own temp dir, so it cannot clash
with another Ray on the machine; it is stopped by its own process id at the end (``ray stop`` would
stop every Ray on the machine). CLI runs reach it through ``RAY_ADDRESS``; in-process tests connect
the pytest process to it as a driver (``ray_driver``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Ray reads its auth mode once, when it first loads: a client of a head node that uses token auth
# (every head, once ~/.ray/auth_token exists) must say so before any test imports ray (DESIGN section 5).
os.environ.setdefault("RAY_AUTH_MODE", "token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self) -> None:
        self.port, self.dashboard_port = _free_port(), _free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a limit
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        bin_dir = str(Path(sys.executable).parent)
        # Clients need RAY_AUTH_MODE=token once ~/.ray/auth_token exists (DESIGN section 5).
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token",
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
        self.env.pop("RAY_ADDRESS", None)
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
               f"--port={self.port}", f"--dashboard-port={self.dashboard_port}",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
               "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=2",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        self.log = open(Path(self.temp_dir) / "head.log", "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        self._wait_up()

    def _wait_up(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(Path(self.temp_dir) / 'head.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=1)
                return
            except urllib.error.HTTPError:  # 401 under token auth: the dashboard is up
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the Ray head did not come up")

    def client_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, "RAY_ADDRESS": self.address, **extra}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # ray start drains the node and stops what it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session only
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head():
    head = RayHead()
    yield head
    head.stop()


@pytest.fixture(scope="session")
def ray_driver(ray_head):
    """The pytest process as a Ray driver on the session's head node, for in-process Tuner runs."""
    import ray

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    ray.init(address=ray_head.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def run_search(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m search.run ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "search.run", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of small-tensor tests; the previous count is given back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A real tmpfs at ``mount`` (root only; the test is skipped elsewhere), unmounted afterwards."""
    mount.mkdir(exist_ok=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
