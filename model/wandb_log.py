"""W&B logging for one training run; wandb is imported only when logging is switched on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import names
from .config import WandbConfig


class WandbRun:
    """One W&B run: offline by default (no account, no network), resumable by id."""

    def __init__(self, cfg: WandbConfig, out_dir: Path, run_id: str | None, name: str | None, config: dict) -> None:
        import wandb  # imported only when switched on

        directory = Path(cfg.dir) if cfg.dir else out_dir
        directory.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=cfg.project, group=cfg.group or None, tags=list(cfg.tags) or None, name=name,
            id=run_id, resume="allow" if run_id else None, mode=cfg.mode, dir=str(directory),
            config=config, reinit="create_new",
            settings=wandb.Settings(console="off", x_disable_stats=True, quiet=True),
        )
        self.run.define_metric(names.STEP)
        self.run.define_metric("*", step_metric=names.STEP)

    @property
    def id(self) -> str:
        return self.run.id

    def log(self, row: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in row.items() if not (isinstance(v, float) and v == names.MISSING)})

    def finish(self, summary: dict[str, Any]) -> None:
        for key, value in summary.items():
            if isinstance(value, (int, float, str)):
                self.run.summary[key] = value
        self.run.finish()
