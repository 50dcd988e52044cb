"""The report: rank an experiment's curricula and write its tables and plots.

Reads only what the search wrote (``search.results``): no running Ray, no checkpoints; works
mid-search and on an interrupted or partly errored experiment.

    python -m search.report <experiment_dir> [--top N]

prints the ranking and writes ``<experiment_dir>/report/`` (see ``write_report``). In a notebook::

    from search.report import load, load_history
    trials, history = load(exp_dir), load_history(exp_dir)
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from model import names
from model.errors import InputError, OneLineParser, exit_on_input_error

from . import stats
from .ranking import RANKING_RULE, group_table, rank
from .results import Experiment, load_experiment

__all__ = ["RANKING_RULE", "Experiment", "InputError", "group_table", "load", "load_experiment", "load_history",
           "main", "rank", "write_experiment", "write_report"]

log = logging.getLogger(__name__)

REPORT_DIR = "report"
DEFAULT_TOP = 8


def load(experiment_dir: str | Path) -> pd.DataFrame:
    """One row per trial, ranked; see ``search.columns`` for the columns."""
    return load_experiment(experiment_dir).trials


def load_history(experiment_dir: str | Path) -> pd.DataFrame:
    """One row per evaluation of every trial, with ``trial_id`` and ``label``; MISSING (-1) is NaN."""
    return load_experiment(experiment_dir).history


def coverage_table(history: pd.DataFrame) -> pd.DataFrame:
    """Spectrum coverage binned by validation token accuracy (10-point bins), with the seeds' figures."""
    from .plots import SEED_COVERAGE

    if names.VAL_ACCURACY not in history or names.VAL_COVERAGE not in history:
        return pd.DataFrame()
    edges = np.round(np.linspace(0.0, 1.0, 11), 6)
    table = stats.binned_means(history[names.VAL_ACCURACY], history[names.VAL_COVERAGE], edges)
    seeds = []
    for low, high in zip(table["low"], table["high"]):
        hits = [text for acc, _, _, text in SEED_COVERAGE if low <= acc < high or (high == 1.0 and acc == 1.0)]
        seeds.append("; ".join(hits))
    table["seeds"] = seeds
    return table


def write_report(experiment_dir: str | Path, top: int = DEFAULT_TOP) -> Path:
    """Write ``report/`` in the experiment and return its path.

    Files: ``ranking.csv`` (every column), ``ranking.md``, ``groups.csv``, ``coverage.csv``,
    ``trials.parquet`` and ``history.parquet`` (CSV when parquet cannot be written), ``plots/*.png``
    and ``report.html`` (self-contained: the plots are embedded, and linked to their files).
    """
    return write_experiment(load_experiment(experiment_dir), top=top)


def write_experiment(exp: Experiment, top: int = DEFAULT_TOP) -> Path:
    """``write_report`` for an experiment already loaded."""
    from . import plots, render

    out = exp.path / REPORT_DIR
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for stale in plot_dir.glob("*.png"):
        stale.unlink()
    groups, coverage = exp.groups(), coverage_table(exp.history)
    figures = plots.write_all(exp, plot_dir, top=top)
    _write_csv(exp.trials, out / "ranking.csv")
    _write_csv(groups, out / "groups.csv")
    _write_csv(coverage, out / "coverage.csv")
    _write_table(exp.trials, out / "trials.parquet")
    _write_table(exp.history, out / "history.parquet")
    _atomic_write(out / "ranking.md", render.markdown(exp, groups, coverage))
    _atomic_write(out / "report.html", render.html(exp, groups, coverage, figures))
    log.info("report written to %s", out)
    return out


# --- writing -------------------------------------------------------------------------------------

def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    _atomic_write(path, frame.to_csv(index=False))


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """Parquet when pyarrow can write it, else CSV.

    Parameter columns come from JSON and may mix types across trials (a value searched as a number in
    one configuration and as a name in another): all-numeric ones become numbers, the others strings.
    """
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype != object:
            continue
        values = safe[column].dropna()
        if len(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            safe[column] = pd.to_numeric(safe[column])
        elif {type(v) for v in values} - {str}:
            safe[column] = safe[column].map(lambda v: None if _missing(v) else str(v))
    try:
        safe.to_parquet(path, index=False)
    except (ImportError, ValueError, TypeError) as err:
        log.warning("parquet unavailable (%s); writing CSV", err)
        path.unlink(missing_ok=True)
        _write_csv(frame, path.with_suffix(".csv"))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- command line --------------------------------------------------------------------------------

@exit_on_input_error
def main(argv: list[str] | None = None) -> int:
    from . import render

    parser = OneLineParser(prog="python -m search.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path, help="a directory written by search.run")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="curricula drawn in the step plots")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise InputError("command line", "--top", f"must be >= 1, got {args.top}")
    exp = load_experiment(args.experiment_dir)
    out = write_experiment(exp, top=args.top)
    sys.stdout.write(render.text(exp, exp.groups()) + f"\nreport: {out / 'report.html'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
