"""Typed training configuration, filled from YAML by one strict loader.

Unknown keys, wrong types and impossible values are rejected by name, with the file, before any
work starts (``InputError``). Every key has a default, so a preset names only what it changes; the
shipped presets in ``model/configs/`` spell out every key anyway, with a comment above each.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

CONFIG_DIR = Path(__file__).parent / "configs"
SPECTRUM_FORMS = ("soft_mass", "expected_match")  # loss.spectrum_form: model.losses.spectrum_loss


@dataclass
class ModelConfig:
    dim: int = 128
    n_head: int = 4
    dim_feedforward: int = 512
    encoder_layers: int = 2
    decoder_layers: int = 2
    dropout: float = 0.0
    max_peaks: int = 150
    ion_features: bool = True  # candidate-ion evidence per next residue (DeepNovo/PointNovo style)
    ion_feature_sigma_da: float = 0.02


@dataclass
class PreprocessSection:
    min_mz: float = 50.0
    max_mz: float = 2500.0
    remove_precursor_tol: float = 2.0
    sqrt_intensity: bool = True
    top_k: int = 150
    min_peaks: int = 5
    normalize: bool = True
    strict: bool = False
    max_charge: int = 10


@dataclass
class DataConfig:
    batch_size: int = 64
    min_charge: int = 2
    max_charge: int = 4
    ion_keep_prob: float = 0.62
    # Realism of the synthetic spectra (model/synthetic.py). These defaults give b/y ions alone, each as likely;
    # model/configs/base.yaml holds the values measured on a real file.
    b_keep_ratio: float = 1.0
    b2_keep_prob: float = 0.0
    proline_keep_prob: float = 0.0
    neutral_loss_prob: float = 0.0
    a_ion_prob: float = 0.0
    isotope_prob: float = 0.0
    immonium_prob: float = 0.0
    precursor_ppm: float = 0.0
    jitter_ppm: float = 5.0
    max_mz: float = 2500.0
    fixed_carbamidomethyl: bool = True
    oxidation_prob: float = 0.0
    val_size: int = 512
    val_seed: int = 4242
    # The validation data of ``val``; 0 / -1: the curriculum's hardest stage. A search sets all three, once.
    val_min_length: int = 0
    val_max_length: int = 0
    val_noise_peaks: int = -1
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    synthetic_fraction: float = 1.0
    fixed_mods: dict[str, str] = field(default_factory=dict)  # real files' implicit mods: {C: Carbamidomethyl}
    preprocess: PreprocessSection = field(default_factory=PreprocessSection)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    max_steps: int = 3000
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    label_smoothing: float = 0.0


@dataclass
class LossConfig:
    spectrum_tolerance_da: float = 0.05
    precursor_scale_da: float = 1.0
    spectrum_form: str = "soft_mass"  # one of SPECTRUM_FORMS


@dataclass
class TrainLoopConfig:
    eval_interval: int = 100
    checkpoint_interval: int = 0  # 0: checkpoint at every evaluation
    stop_at_accuracy: float = 0.0  # > 0: stop once val residue accuracy reaches it
    max_nonfinite_streak: int = 20
    spike_factor: float = 3.0
    spike_window: int = 50
    grad_strength_interval: int = 1  # measure gradient strength at every Nth evaluation
    grad_strength_batches: int = 8  # ... as the mean (and spread) over this many batches
    decode_interval: int = 4  # greedy-decode val and val_real at every Nth evaluation and the last (0: never)
    compile: bool = False
    device: str = "auto"
    threads: int = 0  # 0: leave torch's default
    progress: bool = True
    debug_nonfinite_from_step: int = -1  # >= 0: make every loss from this step on NaN (tests the NaN guard)
    debug_spike_at_step: int = -1  # >= 0: multiply this step's loss by 2 x spike_factor (tests the spike counter)


@dataclass
class WandbConfig:
    mode: str = "offline"
    project: str = "curriculum-search"
    group: str = ""
    tags: list[str] = field(default_factory=list)
    dir: str = ""  # where wandb/ lands; empty: the run's output directory


@dataclass
class TrainConfig:
    seed: int = 0
    curriculum: str = ""  # a curriculum YAML path or a shipped name; empty: the preset's clean CE stage
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, file: object, key: str) -> Any:
    """Coerce a YAML value to a field type, or raise InputError naming the key."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(file, key, f"expected a mapping of {tp.__name__} keys, got {value!r}")
        return build(tp, value, file, key)
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise InputError(file, key, f"expected a mapping, got {value!r}")
        return {coerce(k, key_tp, file, key): coerce(v, value_tp, file, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise InputError(file, key, f"expected a list, got {value!r}")
        return [coerce(v, item_tp, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], file, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(file, key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise InputError(file, key, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise InputError(file, key, f"expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e308 or isinstance(value, float) else math.inf
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        if number is None or not math.isfinite(number):  # .inf and .nan never make sense in a config
            raise InputError(file, key, f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise InputError(file, key, f"expected a string, got {value!r}")
    raise AssertionError(f"unsupported field type {_type_name(tp)} at {key}")


def build(cls: type, data: dict, file: object, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise InputError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise InputError(file, where, f"unknown key; allowed: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in data:
            where = f"{prefix}.{name}" if prefix else name
            kwargs[name] = coerce(data[name], hints[name], file, where)
    return cls(**kwargs)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, or raise InputError naming the file (missing, unreadable, malformed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else "yaml"
        problem = " ".join(str(getattr(err, "problem", None) or err).split())  # one line, whatever PyYAML says
        raise InputError(path, line, f"malformed YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, "file", f"cannot read: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(path, "top level", f"expected a mapping of keys, got {type(data).__name__}")
    return data


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError("<overrides>", dotted, f"{part} is not a mapping")
    node[last] = value


def resolve_shipped(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    """A path to a YAML file, or the name of one shipped in ``folder``; InputError names the shipped ones."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = folder / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise InputError(name_or_path, kind, f"unknown {kind}; shipped: {', '.join(names)}")
    return shipped


def resolve_preset(name_or_path: str | Path) -> Path:
    """A preset name (``tiny``, ``base``) or a path to a config YAML."""
    return resolve_shipped(name_or_path, CONFIG_DIR, "preset")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a training config (file or preset name) with optional dotted-key overrides, and validate it."""
    path = resolve_preset(path)
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    cfg = build(TrainConfig, data, path)
    validate(cfg, path)
    return cfg


def validate(cfg: TrainConfig, file: object) -> None:
    """Reject impossible values by name."""

    def need(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise InputError(file, key, message)

    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.train
    need(m.dim > 0 and m.n_head > 0 and m.dim % m.n_head == 0, "model.dim",
         f"must be a positive multiple of model.n_head ({m.n_head}), got {m.dim}")
    need(m.dim_feedforward > 0, "model.dim_feedforward", f"must be > 0, got {m.dim_feedforward}")
    need(m.encoder_layers >= 1, "model.encoder_layers", f"must be >= 1, got {m.encoder_layers}")
    need(m.decoder_layers >= 1, "model.decoder_layers", f"must be >= 1, got {m.decoder_layers}")
    need(0.0 <= m.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    need(m.max_peaks >= 1, "model.max_peaks", f"must be >= 1, got {m.max_peaks}")
    need(m.ion_feature_sigma_da > 0, "model.ion_feature_sigma_da", f"must be > 0, got {m.ion_feature_sigma_da}")
    need(d.batch_size >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
    need(1 <= d.min_charge <= d.max_charge <= 6, "data.min_charge",
         f"need 1 <= min_charge <= max_charge <= 6, got {d.min_charge}..{d.max_charge}")
    need(0.0 < d.ion_keep_prob <= 1.0, "data.ion_keep_prob", f"must be in (0, 1], got {d.ion_keep_prob}")
    need(0.0 < d.b_keep_ratio <= 1.0, "data.b_keep_ratio", f"must be in (0, 1], got {d.b_keep_ratio}")
    for key in ("b2_keep_prob", "proline_keep_prob", "neutral_loss_prob", "a_ion_prob", "isotope_prob",
                "immonium_prob"):
        need(0.0 <= getattr(d, key) <= 1.0, f"data.{key}", f"must be in [0, 1], got {getattr(d, key)}")
    need(0.0 <= d.precursor_ppm <= 100.0, "data.precursor_ppm", f"must be in [0, 100], got {d.precursor_ppm}")
    need(d.jitter_ppm >= 0, "data.jitter_ppm", f"must be >= 0, got {d.jitter_ppm}")
    need(0.0 <= d.oxidation_prob <= 1.0, "data.oxidation_prob", f"must be in [0, 1], got {d.oxidation_prob}")
    need(d.val_size >= 1, "data.val_size", f"must be >= 1, got {d.val_size}")
    _validate_val_data(d, need)
    need(0.0 <= d.synthetic_fraction <= 1.0, "data.synthetic_fraction",
         f"must be in [0, 1], got {d.synthetic_fraction}")
    need(d.synthetic_fraction > 0 or d.train_files, "data.synthetic_fraction",
         "is 0 but data.train_files is empty: nothing to train on")
    if d.fixed_mods:
        from .annotation import fixed_mod_tokens

        try:
            fixed_mod_tokens(d.fixed_mods)
        except ValueError as err:
            need(False, "data.fixed_mods", str(err))
    for i, f in enumerate(d.train_files + d.val_files):
        need(Path(f).is_file(), f"data.{'train' if i < len(d.train_files) else 'val'}_files", f"no such file {f!r}")
    need(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    need(o.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas",
         f"must be two numbers in [0, 1), got {o.betas}")
    need(o.max_steps >= 1, "optim.max_steps", f"must be >= 1, got {o.max_steps}")
    need(0 <= o.warmup_steps <= o.max_steps, "optim.warmup_steps",
         f"must be in [0, optim.max_steps={o.max_steps}], got {o.warmup_steps}")
    need(0.0 <= o.min_lr_ratio <= 1.0, "optim.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    need(o.grad_clip >= 0, "optim.grad_clip", f"must be >= 0 (0 disables), got {o.grad_clip}")
    need(0.0 <= o.label_smoothing < 1.0, "optim.label_smoothing", f"must be in [0, 1), got {o.label_smoothing}")
    need(cfg.loss.spectrum_tolerance_da > 0, "loss.spectrum_tolerance_da",
         f"must be > 0, got {cfg.loss.spectrum_tolerance_da}")
    need(cfg.loss.precursor_scale_da > 0, "loss.precursor_scale_da", f"must be > 0, got {cfg.loss.precursor_scale_da}")
    need(cfg.loss.spectrum_form in SPECTRUM_FORMS, "loss.spectrum_form",
         f"must be one of {', '.join(SPECTRUM_FORMS)}, got {cfg.loss.spectrum_form!r}")
    need(t.eval_interval >= 1, "train.eval_interval", f"must be >= 1, got {t.eval_interval}")
    need(t.checkpoint_interval >= 0, "train.checkpoint_interval", f"must be >= 0, got {t.checkpoint_interval}")
    need(0.0 <= t.stop_at_accuracy <= 1.0, "train.stop_at_accuracy", f"must be in [0, 1], got {t.stop_at_accuracy}")
    need(t.max_nonfinite_streak >= 1, "train.max_nonfinite_streak", f"must be >= 1, got {t.max_nonfinite_streak}")
    need(t.spike_factor > 1.0, "train.spike_factor", f"must be > 1, got {t.spike_factor}")
    need(t.spike_window >= 2, "train.spike_window", f"must be >= 2, got {t.spike_window}")
    need(t.grad_strength_interval >= 0, "train.grad_strength_interval", f"must be >= 0, got {t.grad_strength_interval}")
    need(t.grad_strength_batches >= 1, "train.grad_strength_batches", f"must be >= 1, got {t.grad_strength_batches}")
    need(t.decode_interval >= 0, "train.decode_interval", f"must be >= 0 (0: never), got {t.decode_interval}")
    need(t.debug_nonfinite_from_step >= -1, "train.debug_nonfinite_from_step",
         f"must be >= 0, or -1 for never, got {t.debug_nonfinite_from_step}")
    need(t.debug_spike_at_step >= -1, "train.debug_spike_at_step",
         f"must be >= 0, or -1 for never, got {t.debug_spike_at_step}")
    need(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
         f"must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    need(t.threads >= 0, "train.threads", f"must be >= 0, got {t.threads}")
    need(cfg.wandb.mode in ("offline", "online", "disabled"), "wandb.mode",
         f"must be offline, online or disabled, got {cfg.wandb.mode!r}")


def _validate_val_data(d: DataConfig, need) -> None:
    """data.val_min_length/val_max_length: both 0 (the curriculum's hardest lengths) or a range in 1..30;
    data.val_noise_peaks: -1 (the curriculum's hardest noise) or >= 0."""
    from .curriculum import MAX_PEPTIDE_LENGTH  # curriculum imports this module

    lo, hi = d.val_min_length, d.val_max_length
    need(lo >= 0 and hi >= 0 and (lo == 0) == (hi == 0), "data.val_min_length",
         f"set data.val_min_length and data.val_max_length both (1 <= min <= max <= {MAX_PEPTIDE_LENGTH}) "
         f"or both to 0 (the curriculum's hardest stage), got {lo}..{hi}")
    need(lo == 0 or 1 <= lo <= hi <= MAX_PEPTIDE_LENGTH, "data.val_min_length",
         f"need 1 <= val_min_length <= val_max_length <= {MAX_PEPTIDE_LENGTH}, got {lo}..{hi}")
    need(d.val_noise_peaks >= -1, "data.val_noise_peaks",
         f"must be >= 0, or -1 for the curriculum's hardest stage, got {d.val_noise_peaks}")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
