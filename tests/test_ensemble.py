"""An ensemble (`finetune.seeds`): one member per seed, each the model a run of that seed alone would
train, served as the mean of their logits by torch, `nlpstd predict` and one ONNX graph."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

from conftest import killed_at_step, ner_yaml, wait_for_checkpoint, write_conll_splits, write_standard
from nlpstd.errors import LocatedError
from nlpstd.export.onnx import OnnxForward, quantize_int8
from nlpstd.models.build import load_model
from nlpstd.models.ensemble import Ensemble
from nlpstd.predict import Predictor
from nlpstd.runner import run_standard

SEEDS = [1, 2, 3]
TEXTS = ["Maria Smith flew to Tokyo for Siemens on day 3 .", "Anna Smith flew to Oslo .", "nothing here"]
EXPORT = "export: {formats: [safetensors, onnx], serving: {format: onnx}}\n"


def _standard(folder: Path, base: Path, seeds: list[int] | None = None, seed: int | None = None, epochs: int = 3) -> Path:
    """The tiny NER standard, its fine-tuning an ensemble of `seeds` (or one model of `seed`), exported as ONNX."""
    folder.mkdir(parents=True, exist_ok=True)
    write_conll_splits(folder)
    text = ner_yaml(base).replace("epochs: 3", f"epochs: {epochs}")
    if seeds:
        text = text.replace("checkpoint_every: 10}", f"checkpoint_every: 10, seeds: {seeds}}}")
    if seed is not None:
        text += f"seed: {seed}\n"
    return write_standard(folder, text + EXPORT)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, tiny_base: Path) -> Path:
    """Every stage of an ensemble of three seeds; the run's output folder."""
    folder = tmp_path_factory.mktemp("ensemble")
    run_standard(_standard(folder, tiny_base, SEEDS), folder / "out", tracking=False)
    return folder / "out"


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, tiny_base: Path) -> Path:
    """The same standard without `finetune.seeds`, its seed the ensemble's second: one model."""
    folder = tmp_path_factory.mktemp("single")
    run_standard(_standard(folder, tiny_base, seed=SEEDS[1]), folder / "out", stages=["data-prep", "finetune"], tracking=False)
    return folder / "out"


def _tokens(folder: Path) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def test_an_ensemble_run_writes_its_members_and_each_members_score_their_mean_and_spread(ensemble_run: Path):
    model = ensemble_run / "finetune" / "model"
    info = json.loads((model / "nlpstd.json").read_text())
    assert info["ensemble"] == {"combine": "mean", "members": ["members/2", "members/3"], "seeds": SEEDS}
    for seed in SEEDS[1:]:
        assert sorted(p.name for p in (model / "members" / str(seed)).iterdir()) == ["config.json", "model.safetensors"]
    assert (model / "tokenizer.json").is_file(), "the first member's folder is a whole Hugging Face folder"

    metrics = json.loads((ensemble_run / "finetune" / "metrics.json").read_text())
    scores = [metrics[f"member_{seed}_best_validation_f1"] for seed in SEEDS]
    assert metrics["members_mean_best_validation_f1"] == pytest.approx(statistics.fmean(scores))
    assert metrics["members_spread_best_validation_f1"] == pytest.approx(statistics.stdev(scores))
    assert all(metrics[f"member_{seed}_train_seconds"] > 0 for seed in SEEDS)
    assert 0 <= metrics["best_validation_f1"] <= 1, "the ensemble's own validation score"
    one = sum(p.numel() for p in AutoModelForTokenClassification.from_pretrained(model).parameters())
    assert metrics["parameters"] == 3 * one


def test_the_ensembles_logits_are_the_mean_of_its_members_logits(ensemble_run: Path):
    folder = ensemble_run / "finetune" / "model"
    batch = _tokens(folder)
    ensemble = load_model(folder, "token-classification").eval()
    assert isinstance(ensemble, Ensemble) and ensemble.config.id2label[0] == "O"
    members = [folder, *(folder / "members" / str(seed) for seed in SEEDS[1:])]
    with torch.no_grad():
        expected = torch.stack([AutoModelForTokenClassification.from_pretrained(m).eval()(**batch).logits for m in members]).mean(0)
        got = ensemble(**batch).logits
    assert (got - expected).abs().max() < 1e-6


def test_a_member_is_the_model_a_single_run_of_its_seed_trains(ensemble_run: Path, single_run: Path):
    member = load_file(ensemble_run / "finetune" / "model" / "members" / str(SEEDS[1]) / "model.safetensors")
    alone = load_file(single_run / "finetune" / "model" / "model.safetensors")
    assert member.keys() == alone.keys()
    assert all(torch.equal(member[k], alone[k]) for k in alone)


def test_without_seeds_there_are_no_members_and_no_ensemble_entry(single_run: Path):
    model = single_run / "finetune" / "model"
    assert not (model / "members").exists()
    assert "ensemble" not in json.loads((model / "nlpstd.json").read_text())
    assert not any(key.startswith("member") for key in json.loads((single_run / "finetune" / "metrics.json").read_text()))
    assert not isinstance(load_model(model, "token-classification"), Ensemble)


def test_the_export_carries_every_member_and_its_card_says_how_it_is_served(ensemble_run: Path):
    export = ensemble_run / "export" / "model"
    for seed in SEEDS[1:]:
        tuned = ensemble_run / "finetune" / "model" / "members" / str(seed) / "model.safetensors"
        assert (export / "members" / str(seed) / "model.safetensors").read_bytes() == tuned.read_bytes()
    card = (export / "README.md").read_text()
    assert "ensemble of 3 members" in card and "seeds 1, 2, 3" in card and "first member only" in card
    recipe = next(line for line in card.splitlines() if line.startswith("- Recipe:"))
    assert recipe.endswith("seeds 1, 2, 3 (one member each)"), recipe
    onnx_info = json.loads((export / "onnx" / "nlpstd.json").read_text())
    assert onnx_info["ensemble"] == {"combine": "mean", "seeds": SEEDS}, "the graph holds the members; no folders to point at"


def test_the_onnx_graph_gives_the_ensembles_logits_and_predict_agrees_on_folder_and_graph(ensemble_run: Path):
    export = ensemble_run / "export" / "model"
    batch = _tokens(export)
    with torch.no_grad():
        torch_logits = load_model(export, "token-classification").eval()(**batch).logits.numpy()
    onnx_logits = OnnxForward(export / "onnx" / "model.onnx")(batch)
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4

    def entities(results: list[dict]) -> list[list[tuple]]:
        return [[(e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results]

    assert entities(Predictor(export)(TEXTS)) == entities(Predictor(export / "onnx" / "model.onnx")(TEXTS))


def test_the_ensemble_graph_quantizes_to_int8(ensemble_run: Path, tmp_path: Path):
    export = ensemble_run / "export" / "model"
    batch = _tokens(export)
    fp32 = OnnxForward(export / "onnx" / "model.onnx")(batch)
    int8 = OnnxForward(quantize_int8(export / "onnx" / "model.onnx", tmp_path / "model.onnx"))(batch)
    assert int8.shape == fp32.shape and np.isfinite(int8).all()


def test_an_ensemble_folder_missing_a_member_is_refused_at_its_entry(ensemble_run: Path, tmp_path: Path):
    folder = shutil.copytree(ensemble_run / "export" / "model", tmp_path / "model")
    shutil.rmtree(folder / "members" / "3")
    with pytest.raises(LocatedError) as refused:
        load_model(folder, "token-classification")
    assert refused.value.file == str(folder / "nlpstd.json") and refused.value.field == "ensemble.members"
    assert "members/3: missing" in refused.value.message


def test_a_member_with_other_labels_is_refused_at_the_ensemble_entry(ensemble_run: Path, tmp_path: Path):
    folder = shutil.copytree(ensemble_run / "export" / "model", tmp_path / "model")
    config_file = folder / "members" / "2" / "config.json"
    config = json.loads(config_file.read_text())
    names = config["id2label"]
    names["0"], names["1"] = names["1"], names["0"]  # the same labels, in another order: other logit columns
    config["label2id"] = {name: int(i) for i, name in names.items()}
    config_file.write_text(json.dumps(config))
    with pytest.raises(LocatedError) as refused:
        load_model(folder, "token-classification")
    assert refused.value.field == "ensemble.members" and "members/2: other labels" in refused.value.message


def test_sigkill_in_the_second_member_then_rerun_keeps_the_first_and_matches_an_uninterrupted_run(tmp_path: Path, tiny_base: Path):
    standard = _standard(tmp_path / "standard", tiny_base, [1, 2], epochs=20)
    standard.write_text(standard.read_text().replace("checkpoint_every: 10", "checkpoint_every: 25"))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(standard), "--out", str(out), "--no-tracking",
               "--stages", "data-prep,finetune"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    # -- start, wait for the second member's second checkpoint, kill without warning
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".finetune.partial" / "members" / "2" / "checkpoints" / "last" / "state.json"
    wait_for_checkpoint(process, state, 50)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was killed, not finished"
    killed_at = killed_at_step(state)
    first = (out / ".finetune.partial" / "members" / "1" / "model" / "model.safetensors").read_bytes()

    # -- rerun the same command: the first member is kept, the second resumes
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "member 1/2 (seed 1) was finished by an earlier run: kept, not retrained" in finished.stdout
    assert f"resuming from the checkpoint at step {killed_at}" in finished.stdout
    model = out / "finetune" / "model"
    assert (model / "model.safetensors").read_bytes() == first, "the first member's weights, as the killed run left them"
    metrics = json.loads((out / "finetune" / "metrics.json").read_text())
    assert metrics["members_kept"] == 1 and metrics["resumed_from_step"] == killed_at
    assert not (out / ".finetune.partial").exists()

    # -- and the members equal those of a run that was never interrupted
    reference = tmp_path / "reference"
    run_standard(standard, reference, stages=["data-prep", "finetune"], tracking=False)
    for weights in ("model.safetensors", "members/2/model.safetensors"):
        resumed, straight = load_file(model / weights), load_file(reference / "finetune" / "model" / weights)
        assert all((resumed[k] - straight[k]).abs().max() < 1e-5 for k in straight), weights
