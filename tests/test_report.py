"""The report: loading an experiment directory, the ranking rule, replicate groups, the files it writes.

Most tests build an experiment by hand in tmp_path with exactly the layout search.run writes
(search.json, trials.json, Ray trial directories with params.json and result.json), from seeded curves;
the end-to-end test at the bottom runs the real search.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import names
from model.curriculum import load_curriculum
from search import report
from search.report import columns as C

ROOT = Path(__file__).resolve().parents[1]
FINAL = C.final(names.VAL_ACCURACY)  # the hand-built experiments rank by val/token_accuracy unless told
MAX_T = 1000
EVAL_EVERY = 100


# --- a hand-made experiment ----------------------------------------------------------------------

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


def test_ranking_rule_statuses_and_ties(tmp_path):
    ids = write_experiment(tmp_path / "exp", MIXED)
    trials = report.load(tmp_path / "exp")
    assert list(trials[C.LABEL]) == ["B", "D", "C", "A", "S2", "S3", "S1", "X", "E"]
    assert list(trials[C.RANK]) == list(range(1, 10))
    by = trials.set_index(C.LABEL)
    assert by.loc["S2", C.STATUS_DETAIL] == "stopped by ASHA at step 800"
    assert by.loc["X", C.STATUS] == "diverged" and by.loc["X", C.STATUS_DETAIL] == "diverged at step 600"
    assert by.loc["E", C.STATUS_DETAIL] == "errored: RuntimeError: CUDA OOM"
    assert math.isnan(by.loc["E", FINAL]) and by.loc["E", C.EVALUATIONS] == 0
    assert by.loc["B", C.TRIAL_ID] == ids["B"]
    assert by.loc["A", C.NAN_COUNT] == 2 and by.loc["C", C.SPIKE_COUNT] == 3


def test_steps_to_90_breaks_ties_and_never_ranks_last(tmp_path):
    # Same final accuracy and health; the fast riser reaches 90% first, the third never does.
    specs = [dict(label="slow", final=0.95, tau=400.0), dict(label="fast", final=0.95, tau=100.0),
             dict(label="never", final=0.89)]
    write_experiment(tmp_path / "exp", specs)
    trials = report.load(tmp_path / "exp")
    trials[FINAL] = 0.9  # force the accuracy tie; the rule must fall through to steps to 90%
    ranked = report.rank(trials.drop(columns=C.RANK))
    assert list(ranked[C.LABEL]) == ["fast", "slow", "never"]
    assert math.isnan(ranked.set_index(C.LABEL).loc["never", C.STEPS_TO_90])


def test_columns_parameters_and_missing_values(tmp_path):
    write_experiment(tmp_path / "exp", [dict(label="rev", final=0.7, curriculum="revised"),
                                        dict(label="orig", final=0.6, curriculum="original"),
                                        dict(label="cut", final=0.5, status="stopped", stop_at=200)])
    trials = report.load(tmp_path / "exp").set_index(C.LABEL)
    # Readable curriculum parameters: the scaled intro steps (revised: 15K and 30K of 100K, at MAX_T 1000).
    assert trials.loc["rev", "spectrum.intro_step"] == 150 and trials.loc["rev", "precursor.intro_step"] == 300
    assert trials.loc["rev", "spectrum.start_weight"] == pytest.approx(0.08)
    assert math.isnan(trials.loc["orig", "precursor.intro_step"])  # the original never adds it
    assert trials.loc["rev", C.INTRO_AT["spectrum"]] == 150
    assert trials.loc["rev", C.GRAD_RATIO_AT_INTRO["spectrum"]] == pytest.approx(0.2 + 0.1 * 2 / 10)
    assert math.isnan(trials.loc["orig", C.GRAD_RATIO_AT_INTRO["precursor"]])
    # Stopped at 200: the spectrum loss came in at 150, the precursor loss planned for 300 never did.
    assert trials.loc["cut", C.INTRO_AT["spectrum"]] == 150 and math.isnan(trials.loc["cut", C.INTRO_AT["precursor"]])
    assert trials.loc["rev", C.STEPS_TO_90] != trials.loc["rev", C.STEPS_TO_90]  # NaN: never reached 90%
    assert 0 < trials.loc["rev", C.final(names.VAL_PEPTIDE_RECALL)] < 1  # only the last evaluation had it
    assert trials.loc["rev", C.STEPS] == MAX_T and trials.loc["rev", C.WALL_H] == pytest.approx(500 / 3600)
    history = report.load_history(tmp_path / "exp")
    assert len(history) == 2 * MAX_T // EVAL_EVERY + 2
    assert history[names.VAL_PEPTIDE_RECALL].notna().sum() == 3  # -1 became NaN
    assert "config" not in history and "timestamp" not in history


def test_replicates_grouped_with_ci_and_welch_sentence(tmp_path):
    finals = {"revised": [0.82, 0.84, 0.83], "original": [0.79, 0.80, 0.81]}
    specs = [dict(label=name, family=name, curriculum=name, final=f, seed=s, replicate=r, key=f"{name}{r}")
             for name, fs in finals.items() for r, (s, f) in enumerate(zip((1, 2, 3), fs))]
    specs += [dict(label="delayed", curriculum="delayed", final=0.70, seed=1, key="delayed1"),  # one seed left
              dict(label="delayed", curriculum="delayed", final=0.3, seed=2, status="diverged", stop_at=500,
                   key="delayed2"),
              dict(label="single", final=0.99, seed=1)]  # one trial: no group, no comparison
    write_experiment(tmp_path / "exp", specs)
    exp = report.load_experiment(tmp_path / "exp")
    assert exp.replicated
    groups = exp.groups().set_index(C.GROUP)
    assert list(groups.index) == ["revised", "original", "delayed"]
    rev = exp.completed().query(f"{C.LABEL} == 'revised'")[FINAL]
    assert groups.loc["revised", C.GROUP_SEEDS] == 3
    assert groups.loc["delayed", [C.GROUP_SEEDS, C.GROUP_TRIALS, C.GROUP_FAILED]].tolist() == [1, 2, 1]
    assert exp.trials[C.LABEL].iloc[0] == "single"
    assert groups.loc["revised", "mean"] == pytest.approx(rev.mean())
    assert groups.loc["revised", "std"] == pytest.approx(rev.std(ddof=1))
    half = 4.302652729911275 * rev.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert groups.loc["revised", "ci_low"] == pytest.approx(rev.mean() - half)
    text = [c.sentence() for c in exp.comparisons()]
    assert re.fullmatch(r"revised beats original by \d\.\d points, p = 0\.0\d+, 3 seeds each\.", text[0]), text
    assert len(text) == 2
    assert text[1].startswith("revised beats delayed by") and "no test (delayed has 1 seed;" in text[1]


def test_interrupted_without_trials_json_infers_status(tmp_path):
    specs = [dict(label="done", final=0.8), dict(label="cut", final=0.6, status="running", stop_at=500),
             dict(label="empty", final=0.0, status="running", results=False)]
    write_experiment(tmp_path / "exp", specs, status="interrupted", trials_json=False)
    cut = next((tmp_path / "exp").glob("*label=cut*")) / "result.json"
    cut.write_text(cut.read_text() + '{"step": 600, "val/tok')  # a line cut short by the interruption
    (cut.parent.parent / "broken_trial").mkdir()
    (cut.parent.parent / "broken_trial" / "params.json").write_text("{")  # listed, not fatal
    trials = report.load(tmp_path / "exp").set_index(C.LABEL)
    assert trials.loc["done", C.STATUS] == "completed"
    assert trials.loc["cut", C.STATUS_DETAIL] == "interrupted at step 500"
    assert trials.loc["empty", C.STATUS] == "interrupted"
    assert trials.loc["broken_trial", C.STATUS] == "interrupted"
    assert list(trials[C.RANK]) == [1, 2, 3, 4]


def test_mid_search_stale_trials_json(tmp_path):
    specs = [dict(label="on", final=0.5, status="running", stop_at=300), dict(label="q", final=0.0,
             status="pending", results=False)]
    write_experiment(tmp_path / "exp", specs, status="running")
    trials = report.load(tmp_path / "exp").set_index(C.LABEL)
    assert trials.loc["on", C.STATUS_DETAIL] == "running at step 300"
    assert trials.loc["q", C.STATUS] == "pending"


def test_report_of_an_experiment_that_has_just_started(tmp_path):
    write_experiment(tmp_path / "exp", [], status="running", searched=["spectrum.intro_step"])
    out = report.write_report(tmp_path / "exp")
    assert report.load(tmp_path / "exp").empty
    assert "0 trials (none yet)" in (out / "report.html").read_text()
    assert list((out / "plots").glob("*.png")) == []


def test_write_report_files_and_html_references_every_plot(tmp_path):
    specs = [dict(label=n, curriculum=n, final=f, seed=s, key=f"{n}{s}") for n, fs in
             {"revised": (0.93, 0.94), "original": (0.90, 0.91)}.items() for s, f in zip((1, 2), fs)]
    specs += [dict(label="S", final=0.5, status="stopped", stop_at=400, params={"spectrum.final_weight": 0.3}),
              dict(label="X", final=0.4, status="diverged", stop_at=600, nans=12)]
    for s in specs:
        s.setdefault("params", {"spectrum.final_weight": 0.1 + 0.05 * len(s["label"])})
    write_experiment(tmp_path / "exp", specs, searched=["spectrum.final_weight"])
    out = report.write_report(tmp_path / "exp")
    assert out == tmp_path / "exp" / "report"
    for name in ("ranking.csv", "ranking.md", "groups.csv", "coverage.csv", "trials.parquet",
                 "history.parquet", "report.html"):
        assert (out / name).is_file(), name
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in pngs} == {"accuracy_vs_step", "losses_vs_step", "accuracy_by_curriculum",
                                      "accuracy_vs_params", "coverage_vs_accuracy"}
    page = (out / "report.html").read_text()
    for png in pngs:
        assert f"plots/{png.name}" in page
        assert base64.b64encode(png.read_bytes()).decode() in page  # embedded: opens with no server
    assert report.ranking_rule(names.VAL_ACCURACY, "max") in page and "revised beats original" in page
    assert list(pd.read_csv(out / "groups.csv")[C.GROUP]) == ["revised", "original"]  # singletons are not groups
    ranking = pd.read_csv(out / "ranking.csv")
    assert list(ranking[C.LABEL])[-2:] == ["S", "X"] and ranking[C.RANK].tolist() == list(range(1, 7))
    assert len(pd.read_parquet(out / "trials.parquet")) == 6
    md = (out / "ranking.md").read_text()
    assert "| rank | curriculum | seed | status | final val/token_accuracy | best val/token_accuracy |" in md
    assert report.ranking_rule(names.VAL_ACCURACY, "max") in md
    coverage = pd.read_csv(out / "coverage.csv")
    assert coverage["n"].sum() == pd.read_parquet(out / "history.parquet")[names.VAL_COVERAGE].notna().sum()
    # Rewriting is idempotent, and drops plots that no longer apply.
    (out / "plots" / "old.png").write_bytes(b"x")
    report.write_report(tmp_path / "exp")
    assert not (out / "plots" / "old.png").exists()


def test_cli_prints_ranking_and_rule(tmp_path, capsys):
    write_experiment(tmp_path / "exp", MIXED[:3])
    assert report.main([str(tmp_path / "exp"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.index(" B ") < out.index(" C ") < out.index(" A ")
    assert report.ranking_rule(names.VAL_ACCURACY, "max") in out and "report.html" in out
    assert "Best completed trial: B at 85.0% final val/token_accuracy" in out
    assert ("Every configuration ran with one seed, so no difference can be tested; the 3 completed trials span "
            "5.0 points of final val/token_accuracy") in out


def test_cli_rejects_a_directory_that_is_no_experiment(tmp_path):
    (tmp_path / "junk").mkdir()
    run = subprocess.run([sys.executable, "-m", "search.report", str(tmp_path / "junk")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith(f"error: {tmp_path / 'junk'}: search.json: not an experiment directory")


@pytest.mark.parametrize("argv, message", [([], "error: command line: arguments: the following arguments"),
                                            (["--top", "0", "."], "error: command line: --top: must be >= 1")])
def test_cli_bad_arguments_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(message) and err.count("\n") == 1


def test_bad_search_json_is_an_input_error(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "search.json").write_text("{not json")
    with pytest.raises(report.InputError, match="search.json: line 1: not valid JSON"):
        report.load(tmp_path / "exp")


# --- one metric everywhere (issue 13), missing means worst, one validation set (issue 8) ----------

# Three curricula x 2 seeds whose val and val_easy orders disagree: by val A > B > C, by val_easy C > B > A.
DISAGREE = [dict(label=name, curriculum=cur, final=f + d, easy=e + d, seed=s, key=f"{name}{s}")
            for name, cur, f, e in (("A", "revised", 0.90, 0.70), ("B", "original", 0.85, 0.80),
                                    ("C", "delayed", 0.80, 0.90))
            for s, d in ((1, 0.0), (2, 0.01))]
EASY = names.VAL_EASY_ACCURACY


def md_rows(md: str, section: str = "## Ranking") -> list[dict[str, str]]:
    """The rows of the first Markdown table after ``section``, as dicts by header."""
    lines = md.split(section, 1)[1].splitlines()
    lines = lines[next(i for i, x in enumerate(lines) if x.startswith("|")):]
    table = lines[: next((i for i, x in enumerate(lines) if not x.startswith("|")), len(lines))]
    cells = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in table]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def test_metric_from_search_json_ranks_groups_and_judges(tmp_path):
    write_experiment(tmp_path / "exp", DISAGREE, metric=EASY)
    exp = report.load_experiment(tmp_path / "exp")
    assert (exp.metric, exp.mode) == (EASY, "max")
    assert list(exp.trials[C.LABEL]) == ["C", "C", "B", "B", "A", "A"]
    assert list(exp.groups()[C.GROUP]) == ["C", "B", "A"]
    assert exp.comparisons()[0].best == "C" and exp.comparisons()[0].other == "B"
    out = report.write_experiment(exp)
    md = (out / "ranking.md").read_text()
    assert "Best completed trial: C at 91.0% final val_easy/token_accuracy" in md
    assert "C beats B by 10.0 points" in md and "C beats A by 20.0 points" in md
    rows = md_rows(md)
    assert [r["curriculum"] for r in rows] == ["C", "C", "B", "B", "A", "A"]
    assert list(rows[0])[4:6] == [f"final {EASY}", f"best {EASY}"]
    assert rows[0][f"final {names.VAL_ACCURACY}"] == "81.0%"  # the other accuracies stay, as extra columns
    assert [r["curriculum"] for r in md_rows(md, "## Curricula over seeds")] == ["C", "B", "A"]
    assert f"mean {EASY}" in md_rows(md, "## Curricula over seeds")[0]
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups[C.GROUP]) == ["C", "B", "A"] and groups["mean"].iloc[0] == pytest.approx(0.905)
    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking[f"final {EASY}"].is_monotonic_decreasing and f"final {names.VAL_ACCURACY}" in ranking


def test_mode_min_on_a_loss_sorts_ascending_and_missing_is_worst(tmp_path):
    specs = [dict(label="A", final=0.90, ce=0.30, seed=1, key="A1"), dict(label="A", final=0.91, ce=0.32, seed=2,
                                                                       key="A2"),
             dict(label="B", final=0.80, ce=0.10, seed=1, key="B1"), dict(label="B", final=0.81, ce=0.12, seed=2,
                                                                       key="B2"),
             dict(label="never", final=0.95, ce=float("nan"), seed=1),  # no CE on any row: MISSING
             dict(label="cut", final=0.5, ce=0.01, status="stopped", stop_at=400, seed=1)]
    write_experiment(tmp_path / "exp", specs, metric=names.VAL_CE, mode="min")
    exp = report.load_experiment(tmp_path / "exp")
    assert list(exp.trials[C.LABEL]) == ["B", "B", "A", "A", "never", "cut"]
    assert math.isnan(exp.trials.set_index(C.LABEL).loc["never", C.final(names.VAL_CE)])
    assert exp.trials[C.best(names.VAL_CE)].iloc[0] == pytest.approx(0.10)  # the lowest over the evaluations
    assert list(exp.groups()[C.GROUP]) == ["B", "A"]
    comparison = exp.comparisons()[0]
    assert (comparison.best, comparison.other) == ("B", "A") and comparison.difference == pytest.approx(0.2)
    assert comparison.sentence().startswith("B beats A by 0.2, p = ")
    assert report.render.verdict(exp).startswith(f"Best completed trial: B at 0.1 final {names.VAL_CE}")
    assert "lowest first" in exp.rule


def test_default_metric_is_residue_accuracy(tmp_path):
    write_experiment(tmp_path / "exp", DISAGREE[:2], metric=None)
    exp = report.load_experiment(tmp_path / "exp")
    assert (exp.metric, exp.mode) == (names.VAL_RESIDUE_ACCURACY, "max")
    assert exp.trials[C.final(names.VAL_RESIDUE_ACCURACY)].iloc[0] == pytest.approx(0.89)


def test_cli_reranks_by_another_metric_and_rejects_an_unknown_one(tmp_path, capsys):
    write_experiment(tmp_path / "exp", DISAGREE)
    assert report.main([str(tmp_path / "exp")]) == 0
    assert md_rows((tmp_path / "exp" / "report" / "ranking.md").read_text())[0]["curriculum"] == "A"
    assert report.main([str(tmp_path / "exp"), "--metric", EASY]) == 0
    out = capsys.readouterr().out
    assert f"final {EASY}" in out and "Best completed trial: C" in out
    assert md_rows((tmp_path / "exp" / "report" / "ranking.md").read_text())[0]["curriculum"] == "C"
    assert report.main([str(tmp_path / "exp"), "--metric", names.VAL_CE, "--mode", "max"]) == 0
    assert "Best completed trial: C" in capsys.readouterr().out  # the highest CE, as asked
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path / "exp"), "--metric", "val/acc"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'exp'}: --metric: 'val/acc' is not a metric of this experiment; "
                          "it has: ") and f" {EASY}" in err and "search/" not in err


FINGERPRINTED = [dict(label="A", final=0.80, fingerprint="aa11"), dict(label="B", final=0.85, fingerprint="aa11"),
                 dict(label="C", final=0.70, summary_fingerprint="aa11"),  # only in summary.json
                 dict(label="odd", final=0.99, fingerprint="bb22"),  # another exam: better, but not comparable
                 dict(label="old", final=0.95)]  # none recorded


def test_only_trials_with_one_fingerprint_rank_together(tmp_path):
    write_experiment(tmp_path / "exp", FINGERPRINTED)
    exp = report.load_experiment(tmp_path / "exp")
    assert list(exp.trials[C.LABEL]) == ["B", "A", "C", "odd", "old"]
    assert exp.trials[C.SAME_VALIDATION].tolist() == [True, True, True, False, False]
    assert exp.trials.set_index(C.LABEL).loc["C", C.FINGERPRINT] == "aa11"
    note = report.render.validation_note(exp)
    assert note == ("Not one exam: 2 of 5 trials were validated on other data than the rest (1 with another "
                    "validation fingerprint and 1 with none recorded; the main fingerprint is aa11), so they are "
                    "ranked below the others and left out of the groups and tests.")
    assert report.render.verdict(exp).startswith("Best completed trial: B") and report.render.verdict(exp).endswith(note)
    text = report.render.text(exp, exp.groups())
    assert text.count(note) == 2  # under the printed ranking, and in the verdict
    assert "val fingerprint" in text and "unknown" in text
    md = (report.write_experiment(exp) / "ranking.md").read_text()
    assert note in md and [r["val fingerprint"] for r in md_rows(md)] == ["aa11"] * 3 + ["bb22", "unknown"]


def test_one_fingerprint_or_none_at_all_says_nothing(tmp_path):
    for name, fingerprint in (("same", "cc33"), ("none", None)):
        write_experiment(tmp_path / name, [dict(label=x, final=f, fingerprint=fingerprint)
                                           for x, f in (("A", 0.8), ("B", 0.9))])
        exp = report.load_experiment(tmp_path / name)
        assert list(exp.trials[C.LABEL]) == ["B", "A"] and exp.trials[C.SAME_VALIDATION].all()
        assert report.render.validation_note(exp) == ""
        assert "val fingerprint" not in report.render.text(exp, exp.groups())


def test_replicates_on_other_validation_data_are_not_grouped(tmp_path):
    specs = [dict(spec, fingerprint="aa11") for spec in DISAGREE[:4]]
    specs[1]["fingerprint"] = "bb22"  # A's second seed sat another exam: A has one comparable seed left
    write_experiment(tmp_path / "exp", specs)
    exp = report.load_experiment(tmp_path / "exp")
    assert list(exp.groups()[C.GROUP]) == ["B"] and exp.replicated_labels() == ["B"]
    assert exp.comparisons() == []


def test_gradient_strength_std_beside_the_mean_with_the_seeds_figures(tmp_path):
    write_experiment(tmp_path / "exp", [dict(label="A", final=0.8, grad_std=True), dict(label="B", final=0.7)])
    exp = report.load_experiment(tmp_path / "exp")
    by = exp.trials.set_index(C.LABEL)
    assert by.loc["A", C.GRAD_RATIO_STD_AT_INTRO["spectrum"]] == pytest.approx(0.05 + 0.01 * 2)
    assert math.isnan(by.loc["B", C.GRAD_RATIO_STD_AT_INTRO["spectrum"]])
    md = (report.write_experiment(exp) / "ranking.md").read_text()
    header = list(md_rows(md)[0])
    ratio = header.index("spectrum grad ratio")
    assert header[ratio + 1] == "spectrum grad ratio std"
    assert "0.16 (weak)" in md and "0.25" in md
    write_experiment(tmp_path / "old", [dict(label="A", final=0.8)])
    assert "grad ratio std" not in (report.write_report(tmp_path / "old") / "ranking.md").read_text()


def test_the_search_prints_the_top_of_ranking_md(tmp_path, caplog):
    """search.run's end: the terminal's top lists the trials of report/ranking.md, in the same order."""
    import logging

    from search.run import finish

    specs = [*MIXED, *[dict(spec, seed=9) for spec in FINGERPRINTED]]
    write_experiment(tmp_path / "exp", specs, metric=names.VAL_CE, mode="min")
    meta = json.loads((tmp_path / "exp" / "search.json").read_text())
    with caplog.at_level(logging.INFO, logger="search"):
        outcome = finish(tmp_path / "exp", meta, make_report=True)
    assert outcome["status"] == "finished"
    printed = caplog.text[caplog.text.index("top 5 of 14 by val/ce_loss (min):"):].splitlines()[1:6]
    top = [re.match(r"\s+(\d+)\.\s+\S*\s+(.+?)  seed (\d+)  \[(.+)\]  \S+$", line).groups() for line in printed]
    rows = md_rows((tmp_path / "exp" / "report" / "ranking.md").read_text())[:5]
    assert top == [(r["rank"], r["curriculum"], r["seed"], r["status"]) for r in rows]
    # By lowest CE among the trials on the main validation data; the others below them (odd and old have a
    # lower CE than all three).
    assert [r["curriculum"] for r in rows] == ["B", "A", "C", "odd", "old"]
    assert report.render.validation_note(report.load_experiment(tmp_path / "exp")) in caplog.text


# --- end to end: a real search, then its report ----------------------------------------------------

E2E_SPACE = """
name: report_e2e
description: "two named curricula x 2 seeds; a configuration that never learns, one that diverges"
metric: val/token_accuracy
mode: max
trainer:
  preset: tiny
  overrides:
    optim.max_steps: 30
    optim.warmup_steps: 2
    train.eval_interval: 10
    train.stop_at_accuracy: 0.0
    train.max_nonfinite_streak: 15
    data.batch_size: 16
    data.val_size: 64
curriculum:
  stages:
    - {name: all, steps: 30, min_length: 7, max_length: 10, noise_peaks: 0}
  spectrum: {intro_step: 0, start_weight: 0.0, final_weight: 0.0}
search:
  # Every loss NaN from step 0 (never learns: ASHA stops it at step 10) or from step 12 (a streak of
  # 15 NaN steps diverges it at step 27).
  train.debug_nonfinite_from_step: {dist: grid, values: [0, 12]}
  spectrum.final_weight: {dist: grid, values: [0.0]}
named:
  curricula: [revised, original]
  scale: 0.0004
searcher:
  algorithm: grid
  seed: 0
  max_concurrent: 1  # one at a time: which trial reaches the rung first is then fixed
seeds: [0, 1]
scheduler:
  type: asha
  max_t: 30
  grace_period: 10
  reduction_factor: 3
  # The named curricula switch the spectrum loss on at step 6, so ASHA skips their rung at step 10
  # and both seeds of each run to the end: the replicates the report groups.
  settle_steps: 10
resources: {cpu: 1, gpu: 0}
failure: {max_failures: 0, num_to_keep: 1}
wandb: {project: curriculum-search, mode: disabled}
"""


@pytest.fixture(scope="module")
def searched(ray_head, tmp_path_factory) -> Path:
    """A real search (Ray Tune on the session's head node, ASHA, grid searcher, the tiny trainer): 8 trials."""
    from conftest import run_search

    root = tmp_path_factory.mktemp("e2e")
    (root / "space.yaml").write_text(E2E_SPACE)
    run = run_search(["--space", str(root / "space.yaml"), "--storage", str(root / "out"), "--live-interval", "1000",
                      "--wandb-mode", "disabled"], env=ray_head.client_env(), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (root / "stdout.txt").write_text(run.stdout)
    return root / "out" / "report_e2e"


@pytest.mark.slow
def test_end_to_end_statuses_of_stopped_and_diverged_trials(searched):
    t = report.load(searched)
    assert len(t) == 8
    for name in ("revised", "original"):
        assert t.loc[t[C.LABEL] == name, C.STATUS].tolist() == ["completed", "completed"]
    never = t[t[C.LABEL].str.contains("from_step=0")]
    assert never[C.STATUS_DETAIL].tolist() == ["stopped by ASHA at step 10"] * 2
    late = t[t[C.LABEL].str.contains("from_step=12")]
    diverged = late[late[C.STATUS] == "diverged"]
    assert len(diverged) >= 1  # the second seed may be stopped at step 10 first, if it is the weaker there
    assert diverged[C.STATUS_DETAIL].tolist() == ["diverged at step 27"] * len(diverged)
    assert (diverged[C.NAN_COUNT] == 15).all()
    # Every early stop the search recorded is in the report, at the same step.
    index = json.loads((searched / "trials.json").read_text())
    by_id = t.set_index(C.TRIAL_ID)
    for tid, entry in index.items():
        if entry["status"] == "stopped":
            assert by_id.loc[tid, C.STATUS] == "stopped" and by_id.loc[tid, C.REACHED_STEP] == entry["stopped_at_step"]


@pytest.mark.slow
def test_end_to_end_ranking_rule(searched):
    t = report.load(searched)
    tiers = t[C.STATUS].map(C.TIER).tolist()
    assert tiers == sorted(tiers) and tiers[-1] == C.TIER["diverged"]
    done = t[t[C.STATUS] == "completed"]
    assert done[FINAL].is_monotonic_decreasing and len(done) == 4
    stopped = t[t[C.STATUS] == "stopped"]
    keys = list(zip(-stopped[C.REACHED_STEP], -stopped[FINAL]))
    assert keys == sorted(keys)


@pytest.mark.slow
def test_end_to_end_groups_replicates_and_tests_them(searched):
    from scipy import stats as sps

    exp = report.load_experiment(searched)
    groups = exp.groups().set_index(C.GROUP)
    assert groups.loc["revised", C.GROUP_SEEDS] == 2 and groups.loc["original", C.GROUP_SEEDS] == 2
    done = exp.completed()
    values = {name: done.loc[done[C.LABEL] == name, FINAL].to_numpy() for name in ("revised", "original")}
    best, other = sorted(values, key=lambda n: -values[n].mean())
    comparison = next(c for c in exp.comparisons() if {c.best, c.other} == {best, other})
    assert comparison.best == best
    assert comparison.p_value == pytest.approx(sps.ttest_ind(values[best], values[other], equal_var=False).pvalue)
    assert comparison.difference == pytest.approx(100 * (values[best].mean() - values[other].mean()))
    assert f"{best} beats {other} by" in comparison.sentence() and "2 seeds each" in comparison.sentence()


@pytest.mark.slow
def test_end_to_end_report_written_by_the_search_references_every_plot(searched):
    out = searched / "report"
    page = (out / "report.html").read_text()  # written by search.run at its end
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in pngs} == {"accuracy_vs_step", "losses_vs_step", "accuracy_by_curriculum",
                                      "accuracy_vs_params", "coverage_vs_accuracy"}
    for png in pngs:
        assert f"plots/{png.name}" in page and base64.b64encode(png.read_bytes()).decode() in page
    assert report.main([str(searched)]) == 0  # the command line rewrites it at any time
    assert (out / "ranking.csv").is_file() and (out / "trials.parquet").is_file()


@pytest.mark.slow
def test_end_to_end_terminal_top_is_the_head_of_ranking_md(searched):
    out = (searched.parent.parent / "stdout.txt").read_text()
    head = out[out.index(f"top 5 of 8 by {names.VAL_ACCURACY} (max):"):].splitlines()[1:6]
    top = [re.match(r"\s+(\d+)\.\s+\S*\s+(.+?)  seed (\d+)  \[(.+)\]  \S+$", line).groups() for line in head]
    rows = md_rows((searched / "report" / "ranking.md").read_text())[:5]
    assert top == [(r["rank"], r["curriculum"], r["seed"], r["status"]) for r in rows]


@pytest.mark.slow
def test_end_to_end_every_trial_is_given_the_one_validation_set(searched):
    """revised ends at 7-14 residues with 8 noise peaks, original at 5, the fixed stage at 7-10 clean:
    every trial is validated at 7-14 with 8 noise peaks."""
    meta = json.loads((searched / "search.json").read_text())
    assert {k: meta["validation"][k] for k in ("min_length", "max_length", "noise_peaks", "size")} == \
        {"min_length": 7, "max_length": 14, "noise_peaks": 8, "size": 64}
    t = report.load(searched)
    for trial_dir in t[C.TRIAL_DIR]:
        overrides = json.loads((searched / trial_dir / "params.json").read_text())["trainer"]["overrides"]
        assert {k: overrides[f"data.val_{k}"] for k in meta["validation"]} == meta["validation"]


@pytest.mark.slow
def test_end_to_end_all_trials_report_one_fingerprint(searched):
    """Needs the trainer side of issue 8 (model/: data.val_* honoured, names.VAL_FINGERPRINT reported)."""
    t = report.load(searched)
    fingerprints = set(t[C.FINGERPRINT])
    assert len(fingerprints) == 1, fingerprints
    (fingerprint,) = fingerprints
    assert isinstance(fingerprint, str) and int(fingerprint, 16) >= 0
    assert t[C.SAME_VALIDATION].all()
