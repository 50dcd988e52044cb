"""The report as text: the terminal summary, ``ranking.md`` and the self-contained ``report.html``.

Tables are formatted here for people (accuracies as percentages, empty for a missing value); the CSV
and parquet files keep the raw numbers.
"""

from __future__ import annotations

import base64
import html as html_lib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from . import columns as C

if TYPE_CHECKING:
    from .plots import Plot
    from .results import Experiment

HEADERS = {
    C.RANK: "rank", C.LABEL: "curriculum", C.STATUS_DETAIL: "status", C.NAN_COUNT: "NaNs",
    C.SPIKE_COUNT: "spikes", C.STEPS_TO_90: "steps to 90%", C.GRAD_RATIO_AT_INTRO["spectrum"]: "spectrum grad ratio",
    C.GRAD_RATIO_STD_AT_INTRO["spectrum"]: "spectrum grad ratio std",
    C.GRAD_COSINE_AT_INTRO["spectrum"]: "spectrum grad cos", C.GRAD_RATIO_AT_INTRO["precursor"]: "precursor grad ratio",
    C.GRAD_RATIO_STD_AT_INTRO["precursor"]: "precursor grad ratio std",
    C.GRAD_COSINE_AT_INTRO["precursor"]: "precursor grad cos", C.STEPS: "steps", C.WALL_H: "wall h",
    C.DEVICE_H: "device h", C.FAMILY: "family", C.SEED: "seed", C.REPLICATE: "replicate",
    C.INTRO_AT["spectrum"]: "spectrum intro (measured)", C.INTRO_AT["precursor"]: "precursor intro (measured)",
    C.FINGERPRINT: "val fingerprint", C.GROUP: "curriculum", C.GROUP_SEEDS: "seeds", "std": "std",
    "ci_low": "95% CI low", "ci_high": "95% CI high", C.GROUP_TRIALS: "trials",
    C.GROUP_STOPPED: "stopped or unfinished", C.GROUP_FAILED: "diverged or errored",
}
GRADIENTS = [column for loss in ("spectrum", "precursor") for column in
             (C.GRAD_RATIO_AT_INTRO[loss], C.GRAD_RATIO_STD_AT_INTRO[loss], C.GRAD_COSINE_AT_INTRO[loss])]
GROUP_COLUMNS = [C.GROUP, C.FAMILY, C.GROUP_SEEDS, "mean", "std", "ci_low", "ci_high", C.GROUP_TRIALS,
                 C.GROUP_STOPPED, C.GROUP_FAILED, C.NAN_COUNT, C.SPIKE_COUNT]
GRADIENT_NOTE = ("Gradient strength at each loss's intro: ||w * grad(aux)|| / ||grad(CE)|| at the first evaluation "
                 "after it comes in (std: its spread over that evaluation's batches), and the cosine between the two "
                 "gradients. The seeds quote 0.16 (weak) for the spectrum loss at step 10K (40% accuracy) and 0.25 "
                 "(moderate) at step 15K (55%).")
INTEGER = {C.RANK, C.NAN_COUNT, C.SPIKE_COUNT, C.STEPS_TO_90, C.STEPS, C.SEED, C.REPLICATE, C.GROUP_SEEDS,
           C.GROUP_TRIALS, C.GROUP_STOPPED, C.GROUP_FAILED, *C.INTRO_AT.values()}


def ranking_columns(exp: Experiment) -> list[str]:
    """The ranking metric first, the other accuracies as extra columns, health, losses, gradients, cost."""
    accuracies = [c for c in C.ACCURACIES if c != exp.final]
    losses = [c for c in (C.FINAL_CE, C.FINAL_SPECTRUM, C.FINAL_PRECURSOR) if c != exp.final]
    return [C.RANK, C.LABEL, C.SEED, C.STATUS_DETAIL, exp.final, C.best(exp.metric), *accuracies, C.NAN_COUNT,
            C.SPIKE_COUNT, C.STEPS_TO_90, *losses, *GRADIENTS, C.STEPS, C.WALL_H, C.DEVICE_H,
            *_fingerprint_column(exp)]


def terminal_columns(exp: Experiment) -> list[str]:
    return [C.RANK, C.LABEL, C.SEED, C.STATUS_DETAIL, exp.final, C.best(exp.metric), C.NAN_COUNT, C.SPIKE_COUNT,
            C.STEPS_TO_90, C.STEPS, *_fingerprint_column(exp)]


def _fingerprint_column(exp: Experiment) -> list[str]:
    return [C.FINGERPRINT] if len(exp.other_validation()) else []


def group_note(exp: Experiment) -> str:
    return (f"Curricula run with more than one seed. Mean, standard deviation and 95% confidence interval "
            f"(t distribution) of final {exp.metric} over completed seeds; the best curriculum "
            f"({'highest' if exp.mode == 'max' else 'lowest'} mean) is tested against each other with Welch's "
            "t-test (two-sided, 5% level).")


def ranking_table(exp: Experiment, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The ranking as strings, with readable headers; columns that are empty for every trial are dropped."""
    columns = ranking_columns(exp) if columns is None else columns
    keep = (C.RANK, C.LABEL, C.STATUS_DETAIL, exp.final)
    shown = [c for c in columns if c in exp.trials and (c in keep or exp.trials[c].notna().any())]
    return _format(exp.trials, shown, _percent(exp))


def parameter_table(exp: Experiment) -> pd.DataFrame:
    """Curriculum and searched parameters per trial: searched first, then the rest alphabetically."""
    t = exp.trials
    dotted = [c for c in t.columns if "." in c and not c.startswith(("final ", "best ")) and t[c].notna().any()]
    ordered = [c for c in exp.searched if c in dotted] + sorted(c for c in dotted if c not in exp.searched)
    lead = [c for c in (C.RANK, C.LABEL, C.FAMILY, C.SEED, C.REPLICATE) if c in t and t[c].notna().any()]
    measured = [c for c in C.INTRO_AT.values() if c in t and t[c].notna().any()]
    table = _format(t, lead + ordered + measured, _percent(exp))
    return table.rename(columns={c: f"{c} (searched)" for c in exp.searched if c in table.columns})


def group_table(exp: Experiment, groups: pd.DataFrame) -> pd.DataFrame:
    headers = {"mean": f"mean {exp.metric}"}
    return _format(groups, [c for c in GROUP_COLUMNS if c in groups], _percent(exp), headers)


def value_text(exp: Experiment, value: object) -> str:
    """A value of the ranking metric for people: a percentage for fractions; empty when missing."""
    if _missing(value):
        return ""
    return _pct(value) if C.is_fraction(exp.metric) else f"{float(value):.4g}"


def coverage_display(coverage: pd.DataFrame) -> pd.DataFrame:
    if coverage.empty:
        return coverage
    out = pd.DataFrame({
        "val token accuracy": [f"{100 * lo:.0f}-{100 * hi:.0f}%" for lo, hi in zip(coverage["low"], coverage["high"])],
        "evaluations": coverage["n"].astype(int).astype(str),
        "coverage mean": coverage["mean"].map(_pct), "coverage median": coverage["median"].map(_pct),
        "coverage p10-p90": [f"{_pct(a)} - {_pct(b)}" if math.isfinite(a) else "" for a, b in
                             zip(coverage["p10"], coverage["p90"])],
        "seeds measured": coverage["seeds"],
    })
    return out


def headline(exp: Experiment) -> str:
    meta, t = exp.meta, exp.trials
    counts = t[C.STATUS].value_counts() if len(t) else pd.Series(dtype=int)
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: C.TIER.get(kv[0], 9)))
    name = meta.get("name") or exp.path.name
    status = meta.get("status", "unknown (no search.json)")
    device_h = t[C.DEVICE_H].sum() if C.DEVICE_H in t else 0.0
    return (f"Experiment {name}: {len(t)} trials ({by_status or 'none yet'}); search {status}; "
            f"{t[C.STEPS].sum() if C.STEPS in t else 0:.0f} trainer steps, {device_h:.3g} device hours")


def sentences(exp: Experiment) -> list[str]:
    """The best curriculum against each other, in words; empty when no curriculum has replicates."""
    if not exp.replicated:
        return []
    found = [c.sentence() for c in exp.comparisons()]
    return found or ["Too few completed curricula to compare."]


def validation_note(exp: Experiment) -> str:
    """One line when some trials were validated on other data than the rest; empty when all agree."""
    other = exp.other_validation()
    if not len(other):
        return ""
    known = other[C.FINGERPRINT].map(lambda f: isinstance(f, str) and bool(f))
    parts = [f"{int(known.sum())} with another validation fingerprint"] if known.any() else []
    parts += [f"{int((~known).sum())} with none recorded"] if (~known).any() else []
    main = exp.ranked_together()[C.FINGERPRINT].iloc[0] if len(exp.ranked_together()) else ""
    return (f"Not one exam: {len(other)} of {len(exp.trials)} trials were validated on other data than the rest "
            f"({' and '.join(parts)}; the main fingerprint is {_short_fingerprint(main)}), so they are ranked "
            f"below the others and left out of the groups and tests.")


def verdict(exp: Experiment) -> str:
    """One paragraph that answers the seeds' question as far as this experiment can."""
    note = validation_note(exp)
    done = exp.completed()
    if done.empty:
        return " ".join(p for p in ("No trial has completed yet: the ranking below is provisional.", note) if p)
    best = done.iloc[0]
    s90 = best[C.STEPS_TO_90]
    reached = f", 90% at step {int(s90)}" if isinstance(s90, float) and math.isfinite(s90) else ", never 90%"
    value = value_text(exp, best[exp.final])
    at = f"at {value} final {exp.metric}" if value else f"with no final {exp.metric} (never reported)"
    parts = [f"Best completed trial: {best[C.LABEL]} {at}{reached}, {int(best[C.NAN_COUNT] or 0)} NaN steps, "
             f"{int(best[C.SPIKE_COUNT] or 0)} spikes."]
    if exp.replicated:
        parts += sentences(exp)
    else:
        values = pd.to_numeric(done[exp.final], errors="coerce").dropna()
        spread = values.max() - values.min() if len(values) else math.nan
        span = f"{100 * spread:.1f} points" if C.is_fraction(exp.metric) else f"{spread:.3g}"
        parts.append(f"Every configuration ran with one seed, so no difference can be tested; the {len(done)} "
                     f"completed trials span {span} of final {exp.metric}. Replicate the leaders over several "
                     "seeds (as spaces/ab_seed_curricula.yaml does) to tell whether their differences are real.")
    return " ".join(parts + ([note] if note else []))


def top(exp: Experiment, n: int = 5) -> str:
    """The head of the ranking for the terminal at the end of a search: the same trials, in the same
    order, as ``ranking.md``."""
    t = exp.trials
    lines = [f"top {min(n, len(t))} of {len(t)} by {exp.metric} ({exp.mode}):"]
    for _, row in t.head(n).iterrows():
        seed = "" if _missing(row.get(C.SEED)) else f"  seed {int(row[C.SEED])}"
        lines.append(f"  {int(row[C.RANK])}. {value_text(exp, row[exp.final]):>7}  {row[C.LABEL]}{seed}  "
                     f"[{row[C.STATUS_DETAIL]}]  {row[C.TRIAL_ID]}")
    note = validation_note(exp)
    return "\n".join(lines + ([note] if note else []))


def text(exp: Experiment, groups: pd.DataFrame) -> str:
    """What the command line prints: headline, ranking, rule, and groups and tests when replicated."""
    note = validation_note(exp)
    parts = [headline(exp), "", _plain(ranking_table(exp, terminal_columns(exp))), *([note] if note else []), "",
             exp.rule, "", verdict(exp)]
    if exp.replicated:
        parts += ["", group_note(exp), _plain(group_table(exp, groups)), *sentences(exp)]
    return "\n".join(parts) + "\n"


def markdown(exp: Experiment, groups: pd.DataFrame, coverage: pd.DataFrame) -> str:
    note = validation_note(exp)
    ranking = ranking_table(exp)
    parts = [f"# {headline(exp)}", "", f"**{verdict(exp)}**", "", "## Ranking", "", _md(ranking), "",
             *([note, ""] if note else []), exp.rule]
    if any(HEADERS[c] in ranking.columns for c in GRADIENTS):
        parts += ["", GRADIENT_NOTE]
    if exp.replicated:
        parts += ["", "## Curricula over seeds", "", group_note(exp), "", _md(group_table(exp, groups)), "",
                  *[f"- {s}" for s in sentences(exp)]]
    parts += ["", "## Curriculum parameters", "", _md(parameter_table(exp))]
    if not coverage.empty:
        parts += ["", "## Spectrum coverage by token accuracy", "", _md(coverage_display(coverage))]
    return "\n".join(parts) + "\n"


def html(exp: Experiment, groups: pd.DataFrame, coverage: pd.DataFrame, plots: Sequence[Plot]) -> str:
    """One page, no server needed: tables, and every plot embedded as a data URI and linked to its file."""
    esc = html_lib.escape
    note = validation_note(exp)
    ranking = ranking_table(exp)
    body = [f"<h1>Curriculum search report: {esc(str(exp.meta.get('name') or exp.path.name))}</h1>",
            f"<p class='meta'>{esc(headline(exp))}</p>", _meta_list(exp),
            f"<p class='verdict'>{esc(verdict(exp))}</p>",
            "<h2>Ranking</h2>", _html_table(ranking), *([f"<p class='verdict'>{esc(note)}</p>"] if note else []),
            f"<p class='rule'>{esc(exp.rule)}</p>"]
    if any(HEADERS[c] in ranking.columns for c in GRADIENTS):
        body.append(f"<p class='rule'>{esc(GRADIENT_NOTE)}</p>")
    if exp.replicated:
        body += ["<h2>Curricula over seeds</h2>", f"<p class='rule'>{esc(group_note(exp))}</p>",
                 _html_table(group_table(exp, groups)),
                 "<ul class='tests'>" + "".join(f"<li>{esc(s)}</li>" for s in sentences(exp)) + "</ul>"]
    for plot in plots:
        data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
        rel = f"plots/{plot.path.name}"
        body.append(f"<figure><h2>{esc(plot.title)}</h2><img src='data:image/png;base64,{data}' "
                    f"alt='{esc(plot.name)}' data-file='{rel}'><figcaption>{esc(plot.caption)} "
                    f"<a href='{rel}'>{rel}</a></figcaption></figure>")
    if not coverage.empty:
        body += ["<h2>Spectrum coverage by token accuracy</h2>", _html_table(coverage_display(coverage))]
    body += ["<h2>Curriculum parameters</h2>", _html_table(parameter_table(exp))]
    errors = exp.trials[exp.trials[C.ERROR].notna()] if C.ERROR in exp.trials else exp.trials.iloc[:0]
    if len(errors):
        body += ["<h2>Errors</h2>", "<ul>" + "".join(
            f"<li><b>{esc(str(r[C.LABEL]))}</b> ({esc(str(r[C.TRIAL_ID]))}): <pre>{esc(str(r[C.ERROR]))}</pre></li>"
            for _, r in errors.iterrows()) + "</ul>"]
    return PAGE.format(title=esc(str(exp.meta.get("name") or exp.path.name)), body="\n".join(body))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: curriculum search report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; max-width: 1400px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 0.82em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }}
th {{ background: #f0f0f0; white-space: normal; max-width: 9em;
      vertical-align: bottom; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }} td.txt {{ text-align: left; }}
tr:nth-child(even) td {{ background: #fafafa; }}
.rule, .meta, figcaption {{ color: #555; font-size: 0.9em; max-width: 70em; }}
ul.tests li, .verdict {{ font-weight: 600; }}
.verdict {{ max-width: 70em; background: #f4f8ff; border-left: 4px solid #4a7bd0; padding: 0.5em 0.8em; }}
img {{ max-width: 100%; border: 1px solid #eee; }} figure {{ margin: 1em 0; }}
pre {{ white-space: pre-wrap; font-size: 0.8em; }}
</style></head>
<body>
{body}
</body></html>
"""


def _meta_list(exp: Experiment) -> str:
    keys = ["space_file", "scheduler", "max_t", "grace_period", "reduction_factor", "replicates", "resources",
            "searched", "validation", "started", "finished"]
    items = [f"<b>ranked by</b>: {html_lib.escape(exp.metric)} ({exp.mode})"]
    items += [f"<b>{k}</b>: {html_lib.escape(str(exp.meta[k]))}" for k in keys if exp.meta.get(k) not in (None, "")]
    return "<p class='meta'>" + " &middot; ".join(items) + "</p>"


def _percent(exp: Experiment) -> set[str]:
    """Columns shown as percentages: final and best values of fractions, and the groups' statistics of one."""
    fractions = {c for c in exp.trials.columns if c.startswith(("final ", "best ")) and C.is_fraction(c.split(" ", 1)[1])}
    return fractions | ({"mean", "std", "ci_low", "ci_high"} if C.is_fraction(exp.metric) else set())


def _format(frame: pd.DataFrame, columns: Sequence[str], percent: set[str],
            headers: dict[str, str] | None = None) -> pd.DataFrame:
    headers = {**HEADERS, **(headers or {})}
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        out[headers.get(column, column)] = frame[column].map(_formatter(column, percent))
    return out.reset_index(drop=True)


def _formatter(column: str, percent: set[str]) -> Callable[[object], str]:
    if column in percent:
        return _pct
    if column in INTEGER:
        return lambda v: "" if _missing(v) else f"{int(round(float(v)))}"
    if column == C.FINGERPRINT:
        return _short_fingerprint
    return _general


def _short_fingerprint(v: object) -> str:
    return str(v)[:10] if isinstance(v, str) and v else "unknown"


def _pct(v: object) -> str:
    return "" if _missing(v) else f"{100 * float(v):.1f}%"


def _general(v: object) -> str:
    if _missing(v):
        return ""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v)}"
    return f"{v:.3g}"


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _plain(table: pd.DataFrame) -> str:
    """Fixed-width text: text columns left-aligned, numbers right-aligned."""
    if not len(table):
        return "(no trials)"
    lines = [[str(c) for c in table.columns]] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(table.columns))]
    left = [not all(_numeric(v) for v in table[c]) for c in table.columns]
    return "\n".join("  ".join(cell.ljust(w) if lft else cell.rjust(w) for cell, w, lft in zip(line, widths, left))
                     .rstrip() for line in lines)


def _md(table: pd.DataFrame) -> str:
    if table.empty:
        return "(none)"
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _html_table(table: pd.DataFrame) -> str:
    """A plain HTML table: numbers right-aligned, text left-aligned, headers allowed to wrap."""
    if table.empty:
        return "<p>(none)</p>"
    esc = html_lib.escape
    # Let long dotted names wrap after a dot or an underscore.
    head = "".join(f"<th>{esc(str(c)).replace('.', '.<wbr>').replace('_', '_<wbr>')}</th>" for c in table.columns)
    rows = []
    for row in table.itertuples(index=False):
        cells = "".join(f"<td class='{'num' if _numeric(v) else 'txt'}'>{esc(str(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _numeric(v: object) -> bool:
    text = str(v).strip().rstrip("%")
    try:
        float(text)
    except ValueError:
        return text == ""
    return True
