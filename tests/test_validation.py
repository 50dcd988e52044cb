"""Validation metrics: teacher-forced hits split into residues and STOP, and decoded metrics of an oracle."""

from __future__ import annotations

import pytest
import torch

from model import names
from model.config import load_config
from model.metrics import aa_match_metrics
from model.synthetic import generate, step_generator
from model.tokenizer import PAD, STOP, TOKEN_ID, VOCAB_SIZE, decode
from model.validation import DECODE_CHUNK, decoded, decoded_metrics, hits

G, A, W = TOKEN_ID["G"], TOKEN_ID["A"], TOKEN_ID["W"]


def _one_hot(predicted: list[list[int]]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), VOCAB_SIZE).float()  # (B, T, V)


def test_hits_count_residues_and_stop_apart_and_never_pad() -> None:
    targets = torch.tensor([[G, A, W, STOP, PAD], [A, STOP, PAD, PAD, PAD]])
    predicted = [[G, G, W, STOP, G], [A, A, G, G, G]]  # residues 3 of 4 right, STOP 1 of 2; PAD positions wrong
    h = hits(_one_hot(predicted), targets)
    assert (h.residue_correct, h.residues, h.stop_correct, h.stops) == (3, 4, 1, 2)
    assert h.residue_accuracy == 3 / 4 and h.stop_accuracy == 1 / 2 and h.token_accuracy == 4 / 6
    # right at every position: PAD predicted where PAD is the target adds nothing
    assert hits(_one_hot(targets.tolist()), targets).token_accuracy == 1.0
    assert (h + h).residues == 8
    empty = hits(_one_hot([[G]]), torch.tensor([[PAD]]))
    assert empty.residue_accuracy == empty.stop_accuracy == empty.token_accuracy == names.MISSING


class Oracle(torch.nn.Module):
    """Decodes each spectrum's own target (it reads the batch's tokens), except that spectra of charge 2
    get W (or G, where the truth starts with W) as their first residue: a known share of wrong answers."""

    def encode(self, batch):
        n = len(batch)
        return torch.zeros(n, 1, 1), torch.zeros(n, 1, dtype=torch.bool)  # (B, 1, D), (B, 1)

    def decode(self, batch, prefix, memory, memory_pad, last_only=True):
        t = prefix.shape[1]
        width = batch.tokens.shape[1]
        target = batch.tokens[:, t] if t < width else torch.full((len(batch),), STOP)  # (N,)
        if t == 0:
            wrong = torch.where(target == W, torch.full_like(target, G), torch.full_like(target, W))
            target = torch.where(batch.charge == 2, wrong, target)
        logits = torch.full((len(batch), 1, VOCAB_SIZE), -10.0)
        logits[torch.arange(len(batch)), 0, target] = 10.0
        return logits  # (N, 1, V)


def _oracle_answers(data) -> tuple[list[str], list[str]]:
    """(the oracle's peptides, the truths), written from the token ids here, apart from any decoding."""
    answers, truths = [], []
    for row, charge in zip(data.tokens.tolist(), data.charge.tolist()):
        ids = row[: row.index(STOP)]
        truths.append(decode(ids))
        answers.append(decode([G if ids[0] == W else W, *ids[1:]] if charge == 2 else ids))
    return answers, truths


def test_decoded_metrics_of_an_oracle_match_the_truth_and_its_known_mistakes() -> None:
    cfg = load_config("tiny")
    data = generate(DECODE_CHUNK + 37, 7, 12, 2, cfg.data, step_generator(0, 0, "cpu"))  # two chunks
    wrong = data.charge == 2
    assert 0 < int(wrong.sum()) < len(data)
    answers, truths = _oracle_answers(data)
    scores = decoded_metrics(Oracle(), data)
    assert scores == aa_match_metrics(answers, truths)
    assert scores["peptide_recall"] == pytest.approx(1 - float(wrong.float().mean()))
    assert 0.8 < scores["aa_recall"] < 1 and scores["aa_precision"] < 1


def test_decoded_names_are_missing_unless_run() -> None:
    cfg = load_config("tiny")
    sets = {"val": generate(8, 7, 10, 0, cfg.data, step_generator(0, 1, "cpu")),
            "val_easy": generate(8, 7, 10, 0, cfg.data, step_generator(0, 2, "cpu"))}
    off = decoded(Oracle(), sets, run=False)
    assert off == dict.fromkeys(names.DECODED_NAMES["val"], names.MISSING)  # no val_real, no val_real keys
    expected = aa_match_metrics(*_oracle_answers(sets["val"]))
    assert decoded(Oracle(), sets) == {names.VAL_PEPTIDE_RECALL: expected["peptide_recall"],
                                       names.VAL_AA_PRECISION: expected["aa_precision"],
                                       names.VAL_AA_RECALL: expected["aa_recall"]}
