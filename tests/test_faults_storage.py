"""Fault 5, before anything starts: storage that cannot be written is refused with one line, exit 2, before
Ray starts (a full disk mid-search: ``test_faults_search.py``)."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import REPO, tmpfs


def _search(storage: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "search.run", "--space", "quickstart", "--storage", storage],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return proc, time.time() - start


def test_read_only_storage_is_refused_before_ray_starts(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        proc, elapsed = _search(str(mount / "results"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {mount / 'results'}: --storage: {mount} cannot be written to "
                                        "(read-only or no permission); give a --storage folder this user can write"]
    assert elapsed < 30


def test_a_file_as_storage_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc, _ = _search(str(tmp_path / "file" / "results"))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "is not a folder" in proc.stderr
