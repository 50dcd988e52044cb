"""The ranking rule: which trial is best, and how replicates of one curriculum are summarised.

Completed trials rank by final validation token accuracy; trials that stopped short rank below them by
how far they got; failures rank last; health metrics break ties (``RANKING_RULE`` says it in words,
and the report prints it under every ranking table).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import columns as C
from . import stats

RANKING_RULE = (
    "Ranking: completed trials by final val token accuracy, highest first; below them, trials stopped "
    "early (by ASHA) or not finished, by the step they reached, then by their accuracy there; diverged, "
    "then errored trials last. Ties are broken by fewer NaN steps, then fewer loss spikes, then fewer "
    "steps to 90% accuracy (never reaching 90% counts as last)."
)


def rank(trials: pd.DataFrame) -> pd.DataFrame:
    """Sort by the ranking rule (``RANKING_RULE``) and number the rows from 1."""
    tier = trials[C.STATUS].map(C.TIER).fillna(len(C.TIER)).astype(int)
    reached = pd.to_numeric(trials[C.REACHED_STEP], errors="coerce").fillna(-1.0)
    inf = math.inf
    keys = pd.DataFrame({
        "tier": tier,
        # Completed trials compare on accuracy alone; the others first on how far they got.
        "reach": np.where(tier == 0, 0.0, -reached),
        "acc": -pd.to_numeric(trials[C.FINAL_ACC], errors="coerce").fillna(-inf),
        "nan": pd.to_numeric(trials[C.NAN_COUNT], errors="coerce").fillna(inf),
        "spikes": pd.to_numeric(trials[C.SPIKE_COUNT], errors="coerce").fillna(inf),
        "s90": pd.to_numeric(trials[C.STEPS_TO_90], errors="coerce").fillna(inf),
        "id": trials[C.TRIAL_ID].astype(str),
    }, index=trials.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    out = trials.loc[order].reset_index(drop=True)
    out.insert(0, C.RANK, np.arange(1, len(out) + 1))
    return out


def group_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per label: completed seeds, mean, std and 95% CI of final accuracy, and the others counted."""
    done = trials[trials[C.STATUS] == C.FINISHED_OK]
    summary = stats.group_summary(done, C.FINAL_ACC, C.LABEL, bounds=(0.0, 1.0)) if len(done) else \
        pd.DataFrame(columns=stats.GROUP_COLUMNS)
    counts = trials.groupby(C.LABEL, sort=False).agg(
        family=(C.FAMILY, "first"),
        trials=(C.TRIAL_ID, "size"),
        stopped=(C.STATUS, lambda s: int(s.isin(["stopped", "running", "pending", "interrupted"]).sum())),
        failed=(C.STATUS, lambda s: int(s.isin(["diverged", "errored"]).sum())),
        nan_count=(C.NAN_COUNT, "mean"),
        spike_count=(C.SPIKE_COUNT, "mean"),
        best_rank=(C.RANK, "min"),
    ).reset_index().rename(columns={C.LABEL: C.GROUP})
    out = counts.merge(summary, on=C.GROUP, how="left")
    out[C.GROUP_SEEDS] = out[C.GROUP_SEEDS].fillna(0).astype(int)
    out = out.sort_values(["mean", "best_rank"], ascending=[False, True], na_position="last", kind="stable")
    order = [C.GROUP, C.FAMILY, C.GROUP_SEEDS, "mean", "std", "ci_low", "ci_high", C.GROUP_TRIALS,
             C.GROUP_STOPPED, C.GROUP_FAILED, C.NAN_COUNT, C.SPIKE_COUNT]
    return out[order].reset_index(drop=True)
