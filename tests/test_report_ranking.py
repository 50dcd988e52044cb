"""One metric everywhere (issue 13), missing means worst, and only trials validated on the same data
ranked together (issue 8): the ranking, the groups, the tests, the verdict, the tables and the terminal's
top, on hand-built experiments (``experiment_layout``)."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from experiment_layout import MIXED, md_rows, write_experiment

from model import names
from search import report
from search.report import columns as C
from search.report import render

# Three curricula x 2 seeds whose val and val_easy orders disagree: by val A > B > C, by val_easy C > B > A.
DISAGREE = [dict(label=name, curriculum=cur, final=f + d, easy=e + d, seed=s, key=f"{name}{s}")
            for name, cur, f, e in (("A", "revised", 0.90, 0.70), ("B", "original", 0.85, 0.80),
                                    ("C", "delayed", 0.80, 0.90))
            for s, d in ((1, 0.0), (2, 0.01))]
EASY = names.VAL_EASY_ACCURACY


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
    assert render.verdict(exp).startswith(f"Best completed trial: B at 0.1 final {names.VAL_CE}")
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
    note = render.validation_note(exp)
    assert note == ("Not one exam: 2 of 5 trials were validated on other data than the rest (1 with another "
                    "validation fingerprint and 1 with none recorded; the main fingerprint is aa11), so they are "
                    "ranked below the others and left out of the groups and tests.")
    assert render.verdict(exp).startswith("Best completed trial: B") and render.verdict(exp).endswith(note)
    text = render.text(exp, exp.groups())
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
        assert render.validation_note(exp) == ""
        assert "val fingerprint" not in render.text(exp, exp.groups())


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
    assert render.validation_note(report.load_experiment(tmp_path / "exp")) in caplog.text


