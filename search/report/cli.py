"""``python -m search.report DIR [--top N] [--metric NAME --mode max|min]``: print the ranking, write ``report/``."""

from __future__ import annotations

import sys
from pathlib import Path

from model.errors import InputError, OneLineParser, exit_on_input_error

from .results import load_experiment
from .write import DEFAULT_TOP, write_experiment


@exit_on_input_error
def main(argv: list[str] | None = None) -> int:
    from . import render

    parser = OneLineParser(prog="python -m search.report",
                           description="Rank an experiment's trials and write its report/ (tables and plots).")
    parser.add_argument("experiment_dir", type=Path, help="a directory written by search.run")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="curricula drawn in the step plots")
    parser.add_argument("--metric", default=None,
                        help="rank by this metric instead of the space's (a name such as val/token_accuracy)")
    parser.add_argument("--mode", choices=("max", "min"), default=None,
                        help="max: higher is better; min: lower (default: the space's for its metric, "
                             "else min for losses and health counts)")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise InputError("command line", "--top", f"must be >= 1, got {args.top}")
    exp = load_experiment(args.experiment_dir, args.metric, args.mode)
    out = write_experiment(exp, top=args.top)
    sys.stdout.write(render.text(exp, exp.groups()) + f"\nreport: {out / 'report.html'}\n")
    return 0
