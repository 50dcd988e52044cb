"""The searcher stack: named curricula first, replicates, Optuna with early stops told as PRUNED.

    ConcurrencyLimiter                   Ray's: at most max_concurrent trials live
      CurriculumSearcher                 named curricula first; R seeds per configuration; trial configs
        PrunedOptunaSearch               Ray's OptunaSearch; ASHA stops and divergence reach Optuna PRUNED
          SpaceSampler                   define-by-run: draws in order, constraints narrow the ranges

Ray's ``OptunaSearch`` tells Optuna COMPLETE with the truncated score for a trial that ASHA stopped,
so TPE learns from short runs as if they were finished (DESIGN section 5). Here the scheduler writes
every early stop into a shared ``StopLog`` and the searcher tells Optuna PRUNED for those, with the
value at the step they were stopped as their last intermediate value.

Optuna sees one trial per configuration: its replicates (training seeds) share the suggestion and are
told back together, as the mean of the metric, once all have finished (PRUNED if any was stopped early
or diverged, FAIL if all errored). Its intermediate values are the mean over the replicates at each
step, told at the same time; for a PRUNED configuration they end at the step where its first replicate
was stopped, so Optuna learns the value that stopped it, whichever seed that was.

Missing means worst: a metric that does not exist (NaN, ``names.MISSING``, absent; steps to 90% never
reached) is never reported as an intermediate value, and a finished configuration whose metric is
missing in any replicate is told COMPLETE with the worst value for the mode (+inf under ``min``, -inf
under ``max``), so that TPE learns it is bad rather than that -1 is the best steps to 90%.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import tempfile
from typing import Any

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from model import names

from .constraints import Constraint, narrowed
from .distributions import Distribution
from .scheduler import StopLog, metric_value
from .space import Space
from .trials import DIVERGED_KEY, named_config, searched_config

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
REPAIRS = "_repairs"
COMPLETE, PRUNED, DIVERGED, ERROR = "complete", "pruned", "diverged", "error"


class SpaceSampler:
    """Define-by-run space for ``OptunaSearch``: draws each parameter in the order the space lists them."""

    def __init__(self, params: dict[str, Distribution], constraints: list[Constraint], fixed: dict[str, Any]):
        self.params, self.constraints, self.fixed = params, constraints, fixed

    def __call__(self, trial: Any) -> dict[str, Any]:
        drawn: dict[str, Any] = dict(self.fixed)
        repairs = []
        for name, dist in self.params.items():
            low, high = narrowed(name, self.constraints, drawn)
            value, note = dist.suggest(trial, name, low, high)
            drawn[name] = value
            if note or low is not None or high is not None:
                bounds = f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"
                text = f"{name} kept in {bounds}" + (f": {note}" if note else "")
                repairs.append(text)
                (log.warning if note == "violated" else log.debug)("constraint repair: %s = %s (%s)", name, value, text)
        return {**{k: drawn[k] for k in self.params}, REPAIRS: repairs}


class PrunedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` reporting at the trainer's step and telling early stops PRUNED."""

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = metric_value(result, self.metric)
        if trial_id in self._completed_trials or value is None:
            return
        step = int(result.get(names.STEP, result.get("training_iteration", 0)))
        self._ot_trials[trial_id].report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False,
                          pruned: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        value = metric_value(result or {}, self.metric)
        if error or not result:
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
        elif pruned:
            if value is not None:  # the value where it stopped: the result that stopped it never reached us
                step = int(result.get(names.STEP, 0))
                if step not in self._ot_study.get_trials(deepcopy=False)[ot_trial.number].intermediate_values:
                    ot_trial.report(value, step)
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)
        else:
            told = self.worst if value is None else value
            self._ot_study.tell(ot_trial, told, state=optuna.trial.TrialState.COMPLETE)
        self._completed_trials.add(trial_id)


def make_optuna(space: Space) -> PrunedOptunaSearch:
    """Optuna's sampler for the space's searcher: TPE (seeded), random or grid."""
    s = space.searcher
    if s.algorithm == "tpe":
        sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.startup_trials)
    elif s.algorithm == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
    else:
        sampler = _AskTellGridSampler({k: list(d.values) for k, d in space.params.items()}, seed=s.seed)
    sampler_fn = SpaceSampler(space.params, space.constraints, space.fixed_values())
    return PrunedOptunaSearch(space=sampler_fn, metric=space.metric, mode=space.mode, sampler=sampler)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler stops the study once every point is drawn; with ask and tell that raises. The search
    runs exactly the grid's size of configurations, so nothing needs stopping."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


class CurriculumSearcher(Searcher):
    """Named curricula first, then configurations from ``inner``; each configuration once per seed."""

    def __init__(self, space: Space, experiment: str, inner: PrunedOptunaSearch | None, stop_log: StopLog) -> None:
        super().__init__(metric=space.metric, mode=space.mode)
        self.space, self.experiment, self.inner, self.stop_log = space, experiment, inner, stop_log
        seeds = range(len(space.seeds))
        self.queue: list[tuple[int, str, int]] = [
            (i, name, r) for i, name in enumerate(space.named.curricula) for r in seeds]
        self.replicates_due: list[tuple[int, dict[str, Any], list[str], int]] = []
        self.searched = 0
        self.trial_config: dict[str, tuple[int, int]] = {}  # Ray trial id -> (config id, replicate)
        self.outcomes: dict[int, dict[int, tuple[str, dict | None]]] = {}  # config id -> replicate -> outcome
        self.curves: dict[int, dict[int, dict[int, float]]] = {}  # config id -> replicate -> step -> metric

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # metric and mode are the space's; a param_space is never passed

    def suggest(self, trial_id: str) -> dict | None:
        n_named = len(self.space.named.curricula)
        if self.queue:
            config_id, name, replicate = self.queue.pop(0)
            config = named_config(self.space, self.experiment, name, replicate, config_id)
        elif self.replicates_due:
            config_id, values, repairs, replicate = self.replicates_due.pop(0)
            config = searched_config(self.space, self.experiment, values, replicate, config_id, repairs)
        elif self.searched < self.space.searcher.num_samples and self.inner is not None:
            config_id = n_named + self.searched
            suggestion = self.inner.suggest(_key(config_id))
            if suggestion is None:
                return None
            self.searched += 1
            repairs = suggestion.pop(REPAIRS, [])
            values = {k: _plain(v) for k, v in suggestion.items()}
            self.replicates_due += [(config_id, values, repairs, r) for r in range(1, len(self.space.seeds))]
            config = searched_config(self.space, self.experiment, values, 0, config_id, repairs)
        else:
            return Searcher.FINISHED
        self.trial_config[trial_id] = (config["config_id"], config["replicate"])
        return config

    def _is_searched(self, config_id: int) -> bool:
        return config_id >= len(self.space.named.curricula) and self.inner is not None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Keep the metric per step; Optuna hears the replicates' mean curve when the configuration ends."""
        config_id, replicate = self.trial_config.get(trial_id, (-1, -1))
        value = metric_value(result, self.metric)
        if self._is_searched(config_id) and value is not None and names.STEP in result:
            self.curves.setdefault(config_id, {}).setdefault(replicate, {})[int(result[names.STEP])] = value

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_config:
            return
        config_id, replicate = self.trial_config[trial_id]
        if result and not error:  # a result that stopped the trial reaches the searcher only here
            self.on_trial_result(trial_id, result)
        if error or not result:
            outcome = ERROR
        elif trial_id in self.stop_log:
            outcome = PRUNED
        elif result.get(DIVERGED_KEY):
            outcome = DIVERGED
        else:
            outcome = COMPLETE
        done = self.outcomes.setdefault(config_id, {})
        kept = {k: result[k] for k in (self.metric, names.STEP) if k in result} if result else None
        if outcome == PRUNED and kept is not None:
            kept[names.STEP] = self.stop_log.step(trial_id)  # where ASHA judged it, not a later report
        done[replicate] = (outcome, kept)  # only what Optuna is told: the searcher state stays small
        if self._is_searched(config_id) and len(done) == len(self.space.seeds):
            self._tell(config_id, done)

    def _tell(self, config_id: int, done: dict[int, tuple[str, dict | None]]) -> None:
        kinds = [kind for kind, _ in done.values()]
        key = _key(config_id)
        if all(k == ERROR for k in kinds):
            self.inner.on_trial_complete(key, None, error=True)
            return
        results = [r for k, r in done.values() if k != ERROR]
        live = [r for r, (k, _) in done.items() if k != ERROR]
        curves = self.curves.pop(config_id, {})
        stops = [int(r.get(names.STEP, 0)) for k, r in done.values() if k in (PRUNED, DIVERGED)]
        end = min(stops) if stops else None
        for step in sorted({s for r in live for s in curves.get(r, {})}):
            if end is not None and step > end:
                break
            values = [curves.get(r, {}).get(step) for r in live]
            if None not in values:  # a step where a seed has no value is no step of the mean curve
                self.inner.on_trial_result(key, {self.metric: sum(values) / len(values), names.STEP: step})
        if end is not None:
            at_end = [v for r in live if (v := curves.get(r, {}).get(end)) is not None]
            value = sum(at_end) / len(at_end) if at_end else names.MISSING
            self.inner.on_trial_complete(key, {self.metric: value, names.STEP: end}, pruned=True)
            return
        values = [metric_value(r, self.metric) for r in results]
        # One replicate without the metric makes the configuration's value missing: worst, never -1.
        mean = None if None in values else sum(values) / len(values)
        self.inner.on_trial_complete(key, {**results[0], self.metric: names.MISSING if mean is None else mean})

    def save(self, checkpoint_path: str) -> None:
        state = {k: v for k, v in self.__dict__.items() if k not in ("inner", "stop_log", "space")}
        state["stop_log"] = dict(self.stop_log.stopped)
        state["inner"] = _dump(self.inner) if self.inner is not None else None
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.stop_log.update(state.pop("stop_log"))  # in place: the scheduler holds the same log
        inner = state.pop("inner")
        if inner is not None and self.inner is not None:
            _load(self.inner, inner)
        self.__dict__.update(state)


def build_searcher(space: Space, experiment: str, stop_log: StopLog) -> ConcurrencyLimiter:
    """The stack above. Ray saves the limiter's live set itself (``SearchGenerator.save_to_dir`` keeps
    every wrapper's ``get_state``) and the base searcher's ``save``: ours, which holds Optuna's."""
    inner = make_optuna(space) if space.searcher.num_samples > 0 else None
    searcher = CurriculumSearcher(space, experiment, inner, stop_log)
    return ConcurrencyLimiter(searcher, max_concurrent=space.searcher.max_concurrent)


def _key(config_id: int) -> str:
    return f"config_{config_id:04d}"


def _plain(value: Any) -> Any:
    """Optuna hands back numpy-free Python values already; keep ints ints and floats floats."""
    return value.item() if hasattr(value, "item") else value


def _dump(searcher: Searcher) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "searcher.pkl")
        searcher.save(path)
        with open(path, "rb") as f:
            return f.read()


def _load(searcher: Searcher, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "searcher.pkl")
        with open(path, "wb") as f:
            f.write(data)
        searcher.restore(path)
