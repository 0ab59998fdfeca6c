"""The pretrain stage: from scratch or continued, its hand-off to fine-tuning, resume after kill -9, bad corpora."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from conftest import corpus_text, killed_at_step, wait_for_checkpoint
from nlpstd import cli
from nlpstd.runner import run_standard

pytest_plugins = ["tests.servers"]


def _edit(standard: Path, old: str, new: str) -> None:
    text = standard.read_text()
    assert old in text, old
    standard.write_text(text.replace(old, new))


def test_from_scratch_pretraining_lowers_perplexity_and_hands_its_encoder_to_finetuning(pretrain_standard: Path, tmp_path: Path):
    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain", "finetune"], tracking=False)
    metrics = summary["stages"]["pretrain"]["metrics"]
    assert metrics["heldout_perplexity"] < metrics["initial_heldout_perplexity"] / 5
    assert metrics["parameters"] > 0 and metrics["steps"] == 40

    pretrained = tmp_path / "out" / "pretrain" / "model"
    assert AutoConfig.from_pretrained(pretrained).architectures == ["BertForMaskedLM"]
    vocab = len(AutoTokenizer.from_pretrained(pretrained))
    assert vocab <= 300, "the stage saves the tokenizer it trained, not the base's"
    finetuned = tmp_path / "out" / "finetune" / "model"
    assert AutoConfig.from_pretrained(finetuned).vocab_size == vocab
    assert len(AutoTokenizer.from_pretrained(finetuned)) == vocab


def test_pretraining_on_the_training_text_alone_builds_its_vocabulary_from_the_examples(pretrain_standard: Path, tmp_path: Path):
    _edit(pretrain_standard, "corpus: {files: [corpus/*.txt], held_out: [held.txt]}", "corpus: {training_text: true, held_out_fraction: 0.2}")
    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain"], tracking=False)
    described = json.loads((tmp_path / "out" / "data-prep" / "corpus" / "manifest.json").read_text())
    assert [f["path"] for f in described["files"]] == [str(tmp_path / "train.txt") + " (training text)"]
    vocabulary = AutoTokenizer.from_pretrained(tmp_path / "out" / "pretrain" / "model").get_vocab()
    assert "berlin" in vocabulary and "loc" not in vocabulary, "the words are learnt, never the tags (B-LOC)"
    metrics = summary["stages"]["pretrain"]["metrics"]
    assert metrics["train_unknown_share"] < 0.05, "a vocabulary trained on the training words reads them"
    assert "validation_unknown_share" in metrics
    assert metrics["heldout_perplexity"] < metrics["initial_heldout_perplexity"]


def test_pretraining_streams_a_corpus_of_s3_objects_keeping_the_download_cache_within_its_budget(
        pretrain_standard: Path, tmp_path: Path, s3_server, bucket: str, monkeypatch):
    texts = [corpus_text(12, seed=i).encode() for i in range(24)]
    for i, text in enumerate(texts):
        s3_server.client().put_object(Bucket=bucket, Key=f"corpus/part-{i:03d}.txt", Body=text)
    budget = 4 * max(map(len, texts))
    monkeypatch.setenv("NLPSTD_S3_CACHE_GB", str(budget / 1e9))
    _edit(pretrain_standard, "files: [corpus/*.txt]", f"files: ['s3://{bucket}/corpus/']")

    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain"], tracking=False)

    manifest = json.loads((tmp_path / "out" / "data-prep" / "corpus" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"] if f["part"] == "train"] == [f"s3://{bucket}/corpus/part-{i:03d}.txt" for i in range(24)]
    metrics = summary["stages"]["pretrain"]["metrics"]
    assert metrics["train_blocks"] > 24 and metrics["heldout_perplexity"] < metrics["initial_heldout_perplexity"]
    cached = sum(path.stat().st_size for path in (tmp_path / "cache" / "s3").rglob("*") if path.is_file())
    assert 0 < cached <= budget < sum(map(len, texts))


def test_continued_pretraining_starts_from_the_base_and_keeps_its_vocabulary(pretrain_standard: Path, tiny_base: Path, tmp_path: Path):
    _edit(pretrain_standard, "tokenizer: {train: wordpiece, vocab_size: 300, min_frequency: 1}\n", "")
    _edit(pretrain_standard, "model: {size: tiny, layers: 1, hidden: 64, max_position: 64}", f"model: {{base: {tiny_base}}}")
    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain"], tracking=False)
    metrics = summary["stages"]["pretrain"]["metrics"]
    assert metrics["vocab_size"] == len(AutoTokenizer.from_pretrained(tiny_base))
    assert metrics["heldout_perplexity"] < metrics["initial_heldout_perplexity"]


def test_disabled_pretraining_skips_the_stage(ner_standard: Path, tmp_path: Path):
    summary = run_standard(ner_standard, tmp_path / "out", stages=["data-prep", "pretrain", "finetune"], tracking=False)
    assert list(summary["stages"]) == ["data-prep", "finetune"]


def test_grad_accumulation_splits_each_step_into_micro_batches(pretrain_standard: Path, tmp_path: Path):
    _edit(pretrain_standard, "batch_size: 16\n", "batch_size: 16\n  grad_accumulation: 4\n")
    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain"], tracking=False)
    assert summary["stages"]["pretrain"]["metrics"]["steps"] == 40


def test_sigkill_at_a_random_step_then_rerun_gives_the_same_loss_curve_step_for_step(pretrain_standard: Path, tmp_path: Path):
    _edit(pretrain_standard, "max_steps: 40", "max_steps: 300")
    _edit(pretrain_standard, "eval_every: 20", "eval_every: 100")
    kill_after = random.Random().randrange(10, 200, 10)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(pretrain_standard), "--out", str(out),
               "--stages", "data-prep,pretrain", "--no-tracking"]

    process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".pretrain.partial" / "checkpoints" / "last" / "state.json"
    wait_for_checkpoint(process, state, kill_after, poll=0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run finished before step {kill_after}"
    killed_at = killed_at_step(state)

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from the checkpoint at step {killed_at}" in finished.stdout
    resumed = [(r["step"], r["loss"]) for r in json.loads((out / "pretrain" / "history.json").read_text()) if "loss" in r]

    run_standard(pretrain_standard, tmp_path / "straight", stages=["data-prep", "pretrain"], tracking=False)
    straight = [(r["step"], r["loss"]) for r in json.loads((tmp_path / "straight" / "pretrain" / "history.json").read_text()) if "loss" in r]
    assert [s for s, _ in resumed] == list(range(1, 301))
    assert resumed == straight, f"killed at step {killed_at}: the curves differ"


# -- bad corpora: one line naming the file, nothing written

@pytest.mark.parametrize(("make", "message"), [
    (lambda folder: None, "No such file"),
    (lambda folder: (folder / "bad.txt").write_text(""), "empty"),
    (lambda folder: (folder / "bad.txt").write_bytes(bytes(range(256)) * 4), "binary"),
    (lambda folder: (folder / "bad.txt").write_bytes("Cæsar\n".encode("latin-1")), "not valid utf-8"),
], ids=["missing", "empty", "binary", "undecodable"])
def test_a_bad_corpus_file_stops_the_run_with_one_line_naming_it_and_writes_nothing(
    pretrain_standard: Path, tmp_path: Path, capsys, make, message: str
):
    make(tmp_path)
    _edit(pretrain_standard, "files: [corpus/*.txt]", "files: [corpus/*.txt, {path: bad.txt, encoding: utf-8}]")
    out = tmp_path / "out"
    assert cli.main(["run", str(pretrain_standard), "--out", str(out), "--no-tracking"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(tmp_path / "bad.txt") in error and message in error
    assert not out.exists()
