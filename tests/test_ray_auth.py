"""The main job's embedded local Ray starts silently: Ray 2.60's ray.init() warns "Token authentication is
enabled for this Ray cluster" whenever RAY_AUTH_MODE is unset, so ``search.run.init_ray`` says it first.

The ``ray job submit`` path is tests/test_search_run.py's end-to-end test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = """
import logging, os
from search.run import init_ray, setup_logging
from search.space import load_space
setup_logging()
init_ray(load_space("quickstart", smoke=True))
import ray
print("auth mode:", os.environ.get("RAY_AUTH_MODE"), "cpus:", ray.cluster_resources().get("CPU"))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.isolated  # alone, before the suite: the suite's own Ray head breaks its token (see .ci/run)
def test_embedded_local_ray_starts_without_a_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "auth mode: disabled cpus:" in result.stdout  # an embedded Ray of our own: no other client
    output = result.stdout + result.stderr
    assert "Token authentication" not in output and "WARNING" not in output, output
