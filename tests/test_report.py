"""The report: loading an experiment directory, the ranking rule, replicate groups, the files it writes.

Most tests build an experiment by hand in tmp_path (``experiment_layout``); the end-to-end tests at the
bottom run the real search.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from experiment_layout import EVAL_EVERY, MAX_T, MIXED, md_rows, write_experiment

from model import names
from search import report
from search.report import columns as C

ROOT = Path(__file__).resolve().parents[1]
FINAL = C.final(names.VAL_ACCURACY)  # the hand-built experiments rank by val/token_accuracy unless told


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
  spectrum: {intro_step: 25, start_weight: 0.0, final_weight: 0.0}
search:
  # Every loss NaN from step 0 (never learns: ASHA stops it at step 10) or from step 12 (a streak of
  # 15 NaN steps diverges it at step 27).
  train.debug_nonfinite_from_step: {dist: grid, values: [0, 12]}
  spectrum.final_weight: {dist: grid, values: [0.05]}
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
    """revised ends at 7-14 residues with 34 noise peaks, original at 21, the fixed stage at 7-10 clean:
    every trial is validated at 7-14 with 34 noise peaks."""
    meta = json.loads((searched / "search.json").read_text())
    assert {k: meta["validation"][k] for k in ("min_length", "max_length", "noise_peaks", "size")} == \
        {"min_length": 7, "max_length": 14, "noise_peaks": 34, "size": 64}
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
