"""The Ray Tune trainable of a command trainer: run the command, follow its metrics file, report each row.

One trial (``trainer.command``, ``search.command_spec``):

1. writes its curriculum to ``<trial dir>/curriculum.yaml`` (``Curriculum.to_yaml``, the schema of
   ``docs/curriculum_schema.md``);
2. starts the command without a shell, in ``workdir``, in its own process group, with its stdout and
   stderr appended to ``<trial dir>/command.log``; it sees only the trial's GPUs (``CUDA_VISIBLE_DEVICES``,
   empty for a CPU trial), and dies with the trial's worker process (``PR_SET_PDEATHSIG``);
3. reads the metrics file every ``POLL_S`` seconds and reports each row whose step is past the last one
   reported, renamed through ``metric_names``, with a small checkpoint that holds that step;
4. ends the command (SIGTERM to its process group, SIGKILL ``stop_grace_s`` later) when ASHA asks (the
   STOP file), at ``max_t``, or when Ray stops the trial. A command that exits non-zero before the trial's
   end fails the trial: the last ``TAIL_LINES`` lines of its log go into the error and into
   ``error_tail.txt``, and Ray starts it again with ``{resume:TEXT}`` filled in.

A metrics file that never appears, or rows without a step column, are configuration errors: the trial
fails with one line, and a restart fails at once (``command_fatal.txt``) instead of waiting again.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

from model import names
from model.curriculum import curriculum_from_dict

from .command_spec import CommandSpec, render
from .scheduler import STOP_FILE
from .trainable import reportable, trial_output_dir
from .trials import DIVERGED_KEY, REPORT_S_KEY

log = logging.getLogger(__name__)
POLL_S = 0.5
TAIL_LINES = 20
LOG = "command.log"
CURRICULUM = "curriculum.yaml"
ERROR_TAIL = "error_tail.txt"
FATAL = "command_fatal.txt"
STATE = "command_state.json"  # in each Ray checkpoint: the last step reported
NONFINITE_LIMIT = 20  # a row with health/nonfinite_streak this long marks the trial diverged (the trainer's default)


class CommandError(RuntimeError):
    """The command failed. The message's first and last lines say how; between them, its log's tail."""


class FatalCommandError(CommandError):
    """A configuration error (no metrics file, no step column): a restart would fail the same way."""


def run_command_trial(config: dict[str, Any]) -> None:
    """The trainable: curriculum file, command, metrics followed and reported until the trial ends."""
    context = tune.get_context()
    trial_dir = trial_output_dir(context)
    spec = CommandSpec.from_dict(config["trainer"]["command"])
    if (trial_dir / FATAL).is_file():  # the last attempt found a configuration error: no second wait
        raise FatalCommandError((trial_dir / FATAL).read_text().strip())
    last_step = -1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt:
            last_step = int(json.loads((Path(ckpt) / STATE).read_text())["step"])
    log_path = trial_dir / LOG
    resume = checkpoint is not None or log_path.is_file()
    curriculum = curriculum_from_dict(config["curriculum"], "params.json", default_name=config["family"])
    (trial_dir / CURRICULUM).write_text(curriculum.to_yaml())

    values = placeholder_values(config, spec, context.get_trial_id(), trial_dir)
    env = command_env(config, spec, values, resume, context.get_trial_id(), trial_dir)
    try:
        argv = shlex.split(render(spec.command, values, resume=resume, env=env, quote=True))
        metrics = Path(render(spec.metrics, values))
    except KeyError as err:
        raise _fatal(trial_dir, f"trainer.command: {err.args[0]}") from None
    metrics = metrics if metrics.is_absolute() else trial_dir / metrics
    follower = Follower(metrics, spec.metric_names, config["trainer"]["metric"], last_step)
    max_t = min(config.get("max_t") or spec.max_steps, spec.max_steps)
    try:
        command = Command(argv, spec.workdir, env, log_path, resume)
    except OSError as err:  # no such program or directory on this node, not executable
        message = f"trainer.command: cannot start {argv[0]!r} in {spec.workdir}: {err.strerror}"
        raise _fatal(trial_dir, message) from None
    log.info("trial %s: %s%s", context.get_trial_id(), shlex.join(argv), " (resumed)" if resume else "")
    try:
        follow(command, follower, spec, trial_dir, max_t)
    except BaseException as err:  # Ray stops the trial (SystemExit in tune.report), or the command failed
        command.stop(spec.stop_grace_s)
        if isinstance(err, CommandError):
            raise _with_tail(err, command, trial_dir) from None
        raise
    finally:
        command.close()


def follow(command: Command, follower: Follower, spec: CommandSpec, trial_dir: Path, max_t: int) -> None:
    """Report rows until the command ends, or stop it when the trial ends first."""
    started, in_report, new_rows = time.monotonic(), 0.0, 0
    while True:
        code = command.poll()  # before reading, so that a finished command's last rows are read below
        for row in follower.new_rows(complete=code is not None):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / STATE).write_text(json.dumps({"step": row[names.STEP]}))
                tune.report({**row, REPORT_S_KEY: round(in_report, 3)},
                            checkpoint=tune.Checkpoint.from_directory(tmp))
            in_report += time.perf_counter() - start
            new_rows += 1
            ended = max_t <= row[names.STEP] < spec.max_steps  # the command would go on past max_t
            if ended or (trial_dir / STOP_FILE).is_file():
                command.stop(spec.stop_grace_s)
                return
        if (trial_dir / STOP_FILE).is_file() or _ray_stopping():
            command.stop(spec.stop_grace_s)
            return
        if code is not None:
            if code == 0 and not follower.path.is_file():
                raise FatalCommandError(f"trainer.metrics: the command exited 0 without writing {follower.path}")
            if code != 0 and follower.last_step >= max_t:  # all its rows are in: a failure on the way out
                log.warning("the trainer command exited with code %d after its last row (step %d)", code,
                            follower.last_step)
            elif code != 0:
                how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
                raise CommandError(f"the trainer command {how} at step {max(follower.last_step, 0)} of {max_t}, "
                                   f"{new_rows} new rows in this attempt")
            return
        if not follower.path.is_file() and time.monotonic() - started > spec.metrics_timeout_s:
            raise FatalCommandError(f"trainer.metrics: {follower.path} did not appear within "
                                    f"{spec.metrics_timeout_s:g} s of the command's start (trainer.metrics_timeout_s)")
        time.sleep(POLL_S)


class Follower:
    """New rows of a growing metrics file (.csv or .jsonl), renamed and made reportable."""

    def __init__(self, path: Path, metric_names: dict[str, str], metric: str, last_step: int = -1) -> None:
        self.path, self.metric_names, self.metric, self.last_step = path, metric_names, metric, last_step
        self.checked = False

    def new_rows(self, complete: bool = False) -> list[dict[str, float]]:
        """Rows with a step past the last one returned. The last line counts once it ends with a newline,
        or when ``complete`` (the writer has exited). The file may grow, or be rewritten whole."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        if not complete and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        out = []
        for i, raw in enumerate(read_rows(text, self.path), 1):
            row = {self.metric_names.get(k, k): v for k, v in raw.items()}
            step = row.get(names.STEP)
            if step is None or step == names.MISSING:
                mapped = ", ".join(f"{k}: {v}" for k, v in self.metric_names.items())
                raise FatalCommandError(
                    f"{self.path}: row {i} has no {names.STEP!r} column (it has: {', '.join(map(str, raw))}); "
                    f"write one, or name yours in trainer.metric_names (now {{{mapped}}}), e.g. {{iter: step}}")
            if not isinstance(step, (int, float)) or step < 0 or not float(step).is_integer():
                raise FatalCommandError(f"{self.path}: row {i}: step must be a whole number >= 0, got {step!r}")
            if not self.checked:
                if self.metric not in row:
                    raise FatalCommandError(
                        f"{self.path}: no column for the search's metric {self.metric} (it has: "
                        f"{', '.join(map(str, raw))}); name yours in trainer.metric_names, e.g. {{acc: {self.metric}}}")
                self.checked = True
            if step <= self.last_step:
                continue  # a resumed command writes again what it had written before its last checkpoint
            value = row[self.metric]
            diverged = not (isinstance(value, (int, float)) and math.isfinite(value))
            streak = row.get(names.NONFINITE_STREAK, 0)
            diverged = diverged or (isinstance(streak, (int, float)) and streak >= NONFINITE_LIMIT)
            row[DIVERGED_KEY] = 1.0 if diverged else 0.0
            out.append(reportable(row, NONFINITE_LIMIT))
            self.last_step = int(step)
        return out


def read_rows(text: str, path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file's text: CSV with a header (empty cells are missing values), or JSON lines."""
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise FatalCommandError(f"{path}: line {i}: expected a JSON object, got {line[:80]!r}")
            rows.append({k: (names.MISSING if v is None else v) for k, v in row.items()})
        return rows
    reader = csv.DictReader(io.StringIO(text))
    return [{k: _cell(v) for k, v in row.items() if k is not None} for row in reader]


def _cell(text: str | None) -> Any:
    if text is None or text == "":
        return names.MISSING
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Command:
    """The trainer command as a child process: its own process group, its output in the trial's log."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], log_path: Path, resume: bool) -> None:
        self.log = open(log_path, "ab")
        self.log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed' if resume else 'started'}: "
                       f"{shlex.join(argv)}\n".encode())
        self.log.flush()
        self.log_path, self.offset = log_path, self.log.tell()
        try:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        except OSError:
            self.log.close()
            raise

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace_s: float) -> int:
        """SIGTERM to the process group, SIGKILL after ``grace_s``; then whatever of the group is left."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._signal(signal.SIGKILL)  # children it left behind
        return self.proc.returncode

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last lines this attempt wrote to the log."""
        self.log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace").splitlines()[-lines:]

    def close(self) -> None:
        self.log.close()

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def placeholder_values(config: dict[str, Any], spec: CommandSpec, trial_id: str, trial_dir: Path) -> dict[str, str]:
    """What ``{name}`` stands for in this trial (``{resume:TEXT}`` and ``{env:NAME}`` aside)."""
    settings = config["trainer"].get("overrides") or {}  # the searched trainer settings
    return {
        "curriculum": str(trial_dir / CURRICULUM),
        "trial_dir": str(trial_dir),
        "seed": str(config["seed"]),
        "experiment": str(config["wandb"]["group"]),
        "trial_id": trial_id,
        "cpus": str(max(1, int(config.get("resources", {}).get("cpu", 1)))),
        "python": sys.executable,
        **{k: str(v) for k, v in spec.steps.items()},
        **{k: str(v) for k, v in settings.items()},
    }


def command_env(config: dict[str, Any], spec: CommandSpec, values: dict[str, str], resume: bool, trial_id: str,
                trial_dir: Path) -> dict[str, str]:
    """The worker's environment, the trial's GPUs and threads, W&B's settings per trial, then ``env``."""
    import ray

    env = dict(os.environ)
    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))  # empty: a CPU trial sees no GPU
    env["OMP_NUM_THREADS"] = values["cpus"]
    wandb = config["wandb"]
    env.update(WANDB_MODE=wandb["mode"], WANDB_PROJECT=wandb["project"], WANDB_RUN_GROUP=wandb["group"],
               WANDB_RUN_ID="".join(c if c.isalnum() or c in "-_" else "-" for c in trial_id),
               WANDB_RESUME="allow", WANDB_DIR=str(trial_dir), WANDB_NAME=f"{trial_id} {config['label']} s{config['seed']}")
    for key, value in spec.env.items():
        env[key] = render(value, values, resume=resume)
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _fatal(trial_dir: Path, message: str) -> FatalCommandError:
    """The error, also written where a restart of the trial finds it and fails at once."""
    (trial_dir / FATAL).write_text(message + "\n")
    return FatalCommandError(message)


def _with_tail(err: CommandError, command: Command, trial_dir: Path) -> CommandError:
    """The error with the last lines of the command's log; the same lines in ``error_tail.txt``."""
    summary = str(err)
    tail = command.tail()
    (trial_dir / ERROR_TAIL).write_text("".join(f"{line}\n" for line in tail))
    shown = "\n".join(f"  | {line}" for line in tail) or "  | (nothing)"
    message = f"{summary}\nlast {len(tail)} lines of {command.log_path}:\n{shown}\n{summary}"
    return _fatal(trial_dir, message) if isinstance(err, FatalCommandError) else CommandError(message)


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the thread that started it dies (the worker killed, say)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _ray_stopping() -> bool:
    """Whether Ray has asked this trial's thread to end (it does so inside ``tune.report`` otherwise)."""
    try:
        from ray.train._internal.session import get_session

        event = getattr(get_session(), "stop_event", None)
        return bool(event is not None and event.is_set())
    except Exception:  # another Ray: the next tune.report ends the trial instead
        return False
