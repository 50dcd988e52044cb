"""The report: rank an experiment's curricula and write its tables and plots.

The second half of ``search/``: it reads only what the search wrote (``search.json``, ``trials.json``,
Ray's ``params.json`` and ``result.json``): no running Ray, no checkpoints; works mid-search and on an
interrupted or partly errored experiment. One metric everywhere: the space's (``metric`` and ``mode``
in search.json), or the one asked for.

    python -m search.report <experiment_dir> [--top N] [--metric NAME --mode max|min]

prints the ranking and writes ``<experiment_dir>/report/`` (see ``write_report``). In a notebook::

    from search.report import load, load_history
    trials, history = load(exp_dir), load_history(exp_dir)

Modules: ``results`` (read an experiment into frames), ``ranking`` (the rule, replicate groups),
``stats`` (CIs, Welch's test), ``columns`` (column names), ``render`` (text, Markdown, HTML),
``plots`` (figures), ``write`` (the files of ``report/``), ``cli`` (the command line).
"""

from __future__ import annotations

from model.errors import InputError

from .cli import main
from .ranking import group_table, rank, ranking_rule
from .results import Experiment, load, load_experiment, load_history
from .write import coverage_table, write_experiment, write_report

__all__ = ["Experiment", "InputError", "coverage_table", "group_table", "load", "load_experiment", "load_history",
           "main", "rank", "ranking_rule", "write_experiment", "write_report"]
