"""A sweep trial's footprint: FLOPs, CPU latency and bytes on disk of its model, fp32 and int8, recorded once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

from conftest import conll_text, ner_yaml, write_conll_splits, write_standard
from nlpstd.data.encode import encode
from nlpstd.spec import GateSpec, load_standard
from nlpstd.sweep import footprint
from nlpstd.sweep.trial import run_trial

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]


def tuned_model(tiny_base: Path, layers: int) -> BertForTokenClassification:
    """The tiny base's shape with a token-classification head and `layers` layers, random weights."""
    config = BertConfig.from_pretrained(tiny_base, num_hidden_layers=layers, id2label=dict(enumerate(LABELS)),
                                        label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(0)
    return BertForTokenClassification(config).eval()


def validation_records(count: int) -> list[dict]:
    """`count` CoNLL sentences of the tiny data set as prepared records (words and tags)."""
    sentences = [block.splitlines() for block in conll_text(count, offset=500).split("\n\n")[1:] if block.strip()]
    return [{"tokens": [line.split()[0] for line in lines], "tags": [line.split()[-1] for line in lines]} for lines in sentences]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_base) -> Path:
    folder = tmp_path_factory.mktemp("tuned")
    tuned_model(tiny_base, layers=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def measured(model_dir) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    validation = encode(tokenizer, "token-classification", validation_records(24), LABELS, 32)
    return footprint.footprint(model_dir, "token-classification", validation, LABELS, sample=16)


def test_the_footprint_figures_are_positive(measured):
    assert measured["parameters"] > 0 and measured["inference_flops"] > 0 and measured["inference_tokens"] > 0
    assert measured["cpu_ms"] > 0 and measured["cpu_threads"] >= 1 and measured["disk_bytes"] > 0
    assert measured["int8_cpu_ms"] > 0 and measured["int8_skipped"] is None
    assert 0 <= measured["int8_validation"]["f1"] <= 1


def test_the_int8_file_is_smaller_than_the_fp32_weights(measured, model_dir):
    assert measured["disk_bytes"] == (model_dir / "model.safetensors").stat().st_size
    assert measured["int8_disk_bytes"] < measured["disk_bytes"] / 2


def test_a_two_layer_model_takes_more_flops_than_a_one_layer_model_of_the_same_width(tiny_base):
    features = [{"input_ids": [101, *range(2000, 2000 + n), 102], "labels": [0] * (n + 2)} for n in (4, 10, 20)]
    tokens, one = footprint.inference_flops(tuned_model(tiny_base, layers=1), features)
    _, two = footprint.inference_flops(tuned_model(tiny_base, layers=2), features)
    assert tokens == 12  # the median example's length
    assert two > one > 0
    hidden, ffn = 64, 128  # per layer: 4 projections and 2 feed-forward products, 2 FLOPs per multiply-add
    assert two - one >= 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn)


def test_without_the_onnx_packages_int8_is_skipped_and_says_why(model_dir, monkeypatch):
    monkeypatch.setattr(footprint, "ONNX_PACKAGES", ("onnx", "no_such_onnx_package"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    validation = encode(tokenizer, "token-classification", validation_records(4), LABELS, 32)
    measured = footprint.footprint(model_dir, "token-classification", validation, LABELS, sample=4)
    assert measured["int8_skipped"] == "no_such_onnx_package not installed"
    assert measured["int8_validation"] is None and measured["int8_disk_bytes"] is None and measured["cpu_ms"] > 0


def test_int8_passes_only_when_it_clears_the_gate_within_the_parity_drop():
    gate = GateSpec(metric="f1", min=0.5)
    assert footprint.int8_verdict({"f1": 0.795}, {"f1": 0.80}, gate, max_drop=0.01)["int8_passes_gate"]
    assert not footprint.int8_verdict({"f1": 0.78}, {"f1": 0.80}, gate, max_drop=0.01)["int8_passes_gate"]  # drops too far
    assert not footprint.int8_verdict({"f1": 0.45}, {"f1": 0.45}, gate, max_drop=0.01)["int8_passes_gate"]  # misses the gate
    assert footprint.int8_verdict(None, {"f1": 0.80}, gate, max_drop=0.01) == {"int8_metric_drop": None, "int8_passes_gate": False}


# -- recorded by the trial


@pytest.fixture(scope="module")
def trial(tmp_path_factory, tiny_base) -> tuple:
    """One trial of a one-point sweep, run once: (standard, point, trial folder, shared folder)."""
    folder = tmp_path_factory.mktemp("sweep")
    write_conll_splits(folder)
    std = load_standard(write_standard(folder, ner_yaml(tiny_base) + "sweep: {params: {finetune.lr: [3.0e-3]}}\n"))
    point = {"finetune.lr": 3.0e-3}
    run_trial(std, point, folder / "trial", folder / "shared")
    return std, point, folder / "trial", folder / "shared"


def test_a_trial_records_its_footprint_in_result_json(trial):
    result = json.loads((trial[2] / "result.json").read_text())
    assert all(key in result for key in footprint.KEYS)
    assert result["inference_flops"] > 0 and result["cpu_ms"] > 0 and 0 < result["int8_disk_bytes"] < result["disk_bytes"]
    assert result["int8_value"] == result["int8_validation"]["f1"]
    assert result["int8_metric_drop"] == pytest.approx(result["validation"]["f1"] - result["int8_value"])
    assert isinstance(result["int8_passes_gate"], bool)


def test_a_rerun_of_a_trial_keeps_the_recorded_footprint(trial, monkeypatch):
    std, point, out, shared = trial
    before = json.loads((out / "result.json").read_text())

    def measured_again(*args, **kwargs):
        raise AssertionError("the footprint was measured again")

    monkeypatch.setattr(footprint, "footprint", measured_again)
    after = run_trial(std, point, out, shared)
    assert {key: after[key] for key in footprint.KEYS} == {key: before[key] for key in footprint.KEYS}
