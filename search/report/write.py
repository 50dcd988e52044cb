"""Write an experiment's ``report/`` directory: tables (CSV, parquet, Markdown), plots and one HTML page."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from model import names

from . import stats
from .results import Experiment, load_experiment

log = logging.getLogger(__name__)

REPORT_DIR = "report"
DEFAULT_TOP = 8


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


def write_report(experiment_dir: str | Path, top: int = DEFAULT_TOP, metric: str | None = None,
                 mode: str | None = None) -> Path:
    """Write ``report/`` in the experiment and return its path; ``metric`` and ``mode`` re-rank it
    (default: the space's, from search.json).

    Files: ``ranking.csv`` (every column), ``ranking.md``, ``groups.csv``, ``coverage.csv``,
    ``trials.parquet`` and ``history.parquet`` (CSV when parquet cannot be written), ``plots/*.png``
    and ``report.html`` (self-contained: the plots are embedded, and linked to their files).
    """
    return write_experiment(load_experiment(experiment_dir, metric, mode), top=top)


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
