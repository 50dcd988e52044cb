"""Column names of the report's tables, in one place: the loader, the ranking, the plots and the HTML use these.

The per-trial frame (``search.report.load``) has one row per trial with these columns, plus one column
per curriculum or searched parameter under its dotted name (``spectrum.intro_step``, ``train.lr``, ...).
The per-evaluation history (``search.report.load_history``) keeps the metric names of
``model.names`` (``val/token_accuracy``, ...) with ``trial_id`` and ``label`` added.
Accuracies, coverage and recall are fractions in [0, 1]; the printed tables show them as percentages.
"""

from __future__ import annotations

RANK = "rank"
TRIAL_ID = "trial_id"
TRIAL_DIR = "trial_dir"
LABEL = "label"
FAMILY = "family"
SEED = "seed"
REPLICATE = "replicate"
STATUS = "status"  # completed | stopped | running | pending | interrupted | diverged | errored
STATUS_DETAIL = "status_detail"  # "stopped by ASHA at step 400", "errored: ...", ...
REACHED_STEP = "reached_step"  # where a stopped trial stopped, or the last step evaluated
ERROR = "error"

FINAL_ACC = "final_val_acc"
BEST_ACC = "best_val_acc"
EASY_ACC = "val_easy_acc"
PEPTIDE_RECALL = "peptide_recall"
NAN_COUNT = "nan_count"
SPIKE_COUNT = "spike_count"
STEPS_TO_90 = "steps_to_90"  # empty when never; ranks as never
FINAL_CE = "final_ce"
FINAL_SPECTRUM = "final_spectrum_loss"
FINAL_PRECURSOR = "final_precursor_loss"
FINAL_COVERAGE = "final_coverage"

# Per auxiliary loss: the step it was introduced (measured, so gates count) and its gradient strength
# at the first evaluation after the intro.
INTRO_AT = {"spectrum": "spectrum_intro_at", "precursor": "precursor_intro_at"}
GRAD_RATIO_AT_INTRO = {"spectrum": "spectrum_grad_ratio", "precursor": "precursor_grad_ratio"}
GRAD_COSINE_AT_INTRO = {"spectrum": "spectrum_grad_cosine", "precursor": "precursor_grad_cosine"}

STEPS = "steps"  # trainer steps done
EVALUATIONS = "evaluations"
WALL_H = "wall_h"
DEVICE_H = "device_h"  # wall hours x devices held: GPU hours, or CPU-core hours on a CPU-only search

FRACTIONS = (FINAL_ACC, BEST_ACC, EASY_ACC, PEPTIDE_RECALL, FINAL_COVERAGE)

# Status order for the ranking: completed first, then trials that stopped short, then failures.
TIER = {"completed": 0, "stopped": 1, "running": 1, "pending": 1, "interrupted": 1, "diverged": 2, "errored": 3}
FINISHED_OK = "completed"

# Group table (replicates of one curriculum).
GROUP = "group"
GROUP_SEEDS = "n"  # completed seeds that the statistics use
GROUP_TRIALS = "trials"
GROUP_STOPPED = "stopped"
GROUP_FAILED = "failed"
