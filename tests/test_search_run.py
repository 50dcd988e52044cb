"""End to end: one small search submitted with ``ray job submit`` to the session's local head node, the
real trainer in every trial; then the experiment it leaves is checked against the layout contract,
NaN safety, W&B offline runs and Optuna's trial states."""

from __future__ import annotations

import glob
import json
import math
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, run_search

from model import names
from search.trials import DIVERGED_KEY

METRICS = [v for k, v in vars(names).items()
           if k.isupper() and isinstance(v, str) and "/" in v and v != names.VAL_FINGERPRINT]
# Four grid points (intro at 10 or 20, losses NaN from step 12 or never) and one named curriculum.
E2E = {
    "name": "e2e",
    "trainer": {"preset": "tiny", "overrides": {
        "optim.max_steps": 40, "optim.warmup_steps": 4, "train.eval_interval": 10, "train.stop_at_accuracy": 0.0,
        "data.batch_size": 16, "data.val_size": 64, "train.max_nonfinite_streak": 3}},
    "curriculum": {"stages": [{"name": "short", "steps": 20, "min_length": 7, "max_length": 10},
                              {"name": "long", "steps": 20, "min_length": 7, "max_length": 12, "noise_peaks": 2}],
                   "spectrum": {"start_weight": 0.05, "final_weight": 0.1, "ramp_steps": 10}},
    "search": {"spectrum.intro_step": {"dist": "grid", "values": [10, 20]},
               "train.debug_nonfinite_from_step": {"dist": "grid", "values": [-1, 12]}},
    "named": {"curricula": ["original"], "scale": 0.0004},
    "searcher": {"algorithm": "grid", "max_concurrent": 2},
    "scheduler": {"type": "asha", "max_t": 40, "grace_period": 10, "reduction_factor": 2, "settle_steps": 5},
    "resources": {"cpu": 1, "gpu": 0},
    "wandb": {"mode": "offline", "project": "e2e-test"},
}


@pytest.fixture(scope="module")
def e2e(ray_head, tmp_path_factory):
    """Submit the search as a Ray job; returns (experiment dir, job output)."""
    tmp = tmp_path_factory.mktemp("e2e")
    space = tmp / "e2e.yaml"
    space.write_text(yaml.safe_dump(E2E, sort_keys=False))
    storage = tmp / "results"
    cmd = ["ray", "job", "submit", "--address", ray_head.dashboard, "--working-dir", str(REPO), "--",
           "python", "-m", "search.run", "--space", str(space), "--storage", str(storage), "--live-interval", "5"]
    env = {k: v for k, v in ray_head.env.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return storage / "e2e", proc.stdout


def results(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_job_submit_completes_with_live_view_ranking_and_report(e2e):
    exp, out = e2e
    assert "succeeded" in out
    assert "5 trials:" in out and "status" in out  # the live table
    assert f"top 5 of 5 by {names.VAL_RESIDUE_ACCURACY} (max)" in out and f"experiment: {exp}" in out
    meta = json.loads((exp / "search.json").read_text())
    assert meta["status"] == "finished" and meta["finished"]
    for key in ("name", "space_file", "metric", "mode", "searched", "max_t", "scheduler", "grace_period",
                "reduction_factor", "replicates", "resources", "status", "started", "finished"):
        assert key in meta
    assert meta["searched"] == ["spectrum.intro_step", "train.debug_nonfinite_from_step"]
    assert meta["scheduler"] == "asha" and meta["resources"] == {"cpu": 1.0, "gpu": 0.0}
    try:
        import search.report  # noqa: F401
    except ImportError:
        return
    assert "report: " in out and (exp / "report").is_dir()


@pytest.mark.slow
def test_layout_contract(e2e):
    exp, _ = e2e
    trials = json.loads((exp / "trials.json").read_text())
    assert len(trials) == 5
    for tid, entry in trials.items():
        assert set(entry) >= {"trial_dir", "label", "status", "stopped_at_step", "error"}
        assert entry["status"] in ("completed", "stopped", "diverged")
        trial_dir = exp / entry["trial_dir"]
        params = json.loads((trial_dir / "params.json").read_text())
        assert params["label"] == entry["label"] and params["seed"] == 0 and params["replicate"] == 0
        assert params["family"] in ("original", "searched")
        assert params["curriculum"]["stages"] and "curriculum" in params["params"]
        if params["family"] == "searched":
            assert {"spectrum.intro_step", "train.debug_nonfinite_from_step"} <= set(params["params"])
        assert entry["trial_dir"].startswith(tid) and "s0" in entry["trial_dir"]  # names say the curriculum
        rows = results(trial_dir)
        assert rows and [r[names.STEP] for r in rows] == sorted(r[names.STEP] for r in rows)
        for row in rows:
            for metric in METRICS:
                assert isinstance(row[metric], float) and math.isfinite(row[metric]), (metric, row[metric])
            if names.VAL_FINGERPRINT in row:  # a hex string, as the trainer gives it
                int(row[names.VAL_FINGERPRINT], 16)
        # The one validation set of the search: the hardest stage over the fixed stages (7-12, 2 noise
        # peaks) and the named curriculum original (7-14, 21 noise peaks).
        overrides = params["trainer"]["overrides"]
        assert (overrides["data.val_min_length"], overrides["data.val_max_length"],
                overrides["data.val_noise_peaks"], overrides["data.val_size"]) == (7, 14, 21, 64)
        assert (trial_dir / "metrics.csv").is_file()
        if entry["status"] == "stopped":
            assert entry["stopped_at_step"] in (10, 20, 30)
        else:
            assert entry["stopped_at_step"] is None
        if entry["status"] == "completed":
            assert rows[-1][names.STEP] == 40
            assert json.loads((trial_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_diverged_trials_end_themselves_with_a_finite_metric(e2e):
    exp, _ = e2e
    trials = json.loads((exp / "trials.json").read_text())
    diverged = [t for t in trials.values() if t["status"] == "diverged"]
    assert len(diverged) == 2
    for entry in diverged:
        params = json.loads((exp / entry["trial_dir"] / "params.json").read_text())
        assert params["params"]["train.debug_nonfinite_from_step"] == 12
        last = results(exp / entry["trial_dir"])[-1]
        assert last[DIVERGED_KEY] == 1.0 and last[names.NAN_COUNT] >= 3 and last[names.STEP] < 40
        assert math.isfinite(last[names.VAL_ACCURACY])
    others = [t for t in trials.values() if t["status"] != "diverged"]
    assert others and all(results(exp / t["trial_dir"])[-1][names.NAN_COUNT] == 0 for t in others)


def wandb_records(path: Path):
    """Records of a W&B transaction log (.wandb): a LevelDB-style log of protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


@pytest.mark.slow
def test_wandb_offline_run_per_trial_with_its_history(e2e):
    exp, _ = e2e
    trials = json.loads((exp / "trials.json").read_text())
    run_ids = set()
    for entry in trials.values():
        files = glob.glob(str(exp / entry["trial_dir"] / "wandb" / "offline-run-*" / "run-*.wandb"))
        assert len(files) == 1, files
        history, run = [], None
        for record in wandb_records(Path(files[0])):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                history.append(items)
        assert run is not None and run.run_group == "e2e" and entry["label"][:64] in list(run.tags)
        run_ids.add(run.run_id)
        steps = [h[names.STEP] for h in history]
        assert steps == [r[names.STEP] for r in results(exp / entry["trial_dir"])][: len(steps)]
        assert len(steps) >= 1 and all(names.VAL_ACCURACY in h for h in history)
        if entry["status"] == "completed":
            assert steps == [10, 20, 30, 40]
    assert len(run_ids) == len(trials)


@pytest.mark.slow
def test_optuna_told_pruned_for_stopped_and_diverged(e2e):
    exp, _ = e2e
    trials = json.loads((exp / "trials.json").read_text())
    with open(sorted(glob.glob(str(exp / "searcher-state-*.pkl")))[-1], "rb") as f:
        state = pickle.load(f)
    study: optuna.Study = pickle.loads(state["inner"])["_ot_study"]
    assert len(study.trials) == 4
    by_config = {}
    for entry in trials.values():
        params = json.loads((exp / entry["trial_dir"] / "params.json").read_text())
        by_config[params["config_id"]] = entry["status"]
    for ot in study.trials:
        status = by_config[ot.number + 1]  # config 0 is the named curriculum
        expected = optuna.trial.TrialState.COMPLETE if status == "completed" else optuna.trial.TrialState.PRUNED
        assert ot.state == expected, (ot.number, status)


@pytest.mark.slow
def test_an_existing_experiment_needs_resume_or_a_new_name(e2e, ray_head):
    exp, _ = e2e
    before = sorted(p.name for p in exp.iterdir())
    proc = run_search(["--space", json.loads((exp / "search.json").read_text())["space_file"],
                       "--storage", str(exp.parent)], env=ray_head.client_env(), timeout=60)
    assert proc.returncode == 2 and ": --name: " in proc.stderr
    assert sorted(p.name for p in exp.iterdir()) == before


def test_cli_help_lists_the_flags():
    proc = subprocess.run([sys.executable, "-m", "search.run", "--help"], cwd=REPO, capture_output=True, text=True)
    for flag in ("--space", "--name", "--storage", "--num-samples", "--resume", "--smoke", "--scale"):
        assert flag in proc.stdout


def test_trainable_rows_keep_the_fingerprint_text_and_every_metric_finite(tmp_path):
    from search.trainable import last_row, reportable

    row = reportable({names.STEP: 10, names.VAL_CE: float("nan"), names.VAL_FINGERPRINT: "0a1b2c"}, 3)
    assert row[names.VAL_FINGERPRINT] == "0a1b2c" and row[names.VAL_CE] == names.MISSING
    assert all(isinstance(row[m], float) for m in METRICS)
    assert names.VAL_FINGERPRINT not in reportable({names.STEP: 10}, 3)  # absent stays absent, not -1
    csv = tmp_path / "metrics.csv"
    csv.write_text(f"{names.STEP},{names.VAL_CE},{names.VAL_FINGERPRINT}\n10,0.5,0a1b2c\n20,,0a1b2c\n")
    last = last_row(csv)
    assert last == {names.STEP: 20.0, names.VAL_CE: names.MISSING, names.VAL_FINGERPRINT: "0a1b2c"}
    assert reportable(last, 3)[names.VAL_FINGERPRINT] == "0a1b2c"
