"""The report's figures (matplotlib, Agg, PNG): the ranking metric and the losses against step, the
metric against each searched parameter, seeds per curriculum, and spectrum coverage against token accuracy.

Each ``*_figure`` function takes the report's frames and returns a Figure, or None when the experiment
has nothing to draw (no history yet, nothing searched, no replicates); ``write_all`` saves those that exist.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from model import names  # noqa: E402
from model.curriculum import AUX_LOSSES  # noqa: E402

from . import columns as C  # noqa: E402

if TYPE_CHECKING:
    from .results import Experiment

# The seeds' measurements (seed 000): token accuracy -> spectrum coverage (low, high), as fractions.
SEED_COVERAGE = [
    (0.25, 0.007, 0.007, "25% -> 0.7%"),
    (0.48, 0.021, 0.021, "48% -> 2.1%"),
    (0.60, 0.08, 0.12, "60% -> 8-12%"),
    (0.65, 0.15, 0.20, "65% -> 15-20%"),
    (0.70, 0.25, 0.30, "70% -> 25-30%"),
    (1.00, 0.60, 0.64, "100% -> 60-64%"),
]
INTRO_MARKERS = {"spectrum": "^", "precursor": "s"}
LOSS_PANELS = [(names.VAL_CE, "val CE loss"), (names.VAL_SPECTRUM, "val spectrum loss"),
               (names.VAL_PRECURSOR, "val precursor loss"), (names.TRAIN_CE, "train CE loss")]
STYLE_BY_STATUS = {"completed": "-", "diverged": ":", "errored": ":"}  # stopped short: dashed
DPI = 110


class Plot(NamedTuple):
    name: str  # file name in plots/
    title: str
    caption: str
    path: Path


def write_all(exp: Experiment, plot_dir: Path, top: int = 8) -> list[Plot]:
    """Save every figure the experiment can show as ``plot_dir/<name>.png``; return them in report order."""
    m = exp.metric
    made = [
        ("accuracy_vs_step", f"{m} against step", accuracy_vs_step_figure(exp, top),
         f"Top {top} curricula by rank; seeds of one curriculum share a colour. Markers: ^ spectrum loss "
         "intro, \u25a0 precursor loss intro. Dashed: stopped early or unfinished; dotted: diverged or errored."),
        ("losses_vs_step", "Loss components", losses_vs_step_figure(exp, min(top, 5)),
         f"Validation CE, spectrum and precursor losses and training CE of the top {min(top, 5)} curricula."),
        ("accuracy_by_curriculum", f"Final {m} per curriculum", accuracy_by_group_figure(exp),
         "Each dot a completed seed; bars: mean and 95% confidence interval (t distribution)."),
        ("accuracy_vs_params", f"Final {m} against each searched parameter", accuracy_vs_params_figure(exp),
         f"Filled: completed (final {m}); hollow: stopped early (its value where it stopped); "
         "x: diverged or errored (at the worst edge of the panel when it never reported)."),
        ("coverage_vs_accuracy", "Spectrum coverage against token accuracy", coverage_figure(exp),
         "Every evaluation of every trial; black bars: the seeds' measurements."),
    ]
    plots = []
    for name, title, fig, caption in made:
        if fig is None:
            continue
        path = plot_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        plots.append(Plot(name, title, caption, path))
    return plots


def top_labels(trials: pd.DataFrame, top: int) -> list[str]:
    """The ``top`` best curriculum labels, by the best rank among their trials."""
    return list(dict.fromkeys(trials.sort_values(C.RANK)[C.LABEL]))[:top]


def _scale(exp: Experiment) -> float:
    """Fractions are drawn as percentages."""
    return 100.0 if C.is_fraction(exp.metric) else 1.0


def _label(exp: Experiment, prefix: str = "") -> str:
    return f"{prefix}{exp.metric}{' (%)' if C.is_fraction(exp.metric) else ''}"


def accuracy_vs_step_figure(exp: Experiment, top: int) -> Figure | None:
    """The ranking metric against step (the file keeps its old name, accuracy_vs_step.png)."""
    h, metric, k = exp.history, exp.metric, _scale(exp)
    if metric not in h or h[metric].notna().sum() == 0:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    for color, label, trials in _top_groups(exp, top):
        for i, (_, trial) in enumerate(trials.iterrows()):
            curve = _curve(h, trial[C.TRIAL_ID], metric)
            if curve.empty:
                continue
            seeds = f" ({len(trials)} seeds)" if len(trials) > 1 else ""
            ax.plot(curve.index, k * curve.values, color=color, lw=1.6, alpha=0.9, marker=".", ms=4,
                    ls=STYLE_BY_STATUS.get(trial[C.STATUS], "--"), label=f"{label}{seeds}" if i == 0 else None)
            if trial[C.STATUS] in ("diverged", "errored"):
                ax.plot(curve.index[-1], k * curve.values[-1], "x", color=color, ms=9, mew=2)
            for loss in AUX_LOSSES:
                at = trial.get(C.INTRO_AT[loss])
                if at is not None and math.isfinite(at) and at <= curve.index[-1]:
                    y = np.interp(at, curve.index, curve.values)  # before the first evaluation: at its level
                    ax.plot(at, k * y, INTRO_MARKERS[loss], color=color, ms=8, mec="black", mew=0.8)
    ax.set(xlabel="step", ylabel=_label(exp), title=f"{metric} against step")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker=m, ls="", color="grey", mec="black", label=f"{loss} intro")
                for loss, m in INTRO_MARKERS.items()]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def losses_vs_step_figure(exp: Experiment, top: int) -> Figure | None:
    h = exp.history
    panels = [(m, t) for m, t in LOSS_PANELS if m in h and h[m].notna().any()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 1.5, 3.6), layout="constrained",
                             squeeze=False)
    for ax, (metric, title) in zip(axes[0], panels):
        for color, label, trials in _top_groups(exp, top):
            for i, (_, trial) in enumerate(trials.iterrows()):
                curve = _curve(h, trial[C.TRIAL_ID], metric)
                if not curve.empty:
                    ax.plot(curve.index, curve.values, color=color, lw=1.3, marker=".", ms=3,
                            ls=STYLE_BY_STATUS.get(trial[C.STATUS], "--"), label=label if i == 0 else None)
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right center", frameon=False)
    return fig


def accuracy_by_group_figure(exp: Experiment) -> Figure | None:
    if not exp.replicated:
        return None
    groups = exp.groups()
    groups = groups[groups[C.GROUP_SEEDS] > 0].reset_index(drop=True)
    if groups.empty:
        return None
    done = exp.completed()
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(groups) + 2), 4.2), layout="constrained")
    rng = np.random.default_rng(0)  # jitter only
    k = _scale(exp)
    for x, (_, g) in enumerate(groups.iterrows()):
        values = done.loc[done[C.LABEL] == g[C.GROUP], exp.final].dropna()
        ax.plot(x + rng.uniform(-0.12, 0.12, len(values)), k * values, "o", color="tab:blue", alpha=0.7)
        if g[C.GROUP_SEEDS] >= 1:
            low = g["ci_low"] if math.isfinite(g["ci_low"]) else g["mean"]
            high = g["ci_high"] if math.isfinite(g["ci_high"]) else g["mean"]
            ax.errorbar(x + 0.25, k * g["mean"], yerr=[[k * (g["mean"] - low)], [k * (high - g["mean"])]],
                        fmt="D", color="black", capsize=5, ms=5)
    ticks = [textwrap.fill(str(g), 18) + f"\n(n={n})" for g, n in zip(groups[C.GROUP], groups[C.GROUP_SEEDS])]
    ax.set_xticks(range(len(groups)), ticks, fontsize=8)
    ax.set(ylabel=_label(exp, "final "), title="Completed seeds, mean and 95% CI")
    ax.grid(alpha=0.3, axis="y")
    return fig


def accuracy_vs_params_figure(exp: Experiment) -> Figure | None:
    params = [p for p in exp.searched if p in exp.trials.columns and exp.trials[p].notna().any()]
    if not params:
        return None
    t = exp.trials
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained",
                             squeeze=False)
    kinds = [("completed", t[C.STATUS] == "completed", dict(marker="o", color="tab:blue", ls="")),
             ("stopped early", t[C.STATUS].isin(["stopped", "running", "interrupted", "pending"]),
              dict(marker="o", mfc="none", color="tab:grey", ls="")),
             ("diverged / errored", t[C.STATUS].isin(["diverged", "errored"]),
              dict(marker="x", color="tab:red", ls="", mew=2))]
    k, final = _scale(exp), pd.to_numeric(t[exp.final], errors="coerce")
    # A trial without a value sits at the worst edge: the floor for mode max, the ceiling for mode min.
    if final.notna().any():
        worst = final.min() if exp.mode == "max" else final.max()
    else:
        worst = 0.0
    for ax, param in zip(axes.flat, params):
        x, ticks = _axis_values(t[param])
        for kind, mask, style in kinds:
            y = final[mask].fillna(worst)
            ax.plot(x[mask.to_numpy()], k * y, label=kind, ms=7, **style)
        if ticks is not None:
            ax.set_xticks(range(len(ticks)), ticks, rotation=20)
        elif _log_scale(t[param]):
            ax.set_xscale("log")
        ax.set(xlabel=param, ylabel=_label(exp, "final "))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    return fig


def coverage_figure(exp: Experiment) -> Figure | None:
    h = exp.history
    if names.VAL_COVERAGE not in h or names.VAL_ACCURACY not in h:
        return None
    points = h[[names.VAL_ACCURACY, names.VAL_COVERAGE]].dropna()
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    ax.plot(100 * points[names.VAL_ACCURACY], 100 * points[names.VAL_COVERAGE], ".", alpha=0.4,
            color="tab:blue", label="evaluations (this search)")
    for i, (acc, low, high, text) in enumerate(SEED_COVERAGE):
        mid = (low + high) / 2
        ax.errorbar(100 * acc, 100 * mid, yerr=[[100 * (mid - low)], [100 * (high - mid)]], fmt="s",
                    color="black", capsize=4, ms=5, label="seeds' measurements" if i == 0 else None)
        ax.annotate(text, (100 * acc, 100 * mid), textcoords="offset points", xytext=(6, -10), fontsize=7)
    ax.set_yscale("symlog", linthresh=1.0)  # the seeds' low end (0.7%, 2.1%) stays readable
    ticks = [0, 0.5, 1, 2, 5, 10, 20, 50, 100]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set(xlabel="val token accuracy (%)", ylabel="val spectrum coverage (%)", xlim=(0, 105), ylim=(0, 100),
           title="Spectrum coverage against token accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _top_groups(exp: Experiment, top: int):
    """(colour, label, that label's trials in rank order) for the ``top`` best labels."""
    colors = plt.get_cmap("tab10").colors
    t = exp.trials.sort_values(C.RANK)
    for i, label in enumerate(top_labels(t, top)):
        yield colors[i % len(colors)], label, t[t[C.LABEL] == label]


def _curve(h: pd.DataFrame, trial_id: str, metric: str) -> pd.Series:
    if metric not in h:
        return pd.Series(dtype=float)
    part = h.loc[h[C.TRIAL_ID] == trial_id, [names.STEP, metric]].dropna()
    return pd.Series(part[metric].to_numpy(float), index=part[names.STEP].to_numpy(float))


def _axis_values(values: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Numeric values as they are; anything else as categories at 0, 1, 2, ... with tick labels."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        return numeric.to_numpy(float), None
    cats = sorted({str(v) for v in values.dropna()})
    return np.array([cats.index(str(v)) if pd.notna(v) else np.nan for v in values], float), cats


def _log_scale(values: pd.Series) -> bool:
    x = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(x)) and bool((x > 0).all()) and x.max() / x.min() >= 100
