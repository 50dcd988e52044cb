"""Metric names, in one place: the trainer, metrics.csv, W&B, the Ray trainable, ASHA and the report use these.

Every value the trainer reports under these names is a finite float. Where a value does not exist
(no steps to 90% yet, an auxiliary loss not yet introduced), it is reported as -1 (``MISSING``) so that
Ray's schedulers never see NaN or None; metrics.csv and the report turn -1 back into empty.
The one exception is VAL_FINGERPRINT, a hex string in every row and in summary.json.
"""

from __future__ import annotations

MISSING = -1.0

STEP = "step"
ELAPSED_S = "elapsed_s"

TRAIN_LOSS = "train/loss"
TRAIN_CE = "train/ce_loss"
TRAIN_SPECTRUM = "train/spectrum_loss"
TRAIN_PRECURSOR = "train/precursor_loss"
TRAIN_ACCURACY = "train/token_accuracy"
TRAIN_RESIDUE_ACCURACY = "train/residue_accuracy"  # teacher-forced on the training batches, residues only
TRAIN_LR = "train/lr"
TRAIN_STEPS_PER_S = "train/steps_per_s"

VAL_ACCURACY = "val/token_accuracy"  # teacher-forced, residues and STOP (the seeds' figure)
VAL_RESIDUE_ACCURACY = "val/residue_accuracy"  # teacher-forced, residues only: gates, steps to 90%, ranking
VAL_STOP_ACCURACY = "val/stop_accuracy"  # teacher-forced, STOP positions only
VAL_CE = "val/ce_loss"
VAL_SPECTRUM = "val/spectrum_loss"
VAL_PRECURSOR = "val/precursor_loss"
VAL_COVERAGE = "val/spectrum_coverage"  # hard coverage of the argmax sequence (DESIGN section 3)
VAL_PEPTIDE_RECALL = "val/peptide_recall"  # greedy-decoded synthetic val, every train.decode_interval evals
VAL_AA_PRECISION = "val/aa_precision"
VAL_AA_RECALL = "val/aa_recall"
VAL_EASY_ACCURACY = "val_easy/token_accuracy"
VAL_EASY_RESIDUE_ACCURACY = "val_easy/residue_accuracy"
VAL_REAL_ACCURACY = "val_real/token_accuracy"  # teacher-forced, on real validation files only
VAL_REAL_RESIDUE_ACCURACY = "val_real/residue_accuracy"
VAL_REAL_PEPTIDE_RECALL = "val_real/peptide_recall"  # greedy-decoded real validation files
VAL_REAL_AA_PRECISION = "val_real/aa_precision"
VAL_REAL_AA_RECALL = "val_real/aa_recall"
BEST_VAL_ACCURACY = "val/best_token_accuracy"
BEST_VAL_RESIDUE_ACCURACY = "val/best_residue_accuracy"
# A hash of the validation tensors (a hex string, not a float): trials with the same one sat the same exam.
VAL_FINGERPRINT = "val/fingerprint"

SPECTRUM_WEIGHT = "curriculum/spectrum_weight"
PRECURSOR_WEIGHT = "curriculum/precursor_weight"
MIN_LENGTH = "curriculum/min_length"
MAX_LENGTH = "curriculum/max_length"
NOISE_PEAKS = "curriculum/noise_peaks"
SPECTRUM_INTRO_STEP = "curriculum/spectrum_intro_step"
PRECURSOR_INTRO_STEP = "curriculum/precursor_intro_step"

# Gradient strength of an auxiliary loss: ||w * grad(aux)|| / ||grad(CE)|| and cos(grad(aux), grad(CE)).
SPECTRUM_GRAD_RATIO = "grad/spectrum_norm_ratio"
SPECTRUM_GRAD_COSINE = "grad/spectrum_cosine"
PRECURSOR_GRAD_RATIO = "grad/precursor_norm_ratio"
PRECURSOR_GRAD_COSINE = "grad/precursor_cosine"
# Their spread (sample standard deviation) over the train.grad_strength_batches batches they are the mean of.
SPECTRUM_GRAD_RATIO_STD = "grad/spectrum_norm_ratio_std"
SPECTRUM_GRAD_COSINE_STD = "grad/spectrum_cosine_std"
PRECURSOR_GRAD_RATIO_STD = "grad/precursor_norm_ratio_std"
PRECURSOR_GRAD_COSINE_STD = "grad/precursor_cosine_std"

NAN_COUNT = "health/nan_count"
SPIKE_COUNT = "health/spike_count"
STEPS_TO_90 = "health/steps_to_90"
NONFINITE_STREAK = "health/nonfinite_streak"

# summary.json only
STATUS = "status"  # completed | reached_target | stopped | diverged
FINAL_STEP = "final_step"

INTRO_STEP_NAMES = {"spectrum": SPECTRUM_INTRO_STEP, "precursor": PRECURSOR_INTRO_STEP}
GRAD_NAMES = {
    "spectrum": (SPECTRUM_GRAD_RATIO, SPECTRUM_GRAD_COSINE),
    "precursor": (PRECURSOR_GRAD_RATIO, PRECURSOR_GRAD_COSINE),
}
GRAD_STD_NAMES = {
    "spectrum": (SPECTRUM_GRAD_RATIO_STD, SPECTRUM_GRAD_COSINE_STD),
    "precursor": (PRECURSOR_GRAD_RATIO_STD, PRECURSOR_GRAD_COSINE_STD),
}
# Per validation set: (token accuracy, residue accuracy) and, where decoded, (peptide recall, AA precision, AA recall).
ACCURACY_NAMES = {
    "val": (VAL_ACCURACY, VAL_RESIDUE_ACCURACY),
    "val_easy": (VAL_EASY_ACCURACY, VAL_EASY_RESIDUE_ACCURACY),
    "val_real": (VAL_REAL_ACCURACY, VAL_REAL_RESIDUE_ACCURACY),
}
DECODED_NAMES = {
    "val": (VAL_PEPTIDE_RECALL, VAL_AA_PRECISION, VAL_AA_RECALL),
    "val_real": (VAL_REAL_PEPTIDE_RECALL, VAL_REAL_AA_PRECISION, VAL_REAL_AA_RECALL),
}
