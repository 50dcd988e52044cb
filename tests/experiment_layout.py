"""A hand-built experiment directory with exactly the layout search.run writes (search.json, trials.json,
Ray trial directories with params.json and result.json), from seeded curves: the report's tests use it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from model import names
from model.curriculum import load_curriculum

MAX_T = 1000
EVAL_EVERY = 100


def write_experiment(exp: Path, trials: list[dict], *, status: str = "finished", searched=None,
                     scheduler: str = "asha", trials_json: bool = True, metric: str | None = names.VAL_ACCURACY,
                     mode: str = "max") -> dict[str, str]:
    """Write the search's layout for ``trials`` (dicts of write_trial's keywords); returns label -> trial_id.
    ``metric=None`` writes a search.json that names no metric (and no mode)."""
    exp.mkdir(parents=True, exist_ok=True)
    meta = {"name": exp.name, "space_file": "spaces/test.yaml", "metric": metric, "mode": mode,
            "searched": searched or [], "max_t": MAX_T, "scheduler": scheduler, "grace_period": 200,
            "reduction_factor": 2, "replicates": 1, "resources": {"cpu": 1, "gpu": 0}, "status": status,
            "started": "2026-01-01T00:00:00", "finished": None if status != "finished" else "2026-01-01T01:00:00",
            "num_trials": len(trials)}
    if metric is None:
        del meta["metric"], meta["mode"]
    (exp / "search.json").write_text(json.dumps(meta))
    entries, ids = {}, {}
    for index, spec in enumerate(trials):
        tid, entry = write_trial(exp, index, **spec)
        entries[tid] = entry
        ids[spec.get("key", spec["label"])] = tid
    if trials_json:
        (exp / "trials.json").write_text(json.dumps(entries))
    return ids


def write_trial(exp: Path, index: int, *, label: str, final: float, status: str = "completed",
                family: str | None = None, seed: int | None = None, replicate: int = 0,
                stop_at: int | None = None, nans: int = 0, spikes: int = 0, params: dict | None = None,
                curriculum: str = "revised", results: bool = True, key: str | None = None,
                error: str | None = None, tau: float = 250.0, easy: float | None = None, ce: float | None = None,
                fingerprint: str | None = None, summary_fingerprint: str | None = None,
                grad_std: bool = False) -> tuple[str, dict]:
    """One Ray trial directory with seeded curves that rise to ``final`` val token accuracy.

    ``easy``: the final val_easy token accuracy (default final + 0.05); ``ce``: the final val CE (default
    3 (1 - acc) + 0.2; NaN: the trainer's MISSING on every row); ``fingerprint``: reported on every row,
    ``summary_fingerprint``: only in summary.json; ``grad_std``: rows carry the gradient ratio's std.
    """
    rng = np.random.default_rng(1000 + index)
    tid = f"5e7a1_{index:05d}"
    trial_dir = exp / f"trainable_{tid}_{index}_label={label},seed={seed or index}_2026-01-01_00-00-00"
    trial_dir.mkdir()
    cur = load_curriculum(curriculum).scaled(MAX_T / 100_000)
    flat = {f"{k}": v for k, v in cur.params().items() if k != "curriculum"}
    flat.update(params or {})
    (trial_dir / "params.json").write_text(json.dumps({
        "label": label, "family": family or curriculum, "curriculum": cur.to_dict(), "params": flat,
        "seed": seed if seed is not None else index, "replicate": replicate}))
    if not results:
        (trial_dir / "result.json").write_text("")
        return tid, _entry(trial_dir, label, status, stop_at, error)
    last = stop_at if stop_at is not None else MAX_T
    events = cur.events()
    lines, best, s90 = [], 0.0, names.MISSING
    for i, step in enumerate(range(EVAL_EVERY, last + 1, EVAL_EVERY), 1):
        acc = final * (1 - math.exp(-step / tau)) / (1 - math.exp(-last / tau)) + rng.normal(0, 0.003)
        acc = final if step == last else acc  # exact, so that tests can make ties
        if status == "diverged" and step > last / 2:
            acc = 0.05
        best = max(best, acc)
        if s90 == names.MISSING and acc >= 0.9:
            s90 = float(step)
        easy_acc = min(1.0, acc + 0.05) if easy is None else easy * acc / final
        if ce is None:
            ce_value = 3.0 * (1 - acc) + 0.2
        else:
            ce_value = names.MISSING if math.isnan(ce) else ce + 2.0 * (1 - step / last)
        row = {names.STEP: step, names.VAL_ACCURACY: acc, names.VAL_EASY_ACCURACY: easy_acc,
               names.VAL_RESIDUE_ACCURACY: acc - 0.02, names.VAL_EASY_RESIDUE_ACCURACY: easy_acc - 0.02,
               names.VAL_COVERAGE: 0.62 * max(acc, 0.0) ** 4.5, names.TRAIN_CE: 3.0 * (1 - acc) + 0.1,
               names.VAL_CE: ce_value, names.VAL_SPECTRUM: 1 - 0.62 * acc ** 4.5,
               names.VAL_PRECURSOR: 0.5 * (1 - acc), names.VAL_PEPTIDE_RECALL:
                   acc ** 3 if step == last else names.MISSING,
               names.NAN_COUNT: float(round(nans * i * EVAL_EVERY / last)),
               names.SPIKE_COUNT: float(round(spikes * i * EVAL_EVERY / last)), names.STEPS_TO_90: s90,
               names.BEST_VAL_ACCURACY: best, names.ELAPSED_S: 0.5 * step,
               "trial_id": tid, "training_iteration": i, "time_total_s": 0.5 * step, "timestamp": 1_700_000_000 + i,
               "done": status == "completed" and step == last, "config": {"label": label}}
        for loss in ("spectrum", "precursor"):
            ratio, cosine = names.GRAD_NAMES[loss]
            intro = events.get(loss)
            on = intro is not None and step >= intro
            row[names.INTRO_STEP_NAMES[loss]] = float(intro) if intro is not None else names.MISSING  # as planned
            row[ratio] = (0.2 + 0.1 * i / 10) if on else names.MISSING
            row[cosine] = 0.3 if on else names.MISSING
            if grad_std:
                row[f"{ratio}_std"] = (0.05 + 0.01 * i) if on else names.MISSING
        if fingerprint is not None:
            row[names.VAL_FINGERPRINT] = fingerprint
        lines.append(json.dumps(row))
    (trial_dir / "result.json").write_text("\n".join(lines) + "\n")
    if summary_fingerprint is not None:
        (trial_dir / "summary.json").write_text(json.dumps({names.STATUS: status,
                                                            names.VAL_FINGERPRINT: summary_fingerprint}))
    return tid, _entry(trial_dir, label, status, stop_at, error)


def _entry(trial_dir: Path, label: str, status: str, stop_at: int | None, error: str | None) -> dict:
    return {"trial_dir": trial_dir.name, "label": label, "status": status,
            "stopped_at_step": stop_at if status in ("stopped", "diverged") else None, "error": error}


MIXED = [
    dict(label="A", final=0.80, nans=2),
    dict(label="B", final=0.85),
    dict(label="C", final=0.80, nans=1, spikes=3),  # ties A on accuracy: fewer NaNs wins
    dict(label="D", final=0.80, nans=1, spikes=1),  # ... then fewer spikes
    dict(label="S1", final=0.60, status="stopped", stop_at=400),
    dict(label="S2", final=0.50, status="stopped", stop_at=800),  # further along: above S1 despite accuracy
    dict(label="S3", final=0.65, status="stopped", stop_at=400),
    dict(label="X", final=0.70, status="diverged", stop_at=600, nans=40),
    dict(label="E", final=0.0, status="errored", results=False, error="Traceback...\nRuntimeError: CUDA OOM"),
]




def md_rows(md: str, section: str = "## Ranking") -> list[dict[str, str]]:
    """The rows of the first Markdown table after ``section``, as dicts by header."""
    lines = md.split(section, 1)[1].splitlines()
    lines = lines[next(i for i, x in enumerate(lines) if x.startswith("|")):]
    table = lines[: next((i for i, x in enumerate(lines) if not x.startswith("|")), len(lines))]
    cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in table]
    return [dict(zip(cells[0], row)) for row in cells[2:]]
