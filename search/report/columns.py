"""Column names of the report's tables, in one place: the loader, the ranking, the plots and the HTML use these.

The per-trial frame (``search.report.load``) has one row per trial with these columns, plus one column
per curriculum or searched parameter under its dotted name (``spectrum.intro_step``, ``train.lr``, ...).
Final values are named by their metric: ``final val/residue_accuracy``, ``final val/ce_loss``, ...
(``final(metric)``); the ranking metric also has ``best <metric>`` (``best(metric)``), its best value
over the trial's evaluations for the ranking's mode.
The per-evaluation history (``search.report.load_history``) keeps the metric names of
``model.names`` (``val/residue_accuracy``, ...) with ``trial_id`` and ``label`` added.
Accuracies, coverage and recall are fractions in [0, 1]; the printed tables show them as percentages.
"""

from __future__ import annotations

from model import names

DEFAULT_METRIC = names.VAL_RESIDUE_ACCURACY  # when search.json names none
# Every numeric metric the trainer reports (the fingerprint is a hex string).
NAMED_METRICS = tuple(sorted(v for k, v in vars(names).items()
                             if k.isupper() and isinstance(v, str) and "/" in v and v != names.VAL_FINGERPRINT))


def final(metric: str) -> str:
    """The column of a metric's last value: ``final val/residue_accuracy``."""
    return f"final {metric}"


def best(metric: str) -> str:
    """The column of the ranking metric's best value over the trial's evaluations."""
    return f"best {metric}"


def is_fraction(metric: str) -> bool:
    """Accuracies, recall, precision and coverage: fractions in [0, 1], shown as percentages."""
    return metric.endswith(("accuracy", "recall", "precision", "coverage"))


def default_mode(metric: str) -> str:
    """``min`` for losses and health counts (lower is better), ``max`` for everything else."""
    lower = (names.NAN_COUNT, names.SPIKE_COUNT, names.STEPS_TO_90, names.NONFINITE_STREAK)
    return "min" if metric.endswith("loss") or metric in lower else "max"


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
# The hash of the validation tensors the trial was judged on (names.VAL_FINGERPRINT); None: unknown
# (an experiment from before the fingerprint). Only trials with the same one are ranked together.
FINGERPRINT = "val_fingerprint"
SAME_VALIDATION = "same_validation"  # True: ranked together with the others (the experiment's main exam)

# The last value of these metrics, each as ``final(metric)``; the ranking metric is added when not here.
FINAL_METRICS = (names.VAL_RESIDUE_ACCURACY, names.VAL_ACCURACY, names.VAL_EASY_RESIDUE_ACCURACY,
                 names.VAL_EASY_ACCURACY, names.VAL_PEPTIDE_RECALL, names.VAL_REAL_RESIDUE_ACCURACY,
                 names.VAL_REAL_PEPTIDE_RECALL, names.VAL_CE, names.VAL_SPECTRUM, names.VAL_PRECURSOR,
                 names.VAL_COVERAGE)
ACCURACIES = tuple(final(m) for m in FINAL_METRICS if is_fraction(m) and m != names.VAL_COVERAGE)
FINAL_CE = final(names.VAL_CE)
FINAL_SPECTRUM = final(names.VAL_SPECTRUM)
FINAL_PRECURSOR = final(names.VAL_PRECURSOR)
FINAL_COVERAGE = final(names.VAL_COVERAGE)
NAN_COUNT = "nan_count"
SPIKE_COUNT = "spike_count"
STEPS_TO_90 = "steps_to_90"  # empty when never; ranks as never

# Per auxiliary loss: the step it was introduced (measured, so gates count) and its gradient strength
# at the first evaluation after the intro (the ratio's mean and, where the trainer reports it, its std).
INTRO_AT = {"spectrum": "spectrum_intro_at", "precursor": "precursor_intro_at"}
GRAD_RATIO_AT_INTRO = {"spectrum": "spectrum_grad_ratio", "precursor": "precursor_grad_ratio"}
GRAD_RATIO_STD_AT_INTRO = {"spectrum": "spectrum_grad_ratio_std", "precursor": "precursor_grad_ratio_std"}
GRAD_COSINE_AT_INTRO = {"spectrum": "spectrum_grad_cosine", "precursor": "precursor_grad_cosine"}

STEPS = "steps"  # trainer steps done
EVALUATIONS = "evaluations"
WALL_H = "wall_h"
DEVICE_H = "device_h"  # wall hours x devices held: GPU hours, or CPU-core hours on a CPU-only search

# Status order for the ranking: completed first, then trials that stopped short, then failures.
TIER = {"completed": 0, "stopped": 1, "running": 1, "pending": 1, "interrupted": 1, "diverged": 2, "errored": 3}
FINISHED_OK = "completed"

# Group table (replicates of one curriculum), over the ranking metric's final values.
GROUP = "group"
GROUP_SEEDS = "n"  # completed seeds that the statistics use
GROUP_TRIALS = "trials"
GROUP_STOPPED = "stopped"
GROUP_FAILED = "failed"
