"""The ranking rule: which trial is best, and how replicates of one curriculum are summarised.

One metric everywhere: the space's (``metric`` and ``mode`` in search.json), or the one the command
line asks for. Completed trials rank by its final value, best first for the mode; trials that stopped
short rank below them by how far they got; failures rank last; health metrics break ties. A missing
value (never measured, NaN) is the worst, whichever the mode. Only trials judged on the same
validation data (one ``names.VAL_FINGERPRINT``) are ranked together: the others come after them.
``ranking_rule`` says it in words, and the report prints it under every ranking table.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from . import columns as C
from . import stats


def ranking_rule(metric: str, mode: str) -> str:
    order = "highest first" if mode == "max" else "lowest first"
    return (f"Ranking: completed trials by final {metric}, {order} (a missing value counts as the worst); "
            "below them, trials stopped early (by ASHA) or not finished, by the step they reached, then by "
            f"their {metric} there; diverged, then errored trials last. Ties are broken by fewer NaN steps, "
            "then fewer loss spikes, then fewer steps to 90% accuracy (never reaching 90% counts as last). "
            "Trials validated on other data than the most common (another validation fingerprint, or none "
            "recorded) are ranked below all the others.")


def signed(values: pd.Series, mode: str) -> pd.Series:
    """Values as sort keys, ascending = best first; missing (NaN, inf) sorts last for either mode."""
    x = pd.to_numeric(values, errors="coerce").astype(float)
    key = -x if mode == "max" else x
    return key.where(np.isfinite(key), math.inf)


def reference_fingerprint(fingerprints: pd.Series) -> str | None:
    """The most common known fingerprint (ties: the first in ``fingerprints``' order); None if none known."""
    known = [f for f in fingerprints if isinstance(f, str) and f]
    if not known:
        return None
    counts = Counter(known)
    top = max(counts.values())
    return next(f for f in known if counts[f] == top)


def rank(trials: pd.DataFrame, metric: str = C.DEFAULT_METRIC, mode: str = "max") -> pd.DataFrame:
    """Sort by the ranking rule (``ranking_rule``), number the rows from 1, mark ``same_validation``."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    tier = trials[C.STATUS].map(C.TIER).fillna(len(C.TIER)).astype(int)
    reached = pd.to_numeric(trials[C.REACHED_STEP], errors="coerce").fillna(-1.0)
    final = trials[C.final(metric)] if C.final(metric) in trials else pd.Series(math.nan, index=trials.index)
    inf = math.inf
    keys = pd.DataFrame({
        "tier": tier,
        # Completed trials compare on the metric alone; the others first on how far they got.
        "reach": np.where(tier == 0, 0.0, -reached),
        "metric": signed(final, mode),
        "nan": pd.to_numeric(trials[C.NAN_COUNT], errors="coerce").fillna(inf),
        "spikes": pd.to_numeric(trials[C.SPIKE_COUNT], errors="coerce").fillna(inf),
        "s90": pd.to_numeric(trials[C.STEPS_TO_90], errors="coerce").fillna(inf),
        "id": trials[C.TRIAL_ID].astype(str),
    }, index=trials.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    fingerprints = trials[C.FINGERPRINT] if C.FINGERPRINT in trials else pd.Series(None, index=trials.index)
    reference = reference_fingerprint(fingerprints.loc[order])
    same = pd.Series(True, index=trials.index) if reference is None else fingerprints == reference
    keys.insert(0, "other_validation", (~same).astype(int))
    order = keys.sort_values(list(keys.columns), kind="stable").index
    out = trials.loc[order].reset_index(drop=True)
    out[C.SAME_VALIDATION] = same.loc[order].to_numpy(bool)
    out.insert(0, C.RANK, np.arange(1, len(out) + 1))
    return out


def group_table(trials: pd.DataFrame, metric: str = C.DEFAULT_METRIC, mode: str = "max") -> pd.DataFrame:
    """Per label: completed seeds, mean, std and 95% CI of the final metric, and the others counted."""
    value = C.final(metric)
    done = trials[trials[C.STATUS] == C.FINISHED_OK]
    bounds = (0.0, 1.0) if C.is_fraction(metric) else None
    summary = stats.group_summary(done, value, C.LABEL, bounds=bounds, mode=mode) if len(done) else \
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
    out = out.sort_values(["mean", "best_rank"], ascending=[mode == "min", True], na_position="last",
                          kind="stable")
    order = [C.GROUP, C.FAMILY, C.GROUP_SEEDS, "mean", "std", "ci_low", "ci_high", C.GROUP_TRIALS,
             C.GROUP_STOPPED, C.GROUP_FAILED, C.NAN_COUNT, C.SPIKE_COUNT]
    return out[order].reset_index(drop=True)
