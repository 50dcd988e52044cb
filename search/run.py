"""The main job: search a curriculum space with Ray Tune, ASHA and Optuna, then write the report.

    python -m search.run --space spaces/quickstart.yaml
    python -m search.run --space spaces/intro_timing.yaml --storage /shared/results --name timing-1
    python -m search.run --space spaces/intro_timing.yaml --storage /shared/results --name timing-1 --resume
    python -m search.run --space spaces/ab_seed_curricula.yaml --scale 0.01 --smoke

Everything the user gives is checked before Ray starts (exit 2 and one line naming the file and key,
nothing written under the storage path). Then: ``<storage>/<name>/search.json``, Ray's trial
directories, ``trials.json`` kept current, a live view in the terminal, and at the end the top of the
ranking and the report (``search.report``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from model.errors import InputError, OneLineParser, exit_on_input_error

from .space import Space, load_space
from .storage import StorageGuard, check_writable, storage_error

log = logging.getLogger("search")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_STORAGE = REPO / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m search.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, help="space YAML (spaces/*.yaml) or a shipped space's name")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--storage", default=None,
                   help=f"absolute or relative path of the results root, shared by all nodes (default {DEFAULT_STORAGE})")
    p.add_argument("--num-samples", type=int, default=None, help="searched configurations (named ones come on top)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every step count in the space by this")
    p.add_argument("--smoke", action="store_true", help="shrink the space to seconds: tiny model, few steps, 2+2 trials")
    p.add_argument("--resume", action="store_true", help="continue the experiment <storage>/<name> after a crash")
    p.add_argument("--address", default=None,
                   help="Ray cluster to run on, host:port (default: RAY_ADDRESS; without either, a new local Ray)")
    p.add_argument("--max-concurrent", type=int, default=None, help="override searcher.max_concurrent")
    p.add_argument("--wandb-mode", choices=("offline", "online", "disabled"), default=None,
                   help="override the space's wandb.mode")
    p.add_argument("--live-interval", type=float, default=30.0, help="seconds between live tables")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    return p.parse_args(argv)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("search")
    if not logger.handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def resolve_storage(storage: str | None) -> str:
    """An absolute local path (Ray needs one), or a URI such as s3://bucket/path unchanged."""
    if storage is None:
        return str(DEFAULT_STORAGE)
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install counts as no GPU
        return 0


def check_gpus(space: Space, available: float, where: str) -> None:
    if space.resources.gpu > 0 and available < min(1.0, space.resources.gpu):
        raise InputError(space.file, "resources.gpu",
                         f"{space.resources.gpu:g} GPU per trial asked for, but {where} has no GPU; "
                         "set resources.gpu: 0 (or use --smoke) to run on CPUs")


def apply_cli(space: Space, args: argparse.Namespace) -> Space:
    if args.max_concurrent is not None:
        if args.max_concurrent < 1:
            raise InputError(space.file, "--max-concurrent", f"must be >= 1, got {args.max_concurrent}")
        space = dataclasses.replace(space, searcher=dataclasses.replace(space.searcher,
                                                                        max_concurrent=args.max_concurrent))
    if args.wandb_mode is not None:
        space = dataclasses.replace(space, wandb=dataclasses.replace(space.wandb, mode=args.wandb_mode))
    return space


def check_experiment(storage: str, name: str, resume: bool) -> Path | str:
    if any(c in name for c in "/\\ ") or name.startswith("."):
        raise InputError("command line", "--name", f"expected a short name without spaces or slashes, got {name!r}")
    exp = f"{storage.rstrip('/')}/{name}" if "://" in storage else Path(storage) / name
    if "://" in storage:
        if resume:
            return exp
        raise InputError("command line", "--storage", "object-store URIs need a shared file system for "
                         "search.json and trials.json; mount it (s3fs, gcsfuse) and pass the mount path")
    has_state = (Path(exp) / "tuner.pkl").is_file()
    if resume and not has_state:
        raise InputError(exp, "--resume", "no search to resume here (no tuner.pkl); drop --resume to start one")
    if not resume and Path(exp).exists() and any(Path(exp).iterdir()):
        raise InputError(exp, "--name", "an experiment of this name exists; pass --resume to continue it "
                         "or --name to start another")
    return exp


def build_tuner(space: Space, name: str, storage: str, exp_dir: Path, *, resume: bool = False,
                live_interval: float = 30.0, trainable: Any = None):
    """The Tuner for a space (or restored from ``exp_dir``); ``trainable`` replaces the real trainer in tests."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from .layout import TrialIndex
    from .live import LiveView
    from .optuna_glue import build_searcher
    from .scheduler import SettleASHA
    from .trainable import run_trial, trial_dirname, trial_name

    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu}
    if trainable is None and space.trainer.command is not None:  # bring your own trainer
        from .command import run_command_trial as trainable
    trainable = tune.with_resources(trainable or run_trial, resources)
    if resume:
        return tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    from .scheduler import StopLog, write_stop_file

    stop_log = StopLog()
    sc = space.scheduler
    if sc.type == "asha":
        scheduler = SettleASHA(metric=space.metric, mode=space.mode, max_t=sc.max_t, grace_period=sc.grace_period,
                               reduction_factor=sc.reduction_factor, brackets=sc.brackets,
                               settle_steps=sc.settle_steps, stop_log=stop_log, stop_at_max_t=False,
                               request_stop=write_stop_file, persist=True)
    else:
        scheduler = tune.schedulers.FIFOScheduler()
    searcher = build_searcher(space, name, stop_log)
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        # Ray's own JSON (params.json, result.json) and CSV loggers; not TensorBoard (W&B does that job).
        callbacks=[JsonLoggerCallback(), CSVLoggerCallback(), TrialIndex(exp_dir, stop_log), StorageGuard(exp_dir)],
        progress_reporter=LiveView(space.metric, space.mode, stop_log, interval_s=live_interval),
        verbose=1,
        failure_config=tune.FailureConfig(max_failures=space.failure.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=space.failure.num_to_keep),
        # Trials write into their directories on the shared storage themselves (trainable.trial_output_dir).
        sync_config=tune.SyncConfig(sync_artifacts=False),
    )
    # Reusing a trial's actor for the next trial saves a process start and the torch import (seconds
    # per trial on a laptop); the trainer sets seeds, threads and its W&B run per trial.
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=space.num_trials,
                                  trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
                                  reuse_actors=True)
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def check_address(address: str, where: str, timeout_s: float = 10.0) -> None:
    """InputError unless something answers at the cluster's host:port; a dead head fails fast here, not
    after minutes of Ray's own retries."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    if not port.isdigit():
        raise InputError(where, address, "expected host:port of a Ray head node, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise InputError(where, address, f"no Ray cluster answers there ({err.strerror or err}); start it "
                         "(ray start --head) or give another address, or leave RAY_ADDRESS and --address "
                         "unset to run on a new local Ray") from None


def init_ray(space: Space, address: str | None = None) -> None:
    """Join the cluster at ``address`` (or RAY_ADDRESS), else start a local Ray of our own: never the last
    cluster that Ray's temp dir remembers, which may be dead (its retries hang for minutes) or another's."""
    where = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        check_address(address, where)
    # Said before Ray loads, which reads it once. A head node started once a token exists uses token auth,
    # and its clients must too (DESIGN 5). An embedded local Ray of our own (address "local", so that a
    # dead cluster remembered in Ray's temp dir is never joined) has no other client: left to choose, Ray
    # warns about token auth on every run, and with token auth it fails to read its own cluster id.
    if address and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    elif not address:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address=address or "local", include_dashboard=False if not address else None, log_to_driver=False,
             logging_level=logging.WARNING, configure_logging=True)
    if address:  # a cluster: its GPUs count, not the driver's
        check_gpus(space, ray.cluster_resources().get("GPU", 0.0), f"the Ray cluster at {address}")


def finish(exp_dir: Path, meta: dict[str, Any], make_report: bool) -> dict[str, Any]:
    """search.json's final status, the top of the ranking and the report."""
    import json

    from .layout import SEARCH_JSON, TRIALS_JSON, now, write_json

    trials = json.loads((exp_dir / TRIALS_JSON).read_text()) if (exp_dir / TRIALS_JSON).is_file() else {}
    set_aside_lost_trials(exp_dir, trials)
    unfinished = [t for t in trials.values() if t["status"] in ("running", "pending")]
    total = int(meta.get("num_trials") or len(trials))
    status = "interrupted" if unfinished or len(trials) < total else "finished"
    write_json(exp_dir / SEARCH_JSON, {**meta, "status": status, "finished": now()})
    report_path, top = None, None
    try:
        from .report import load_experiment, render, write_experiment

        exp = load_experiment(exp_dir)  # the ranking of report/ranking.md, by the space's metric
        top = render.top(exp)
        if make_report:
            report_path = write_experiment(exp)
    except Exception as err:  # the search's results stand even if the report fails
        log.warning("the report failed: %s: %s", type(err).__name__, err)
    if top is not None:
        log.info("%s", top)
    if status == "interrupted":
        log.info("search %s: %d of %d trials not finished; continue with --resume", status,
                 total - len(trials) + len(unfinished), total)
    log.info("experiment: %s", exp_dir)
    if report_path is not None:
        log.info("report: %s", report_path)
    return {"status": status, "report": str(report_path) if report_path else None}


def set_aside_lost_trials(exp_dir: Path, trials: dict[str, dict]) -> list[str]:
    """Move trial directories that the experiment no longer knows into ``<exp>/.lost/``.

    A driver killed between two snapshots of the experiment loses the trials it started after the last
    one; ``--resume`` runs those configurations again as new trials (the searcher's snapshot is from the
    same moment). Their first, partial directories would otherwise read as extra trials.
    """
    if not trials:
        return []
    known = {str(t.get("trial_dir")) for t in trials.values()}
    lost = [d for d in exp_dir.iterdir() if d.is_dir() and (d / "params.json").is_file() and d.name not in known]
    for d in lost:
        target = exp_dir / ".lost" / d.name
        target.parent.mkdir(exist_ok=True)
        if target.exists():  # set aside by an earlier --resume; Ray's driver staging copy synced it back
            import shutil

            shutil.copytree(d, target, dirs_exist_ok=True)
            shutil.rmtree(d)
        else:
            d.rename(target)
        log.info("trial directory %s was lost with the killed driver and run again; moved to %s", d.name, target)
    return [d.name for d in lost]


@exit_on_input_error
def main(argv: list[str] | None = None, trainable: Any = None) -> int:
    """The command; ``trainable`` replaces the real trainer (the fault tests' scripted trials)."""
    args = parse_args(argv)
    setup_logging()
    t0 = time.time()
    space = apply_cli(load_space(args.space, scale=args.scale, smoke=args.smoke, num_samples=args.num_samples), args)
    name = args.name or space.name
    storage = resolve_storage(args.storage)
    exp_dir = check_experiment(storage, name, args.resume)
    check_writable(storage)
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        check_gpus(space, local_gpus(), "this machine")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # our LiveView instead of Ray's default output
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the loggers are chosen in build_tuner
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "10")  # a stopped trial's thread may finish W&B
    # Snapshot the experiment (trials, searcher) every 2 s rather than 10: less is lost when the driver dies.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    init_ray(space, args.address)

    import json

    from .layout import SEARCH_JSON, now, search_meta, write_json

    exp_dir = Path(exp_dir)
    if args.resume and (exp_dir / SEARCH_JSON).is_file():
        # The experiment's own record of what it searches: the restored Tuner runs that, not the flags.
        meta = json.loads((exp_dir / SEARCH_JSON).read_text())
        if args.smoke or args.scale != 1.0 or args.num_samples is not None:
            log.info("--resume continues the search as it started; --smoke, --scale and --num-samples are ignored")
    else:
        meta = search_meta(space, name, "running", now())
    meta.update(status="running", finished=None)
    write_json(exp_dir / SEARCH_JSON, meta)
    log.info("search %s: %d trials (%s), %s to %s steps, searcher %s; %s", name, meta["num_trials"],
             f"{len(meta['named'])} named + {meta['num_samples']} searched, x {meta['replicates']} seeds",
             meta["scheduler"], meta["max_t"], meta["searcher"], "resuming" if args.resume else f"results in {exp_dir}")
    tuner = build_tuner(space, name, storage, exp_dir, resume=args.resume, live_interval=args.live_interval,
                        trainable=trainable)
    failure = None
    try:
        tuner.fit()
    except KeyboardInterrupt:
        log.info("interrupted")
    except Exception as err:  # a full disk fails Ray in many places: one line for it, a traceback for the rest
        if (failure := storage_error(exp_dir, err)) is None:
            raise
    failure = failure or storage_error(exp_dir)
    try:
        outcome = finish(exp_dir, meta, not args.no_report and failure is None)
    except OSError as err:
        if (failure := failure or storage_error(exp_dir, err)) is None:
            raise
    if failure is not None:
        raise failure
    log.info("wall time %.1f s", time.time() - t0)
    return 0 if outcome["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
