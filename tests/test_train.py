"""The trainer end to end at a size that takes seconds: exact resume, the NaN guard, the spike counter, stopping on
residue accuracy, decoded metrics, gradient strength, W&B, --init-from, the CLI.

Every run uses a dim-32, one-plus-one-layer model on batches of 16, one CPU thread, and W&B disabled
unless the test is about W&B.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import model.train as trainer
import model.trainer as loop
from model import names
from model.config import TrainConfig, load_config
from model.curriculum import Curriculum, clean_ce, curriculum_from_dict, load_curriculum
from model.data import fingerprint, make_stream, validation_sets
from model.decoding import greedy_decode
from model.errors import InputError
from model.evaluate import ISOTOPES, PRECURSOR_TOL_PPM, load_model
from model.gradients import gradient_strength
from model.losses import cross_entropy
from model.metrics import aa_match_metrics
from model.network import Spec2Pep
from model.synthetic import generate, step_generator
from model.tokenizer import PAD, STOP, VOCAB_SIZE

REPO = Path(__file__).resolve().parent.parent
SMALL = {
    "model.dim": 32, "model.n_head": 4, "model.dim_feedforward": 64,
    "model.encoder_layers": 1, "model.decoder_layers": 1,
    "data.batch_size": 16, "data.val_size": 48,
    "optim.warmup_steps": 5, "train.eval_interval": 10, "train.stop_at_accuracy": 0.0,
    "train.threads": 1, "train.progress": False, "train.device": "cpu", "wandb.mode": "disabled",
}
# Columns that measure the machine, not the run.
TIMING = {names.ELAPSED_S, names.TRAIN_STEPS_PER_S}


@pytest.fixture(autouse=True)
def restore_threads():
    """train() sets torch's thread count from the config; give other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _cfg(max_steps: int, **more) -> TrainConfig:
    return load_config("tiny", {**SMALL, "optim.max_steps": max_steps, **more})


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _num(value: str) -> float | None:
    """A metrics.csv cell: empty means MISSING."""
    return None if value == "" else float(value)


def _strict_json(path: Path) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=False)["model"]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_stage(spectrum: dict | None = None) -> Curriculum:
    data = {"name": "one", "stages": [{"name": "s", "steps": 1000, "min_length": 7, "max_length": 10}]}
    if spectrum:
        data["spectrum"] = spectrum
    return curriculum_from_dict(data, "one.yaml")


# --- (a) exact resume -----------------------------------------------------------------------------------------


def test_resume_is_exact(tmp_path: Path) -> None:
    """Stopped at step 20 and resumed, a run ends with exactly the metrics and weights of an uninterrupted one.

    The curriculum turns the spectrum loss on before the stop (15) and the precursor loss after it (31).
    Dropout is on, so the random state must be restored as well.
    """
    cur = load_curriculum("revised").scaled(0.001)
    assert cur.events() == {"spectrum": 15, "precursor": 31}
    cfg = _cfg(40, **{"model.dropout": 0.1, "train.decode_interval": 2, "train.grad_strength_batches": 3})
    full = trainer.train(cfg, cur, tmp_path / "full")
    first = trainer.train(cfg, cur, tmp_path / "part", on_eval=lambda row, _: row[names.STEP] >= 20)
    assert (first[names.STATUS], first[names.FINAL_STEP]) == ("stopped", 20)
    assert [r[names.STEP] for r in _rows(tmp_path / "part")] == ["10", "20"]
    resumed = trainer.train(cfg, cur, tmp_path / "part", resume=True)
    assert (full[names.STATUS], resumed[names.STATUS]) == ("completed", "completed")

    a, b = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r[names.STEP] for r in a] == [r[names.STEP] for r in b] == ["10", "20", "30", "40"]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra.keys() - TIMING:
            assert ra[key] == rb[key], (ra[names.STEP], key)
    assert {k: v for k, v in full.items() if k not in TIMING} == {k: v for k, v in resumed.items() if k not in TIMING}
    assert _same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "part"))

    # the auxiliary losses really ran, on both sides of the stop
    by_step = {r[names.STEP]: r for r in a}
    assert _num(by_step["10"][names.TRAIN_SPECTRUM]) is None and _num(by_step["30"][names.TRAIN_PRECURSOR]) is None
    assert 0 < _num(by_step["20"][names.TRAIN_SPECTRUM]) <= 1
    assert _num(by_step["40"][names.TRAIN_PRECURSOR]) > 0
    assert _num(by_step["40"][names.PRECURSOR_WEIGHT]) > 0 and _num(by_step["20"][names.SPECTRUM_WEIGHT]) > 0
    assert _num(by_step["40"][names.SPECTRUM_GRAD_RATIO]) > 0  # gradient strength was measured
    assert _num(by_step["40"][names.SPECTRUM_GRAD_RATIO_STD]) > 0  # over several batches
    assert _num(by_step["40"][names.PRECURSOR_GRAD_COSINE_STD]) > 0
    # decoded at every 2nd evaluation, on both sides of the stop; MISSING in between
    assert [_num(r[names.VAL_PEPTIDE_RECALL]) is None for r in a] == [True, False, True, False]
    assert all(0 < _num(r[names.VAL_AA_PRECISION]) <= 1 for r in a[1::2])
    # every row names the exam: the fingerprint of the validation tensors
    expected = fingerprint(validation_sets(cfg, cur, torch.device("cpu")))
    assert {r[names.VAL_FINGERPRINT] for r in a + b} == {expected}
    assert full[names.VAL_FINGERPRINT] == _strict_json(tmp_path / "full" / "summary.json")[names.VAL_FINGERPRINT] \
        == expected
    assert not (tmp_path / "full" / "wandb").exists()  # wandb.mode: disabled writes nothing


def test_measuring_changes_nothing(tmp_path: Path) -> None:
    """Gradient strength (dropout draws on 8 extra batches) and decoding leave the run as it would have been."""
    cur = load_curriculum("revised").scaled(0.001)
    base = {"model.dropout": 0.1}
    quiet = trainer.train(_cfg(30, **base, **{"train.grad_strength_interval": 0, "train.decode_interval": 0}),
                          cur, tmp_path / "quiet")
    busy = trainer.train(_cfg(30, **base, **{"train.grad_strength_interval": 1, "train.decode_interval": 1}),
                         cur, tmp_path / "busy")
    assert busy[names.SPECTRUM_GRAD_RATIO] > 0 and busy[names.VAL_AA_RECALL] >= 0
    assert quiet[names.SPECTRUM_GRAD_RATIO] == quiet[names.VAL_AA_RECALL] == names.MISSING
    assert _same_weights(_weights(tmp_path / "quiet"), _weights(tmp_path / "busy"))
    assert quiet[names.VAL_CE] == busy[names.VAL_CE]


# --- (b) the NaN guard --------------------------------------------------------------------------------------------


def test_nan_guard_skips_counts_and_ends_diverged(tmp_path: Path) -> None:
    """From step 10 every loss is NaN: those steps are skipped (weights untouched), counted, and after
    max_nonfinite_streak of them the run ends as diverged with finite metrics."""
    cfg = _cfg(60, **{"train.debug_nonfinite_from_step": 10, "train.max_nonfinite_streak": 25})
    seen: dict[int, dict] = {}

    def on_eval(row: dict, ckpt_dir: Path) -> bool:
        seen[int(row[names.STEP])] = torch.load(ckpt_dir / "last.pt", weights_only=False)
        return False

    summary = trainer.train(cfg, clean_ce(60), tmp_path, on_eval=on_eval)
    assert summary[names.STATUS] == "diverged"
    assert summary[names.FINAL_STEP] == 35  # steps 10..34 are the 25 non-finite ones
    assert summary[names.NAN_COUNT] == 25

    rows = _rows(tmp_path)
    assert [r[names.STEP] for r in rows] == ["10", "20", "30", "35"]
    assert [_num(r[names.NAN_COUNT]) for r in rows] == [0, 10, 20, 25]
    assert [_num(r[names.NONFINITE_STREAK]) for r in rows] == [0, 10, 20, 25]
    for row in rows[1:]:
        for key in (names.TRAIN_LOSS, names.TRAIN_CE, names.TRAIN_ACCURACY):
            assert row[key] == "", (row[names.STEP], key)  # nothing finite to report: MISSING, not NaN
        # frozen weights: the validation metrics do not move
        for key in (names.VAL_ACCURACY, names.VAL_CE, names.VAL_EASY_ACCURACY):
            assert row[key] == rows[0][key]
    for row in rows:
        for key, value in row.items():
            if key != names.VAL_FINGERPRINT:
                assert value == "" or math.isfinite(float(value)), (key, value)
    disk = _strict_json(tmp_path / "summary.json")
    assert disk[names.NAN_COUNT] == 25 and disk[names.STATUS] == "diverged"
    assert all(math.isfinite(v) for v in disk.values() if isinstance(v, float))

    # the weights and the optimiser did not move on the skipped steps
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert last["step"] == 35
    assert _same_weights(seen[10]["model"], last["model"])
    before, after = seen[10]["optimizer"]["state"], last["optimizer"]["state"]
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k]["step"], after[k]["step"]) for k in before)


# --- (c) stopping at a target accuracy, steps to 90% -------------------------------------------------------------


def test_residue_accuracy_gates_stops_and_counts_steps_to_90(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With validation accuracy scripted, residue accuracy (not token accuracy, which STOP inflates) decides
    the accuracy gate, steps_to_90, the best accuracy and stop_at_accuracy."""
    real_evaluate = loop.evaluate
    residue = iter([0.5, 0.91, 0.85, 0.95, 0.99])

    def scripted(*args, **kwargs):
        out = real_evaluate(*args, **kwargs)
        out[names.VAL_RESIDUE_ACCURACY] = next(residue)
        out[names.VAL_ACCURACY] = 0.97  # above every threshold from the first evaluation on
        return out

    monkeypatch.setattr(loop, "evaluate", scripted)
    gated = curriculum_from_dict({
        "name": "gated", "stages": [{"name": "s", "steps": 100, "min_length": 7, "max_length": 10}],
        "spectrum": {"intro_accuracy": 0.9, "start_weight": 0.1, "final_weight": 0.1},
    }, "gated.yaml")
    summary = trainer.train(_cfg(100, **{"train.stop_at_accuracy": 0.95}), gated, tmp_path)
    assert summary[names.STATUS] == "reached_target"
    assert summary[names.FINAL_STEP] == 40

    rows = _rows(tmp_path)
    accuracy = [_num(r[names.VAL_RESIDUE_ACCURACY]) for r in rows]
    assert accuracy == [0.5, 0.91, 0.85, 0.95]
    first_90 = next(int(r[names.STEP]) for r in rows if _num(r[names.VAL_RESIDUE_ACCURACY]) >= 0.9)
    assert summary[names.STEPS_TO_90] == first_90 == 20
    assert [_num(r[names.STEPS_TO_90]) for r in rows] == [None, 20, 20, 20]
    assert [_num(r[names.BEST_VAL_RESIDUE_ACCURACY]) for r in rows] == [0.5, 0.91, 0.91, 0.95]
    assert [_num(r[names.BEST_VAL_ACCURACY]) for r in rows] == [0.97] * 4
    assert [_num(r[names.SPECTRUM_INTRO_STEP]) for r in rows] == [None, 20, 20, 20]  # the gate opened at 20
    assert [_num(r[names.SPECTRUM_WEIGHT]) for r in rows] == [0, 0, pytest.approx(0.1), pytest.approx(0.1)]
    disk = _strict_json(tmp_path / "summary.json")
    assert disk[names.STEPS_TO_90] == 20 and disk[names.BEST_VAL_RESIDUE_ACCURACY] == 0.95


def test_stop_at_accuracy_on_a_real_run(tmp_path: Path) -> None:
    """A target below any accuracy stops at the first evaluation; 90% never reached means no steps_to_90.
    The last evaluation is decoded, though not a decode_interval-th one."""
    summary = trainer.train(_cfg(100, **{"train.stop_at_accuracy": 0.01, "train.decode_interval": 3}),
                            clean_ce(100), tmp_path)
    assert (summary[names.STATUS], summary[names.FINAL_STEP]) == ("reached_target", 10)
    assert summary[names.VAL_AA_PRECISION] != names.MISSING
    assert summary[names.STEPS_TO_90] is None
    assert _strict_json(tmp_path / "summary.json")[names.STEPS_TO_90] is None
    assert _rows(tmp_path)[0][names.STEPS_TO_90] == ""


# --- (e) --init-from -----------------------------------------------------------------------------------------------


def test_init_from_starts_a_new_curriculum_at_the_checkpoint_step(tmp_path: Path) -> None:
    """A new curriculum (spectrum loss from step 20) starts from a clean-CE run's step-20 checkpoint:
    the same weights as resuming that run under the new curriculum, new metrics only, the new weights."""
    trainer.train(_cfg(20), clean_ce(20), tmp_path / "a")
    new = _one_stage({"intro_step": 20, "start_weight": 0.1, "final_weight": 0.1})

    shutil.copytree(tmp_path / "a", tmp_path / "resumed")
    trainer.train(_cfg(30), new, tmp_path / "resumed", resume=True)
    summary = trainer.train(_cfg(30), new, tmp_path / "init", init_from=tmp_path / "a" / "checkpoints" / "last.pt")
    assert (summary[names.STATUS], summary[names.FINAL_STEP]) == ("completed", 30)

    rows = _rows(tmp_path / "init")
    assert [r[names.STEP] for r in rows] == ["30"]  # a new run: none of the old run's rows
    row = rows[0]
    assert _num(row[names.SPECTRUM_WEIGHT]) == pytest.approx(0.1)
    assert _num(row[names.SPECTRUM_INTRO_STEP]) == 20
    assert 0 < _num(row[names.TRAIN_SPECTRUM]) <= 1
    assert _same_weights(_weights(tmp_path / "init"), _weights(tmp_path / "resumed"))
    ref = _rows(tmp_path / "resumed")[-1]
    for key in row:
        if key.startswith(("train/", "val/", "val_easy/", "curriculum/", "grad/")) and key not in TIMING \
                and key not in (names.BEST_VAL_ACCURACY, names.BEST_VAL_RESIDUE_ACCURACY):
            assert row[key] == ref[key], key
    assert not _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "init"))


# --- gradient strength -----------------------------------------------------------------------------------------------


def test_gradient_strength_is_the_mean_and_spread_over_batches_of_the_norm_ratio_and_cosine() -> None:
    torch.set_num_threads(1)
    cfg = _cfg(10)
    torch.manual_seed(0)
    net = Spec2Pep(cfg.model)
    losses = loop.Losses(net, cfg)
    batches = [generate(8, 7, 10, 1, cfg.data, step_generator(0, step, "cpu")) for step in range(3)]
    state = _one_stage().at(0)
    cpu = torch.device("cpu")
    from dataclasses import replace

    def grads(batch, key: str, st) -> torch.Tensor:
        net.zero_grad()
        losses(batch, st, cpu)[key].backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in net.parameters()])

    for weight in (0.1, 0.4):
        st = replace(state, spectrum_weight=weight, precursor_weight=2 * weight)
        out = gradient_strength(net, losses, batches, st, cpu)
        for loss, w in (("spectrum", weight), ("precursor", 2 * weight)):
            ratios, cosines = [], []
            for batch in batches:
                ce, g = grads(batch, "ce", st), grads(batch, loss, st)
                ratios.append(float(w * g.norm() / ce.norm()))
                cosines.append(float(g @ ce / (g.norm() * ce.norm())))
            ratio, cosine = names.GRAD_NAMES[loss]
            ratio_std, cosine_std = names.GRAD_STD_NAMES[loss]
            assert out[ratio] == pytest.approx(sum(ratios) / 3, rel=1e-4)
            assert out[cosine] == pytest.approx(sum(cosines) / 3, abs=1e-4)
            assert out[ratio_std] == pytest.approx(float(torch.tensor(ratios).std()), rel=1e-3)  # sample std
            assert out[cosine_std] == pytest.approx(float(torch.tensor(cosines).std()), rel=1e-3, abs=1e-5)
            assert out[ratio_std] > 0 and -1 <= out[cosine] <= 1
    # an inactive loss is not measured; one batch has no spread
    only = gradient_strength(net, losses, batches[:1], replace(state, spectrum_weight=0.2), cpu)
    assert set(only) == set(names.GRAD_NAMES["spectrum"] + names.GRAD_STD_NAMES["spectrum"])
    assert only[names.SPECTRUM_GRAD_RATIO] > 0 and only[names.SPECTRUM_GRAD_RATIO_STD] == names.MISSING


# --- the spike counter on a base-preset-like run ------------------------------------------------------------------


def _pad_smoothing_bug() -> bool:
    """True while losses.cross_entropy spreads label smoothing onto PAD (logit -1e4): ~4 nats on every step."""
    logits = torch.zeros(1, 2, VOCAB_SIZE)
    logits[..., PAD] = -1e4  # as Spec2Pep writes it
    logits[0, 0, 5] = logits[0, 1, STOP] = 30.0  # a confident, right model
    return float(cross_entropy(logits, torch.tensor([[5, STOP]]), 0.01)) > 1.0


# The label smoothing fix is in model/losses.py (another branch). While the probe above still finds the bug, this
# test is an expected failure (on the CE check: a gap of ~4 nats); once the fix lands the probe is false and the
# test must pass as any other. Strict: a pass while the probe finds the bug would be an error.
@pytest.mark.xfail(_pad_smoothing_bug(), strict=True,
                   reason="losses.cross_entropy smooths onto PAD (~4 nats; issue 8 item 3): fixed in model/losses.py")
def test_an_injected_loss_spike_is_counted_on_a_base_like_run(tmp_path: Path) -> None:
    """Label smoothing 0.01 and dropout 0.1 as in the base preset: a spike injected at step 40 (the loss x 2 x
    spike_factor, and backpropagated) is counted once; without it, none. The smoothed CE stays near the clean
    one (a smoothing floor of ~4 nats would blind the counter to real spikes, which are a few nats)."""
    base_like = {"optim.label_smoothing": 0.01, "model.dropout": 0.1, "train.eval_interval": 20}
    spiked = trainer.train(_cfg(60, **base_like, **{"train.debug_spike_at_step": 40}), clean_ce(60), tmp_path / "a")
    plain = trainer.train(_cfg(60, **base_like), clean_ce(60), tmp_path / "b")
    assert (spiked[names.SPIKE_COUNT], plain[names.SPIKE_COUNT]) == (1, 0)
    assert [_num(r[names.SPIKE_COUNT]) for r in _rows(tmp_path / "a")] == [0, 0, 1]  # step 40 is in the 3rd interval
    assert spiked[names.NAN_COUNT] == 0
    assert not _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))  # the spike was trained on
    for summary in (spiked, plain):
        # train CE is smoothed, val CE is not; both on clean 7-10 peptides
        assert abs(summary[names.TRAIN_CE] - summary[names.VAL_CE]) < 1.0, summary[names.TRAIN_CE]


# --- (d) + (f) the CLI end to end, W&B offline, a run id kept across --resume -----------------------------------------


def _wandb_records(path: Path) -> list:
    """The records of an offline ``run-<id>.wandb`` file.

    The file is a W&B header (``:W&B``, a 2-byte magic, a version byte) and then a LevelDB log: 32 KiB
    blocks of chunks, each a 7-byte header (crc32c, little-endian length, type: 1 full, 2 first, 3 middle,
    4 last) and the bytes of a ``wandb_internal.Record`` protobuf.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    block, pos, buf, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
    return records


def _wandb_history(path: Path) -> list[dict]:
    rows = []
    for record in _wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "model.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_end_to_end_with_wandb_offline_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = [f"--set={key}={value}" for key, value in {**SMALL, "wandb.mode": "offline"}.items()]
    common = ["--config", "tiny", *sets, "--set", "optim.warmup_steps=2", "--out", str(out)]

    first = _cli([*common, "--max-steps", "20", "--wandb-run-id", "clitest01"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert "completed at step 20" in first.stdout
    assert [r[names.STEP] for r in _rows(out)] == ["10", "20"]
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "summary.json").is_file()

    second = _cli([*common, "--max-steps", "30", "--resume"], tmp_path)  # the run id comes from the checkpoint
    assert second.returncode == 0, second.stderr
    rows = _rows(out)
    assert [r[names.STEP] for r in rows] == ["10", "20", "30"]
    summary = _strict_json(out / "summary.json")
    assert (summary[names.STATUS], summary[names.FINAL_STEP]) == ("completed", 30)
    assert summary[names.VAL_ACCURACY] == float(rows[-1][names.VAL_ACCURACY])
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 30

    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith("-clitest01") for r in runs), runs
    history = []
    for run in runs:
        files = list(run.glob("run-*.wandb"))
        assert [f.name for f in files] == ["run-clitest01.wandb"]
        history += _wandb_history(files[0])
    assert [h["step"] for h in history] == [10, 20, 30]
    for h, row in zip(history, rows):
        assert h[names.VAL_ACCURACY] == float(row[names.VAL_ACCURACY])
        assert h[names.VAL_RESIDUE_ACCURACY] == float(row[names.VAL_RESIDUE_ACCURACY])
        assert h[names.VAL_FINGERPRINT] == row[names.VAL_FINGERPRINT] == summary[names.VAL_FINGERPRINT]
        assert names.TRAIN_SPECTRUM not in h  # MISSING values are not logged


REAL_MGF = Path(__file__).parent / "data" / "sample_preprocessed_spectra.mgf"


def _decode_and_score(model, data, truths: list[str]) -> tuple[float, float, float]:
    """(peptide recall, AA precision, AA recall) of greedy decoding, scored against ``truths``."""
    predictions = [p.peptide or None for p in greedy_decode(model, data, precursor_tol_ppm=PRECURSOR_TOL_PPM,
                                                             isotopes=ISOTOPES)]
    scores = aa_match_metrics(predictions, truths)
    return scores["peptide_recall"], scores["aa_precision"], scores["aa_recall"]


def test_decoded_metrics_are_those_of_the_checkpoint_decoded_apart(tmp_path: Path) -> None:
    """Real spectra mixed into training and validated on. At every evaluation the decoded metrics of the
    synthetic val set and of the real file equal those of the step's checkpoint, greedy-decoded here and
    scored against the MGF's own SEQ= peptides; teacher-forced real accuracy is reported beside them."""
    from model.mgf import MgfDataset

    cfg = _cfg(20, **{"data.train_files": [str(REAL_MGF)], "data.val_files": [str(REAL_MGF)],
                      "data.synthetic_fraction": 0.5, "train.decode_interval": 1, "optim.lr": 3e-3})
    stream = make_stream(cfg, torch.device("cpu"))
    state = clean_ce(20).at(0)
    batch = stream.batch(0, state)
    real_rows = batch.tokens[cfg.data.batch_size // 2:]
    lengths = ((real_rows != 0) & (real_rows != 1)).sum(dim=1)
    # Real peptides (6-19-mers in the shared file) are filtered by the stage's length range.
    assert lengths.min() >= state.min_length and lengths.max() <= state.max_length

    real = MgfDataset([str(REAL_MGF)])
    real_truths = [p for p in real.peptides if p]
    checked: list[int] = []

    def check(row: dict, ckpt_dir: Path) -> bool:
        model, saved = load_model(ckpt_dir / "last.pt")
        sets = validation_sets(saved, clean_ce(20), torch.device("cpu"))
        from model.tokenizer import decode

        synthetic_truths = [decode(t) for t in sets["val"].tokens]
        expected = {names.DECODED_NAMES["val"]: _decode_and_score(model, sets["val"], synthetic_truths),
                    names.DECODED_NAMES["val_real"]: _decode_and_score(model, sets["val_real"], real_truths)}
        for keys, values in expected.items():
            assert tuple(row[k] for k in keys) == pytest.approx(values, abs=1e-12), keys
        assert 0 < row[names.VAL_REAL_RESIDUE_ACCURACY] < row[names.VAL_REAL_ACCURACY] <= 1
        checked.append(row[names.STEP])
        return False

    summary = trainer.train(cfg, clean_ce(20), tmp_path, on_eval=check)
    assert summary[names.STATUS] == "completed" and checked == [10, 20]
    assert summary[names.VAL_AA_RECALL] > 0 and summary[names.VAL_REAL_AA_PRECISION] > 0  # not a trivial 0 == 0
    # A file without SEQ cannot be validated on: one clear error before training.
    bare = tmp_path / "bare.mgf"
    bare.write_text("\n".join(line for line in REAL_MGF.read_text().splitlines() if not line.startswith("SEQ=")))
    with pytest.raises(InputError, match="no annotated spectrum"):
        trainer.train(_cfg(20, **{"data.val_files": [str(bare)]}), clean_ce(20), tmp_path / "bare")


@pytest.mark.parametrize(("key", "value"), [("train.decode_interval", -1), ("train.grad_strength_batches", 0),
                                            ("train.debug_spike_at_step", -2)])
def test_bad_train_loop_keys_are_rejected_by_name(key: str, value: int) -> None:
    with pytest.raises(InputError) as info:
        _cfg(10, **{key: value})
    assert info.value.key == key


def test_a_crashed_training_closes_its_wandb_run(tmp_path: Path) -> None:
    """An exception inside train() (here from the caller's hook) must not leave a W&B run open."""
    def explode(row, ckpt_dir):
        raise RuntimeError("the caller's hook failed")

    cfg = _cfg(20, **{"wandb.mode": "offline"})
    with pytest.raises(RuntimeError, match="hook failed"):
        trainer.train(cfg, clean_ce(20), tmp_path, on_eval=explode)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    exits = [r.exit for r in _wandb_records(run_file) if r.WhichOneof("record_type") == "exit"]
    assert exits and exits[-1].exit_code == 1  # finished, and marked as failed
