"""Train a de novo sequencing transformer under a loss curriculum.

    python -m model.train --config model/configs/tiny.yaml
    python -m model.train --config base --curriculum revised --out results/train/revised --max-steps 50000

Every ``train.eval_interval`` steps: validation metrics go to ``metrics.csv`` (and W&B), a checkpoint
is written atomically, and the caller's ``on_eval`` hook runs (the Ray trainable reports from it).
``--resume`` continues exactly where the last checkpoint left off. The loop is ``model.trainer.Trainer``;
this module is its command line and the ``train`` function the search calls.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import names
from .config import TrainConfig, load_config, read_yaml, resolve_preset
from .curriculum import Curriculum, clean_ce, load_curriculum
from .errors import InputError, OneLineParser, exit_on_input_error
from .trainer import Losses, OnEval, Trainer, make_optimizer  # noqa: F401  (Losses, make_optimizer: re-exported)

log = logging.getLogger(__name__)


def train(
    cfg: TrainConfig,
    curriculum: Curriculum,
    out_dir: str | Path,
    *,
    resume: bool = False,
    init_from: str | Path | None = None,
    on_eval: OnEval | None = None,
    wandb_run_id: str | None = None,
    wandb_run_name: str | None = None,
) -> dict:
    """Train under ``curriculum`` for ``cfg.optim.max_steps`` steps; returns the summary (also in summary.json).

    ``on_eval(row, checkpoint_dir)`` runs after every evaluation, once that step's checkpoint is on
    disk; returning True stops training there (status ``stopped``). See ``model.trainer.Trainer``.
    """
    trainer = Trainer(cfg, curriculum, out_dir, resume=resume, init_from=init_from, wandb_run_id=wandb_run_id)
    return trainer.fit(on_eval, wandb_run_name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="config YAML or preset name (tiny, base)")
    parser.add_argument("--curriculum", help="curriculum YAML or shipped name (original, delayed, current, revised, conservative)")
    parser.add_argument("--out", help="output directory (default results/train/<config>-<curriculum>-s<seed>)")
    parser.add_argument("--max-steps", type=int, help="override optim.max_steps")
    parser.add_argument("--seed", type=int, help="override seed")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    parser.add_argument("--init-from", help="start this curriculum from a checkpoint's weights, optimiser and step")
    parser.add_argument("--wandb-run-id", help="continue this W&B run (e.g. nbs1e6hk)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=5e-4 (repeatable)")
    return parser.parse_args(argv)


def build_run(args: argparse.Namespace) -> tuple[TrainConfig, Curriculum, Path]:
    """Config, curriculum and output directory from the command line; every input checked first."""
    import yaml

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise InputError("--set", item, "expected KEY=VALUE, e.g. optim.lr=5e-4")
        key, value = item.split("=", 1)
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError("--set", key, f"malformed YAML value {value!r}, e.g. optim.betas=[0.9,0.98]") from None
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise InputError("--max-steps", args.max_steps, "must be >= 1")
        overrides["optim.max_steps"] = args.max_steps
        if "optim.warmup_steps" not in overrides:  # a shorter run gets a warm-up that fits in it
            preset_warmup = read_yaml(resolve_preset(args.config)).get("optim", {}).get("warmup_steps", 0)
            if isinstance(preset_warmup, int) and preset_warmup > args.max_steps:
                overrides["optim.warmup_steps"] = args.max_steps // 10
    if args.seed is not None:
        overrides["seed"] = args.seed
    cfg = load_config(args.config, overrides)
    name = args.curriculum or cfg.curriculum
    curriculum = load_curriculum(name) if name else clean_ce(cfg.optim.max_steps)
    curriculum.validate_steps(cfg.optim.max_steps, args.curriculum or args.config)
    for loss, intro in curriculum.events().items():
        if intro >= cfg.optim.max_steps:
            log.warning("curriculum %s introduces the %s loss at step %d, after the last step (%d): "
                        "this run never uses it", curriculum.name, loss, intro, cfg.optim.max_steps)
    if args.init_from and not Path(args.init_from).is_file():
        raise InputError(args.init_from, "--init-from", "no such checkpoint file")
    if args.resume and args.init_from:
        raise InputError("--resume", "--init-from", "give one of them, not both")
    stem = Path(args.config).stem
    out = Path(args.out) if args.out else Path("results") / "train" / f"{stem}-{curriculum.name}-s{cfg.seed}"
    return cfg, curriculum, out


@exit_on_input_error
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg, curriculum, out = build_run(args)
    summary = train(cfg, curriculum, out, resume=args.resume, init_from=args.init_from,
                    wandb_run_id=args.wandb_run_id)
    steps_to_90 = summary.get(names.STEPS_TO_90)
    print(f"{summary[names.STATUS]} at step {summary[names.FINAL_STEP]}: "
          f"val/residue_accuracy {summary.get(names.VAL_RESIDUE_ACCURACY, float('nan')):.4f}, "
          f"val/token_accuracy {summary.get(names.VAL_ACCURACY, float('nan')):.4f}, "
          f"steps to 90% (residue) {steps_to_90 if steps_to_90 is not None else 'never'}, "
          f"NaN steps {summary[names.NAN_COUNT]}, spikes {summary[names.SPIKE_COUNT]}; "
          f"metrics in {out / 'metrics.csv'}")
    return summary


if __name__ == "__main__":
    main()
