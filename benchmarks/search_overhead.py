"""What a search costs beyond training: wall time, Ray's share of trial time, and what ASHA saves.

    python benchmarks/search_overhead.py                        # runs the quickstart, then measures it
    python benchmarks/search_overhead.py --space spaces/quickstart.yaml --smoke
    python benchmarks/search_overhead.py --experiment results/quickstart   # measure a finished search

Prints the figures and writes them to results/benchmarks/search_overhead.json:

- wall_s: the search command's wall time, from start to the report (only when this script ran it);
- overhead_share: 1 - (trainer's own training-step time) / (trial wall time), summed over trials.
  Trial wall time is Ray's ``time_total_s`` at the trial's last row (the trainable from start to end);
  the trainer's ``elapsed_s`` counts training steps only. The rest is the trial's start (torch, data,
  W&B), evaluation, checkpoints, and Ray's reporting and checkpoint copies;
- asha_steps / full_steps: trainer steps the trials ran against the same trials each run to max_t.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import names  # noqa: E402
from search.trials import REPORT_S_KEY  # noqa: E402


def last_rows(exp: Path) -> list[tuple[dict, dict]]:
    """(trials.json entry, last result row) per trial that reported anything."""
    trials = json.loads((exp / "trials.json").read_text())
    out = []
    for entry in trials.values():
        result = exp / str(entry["trial_dir"]) / "result.json"
        lines = [x for x in result.read_text().splitlines() if x.strip()] if result.is_file() else []
        if lines:
            out.append((entry, json.loads(lines[-1])))
    return out


def first_report_s(exp: Path, entry: dict) -> float:
    """Seconds from the trainable's start to its first report, less the training steps before it: the
    trial's start (imports, model, validation data, W&B) plus one evaluation."""
    result = exp / str(entry["trial_dir"]) / "result.json"
    first = json.loads(result.read_text().splitlines()[0])
    return first["time_total_s"] - first[names.ELAPSED_S]


def measure(exp: Path) -> dict:
    meta = json.loads((exp / "search.json").read_text())
    max_t = int(meta["max_t"])
    rows = last_rows(exp)
    trial_wall = sum(r["time_total_s"] for _, r in rows)
    train_time = sum(r[names.ELAPSED_S] for _, r in rows)
    report_time = sum(r.get(REPORT_S_KEY, 0.0) for _, r in rows)
    first = sum(first_report_s(exp, e) for e, _ in rows)
    steps = sum(int(r[names.STEP]) for _, r in rows)
    statuses: dict[str, int] = {}
    for entry, _ in rows:
        statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
    per_trial = [{"label": e["label"], "status": e["status"], "steps": int(r[names.STEP]),
                  "wall_s": round(r["time_total_s"], 2), "train_s": round(r[names.ELAPSED_S], 2)} for e, r in rows]
    return {
        "experiment": str(exp),
        "trials": len(rows),
        "statuses": statuses,
        "trial_wall_s": round(trial_wall, 1),
        "train_step_s": round(train_time, 1),
        "overhead_share": round(1 - train_time / trial_wall, 3) if trial_wall else None,
        "in_report_s": round(report_time, 1),
        "ray_report_share": round(report_time / trial_wall, 3) if trial_wall else None,
        "to_first_report_s": round(first, 1),
        "asha_steps": steps,
        "full_steps": len(rows) * max_t,
        "asha_step_share": round(steps / (len(rows) * max_t), 3) if rows else None,
        "per_trial": per_trial,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, help="measure this finished experiment instead of running one")
    parser.add_argument("--space", default="spaces/quickstart.yaml")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "search_overhead.json")
    args = parser.parse_args()

    wall = None
    if args.experiment is None:
        storage = Path(tempfile.mkdtemp(prefix="search_overhead_"))
        cmd = [sys.executable, "-m", "search.run", "--space", args.space, "--storage", str(storage), "--name", "bench"]
        if args.smoke:
            cmd.append("--smoke")
        print("running:", " ".join(cmd), flush=True)
        start = time.time()
        subprocess.run(cmd, cwd=REPO, check=True)
        wall = time.time() - start
        exp = storage / "bench"
    else:
        exp = args.experiment
    figures = {"wall_s": round(wall, 1) if wall is not None else None, **measure(exp)}
    figures["space"] = json.loads((exp / "search.json").read_text())["space_file"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")

    print(f"experiment          {figures['experiment']}")
    if wall is not None:
        print(f"wall time           {wall:.1f} s (search command, report included)")
    print(f"trials              {figures['trials']} {figures['statuses']}")
    print(f"trial wall time     {figures['trial_wall_s']:.1f} s summed; training steps {figures['train_step_s']:.1f} s")
    print(f"outside train steps {100 * figures['overhead_share']:.1f}% of trial wall time")
    print(f"  inside tune.report {100 * figures['ray_report_share']:.1f}% ({figures['in_report_s']:.1f} s: Ray's "
          "reporting and checkpoint copies)")
    print(f"  trial start        {figures['to_first_report_s']:.1f} s to the first report, less its steps")
    print(f"trainer steps       {figures['asha_steps']} with ASHA vs {figures['full_steps']} run to max_t "
          f"({100 * figures['asha_step_share']:.1f}%)")
    print(f"written to          {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
