"""Shared fixtures: a tiny BERT (real architecture, random weights) and small hand-written data sets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from nlpstd import logs  # noqa: E402  (after the offline switch: nothing below may reach a hub)

logs.configure()  # what the command line prints, the tests read: info on stdout, warnings on stderr

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NLPSTD_DATA", REPO.parent / "shared" / "data"))

needs_real_data = pytest.mark.skipif(not (DATA / "conll2003" / "train.txt").is_file(), reason=f"no real data under {DATA} (set NLPSTD_DATA)")

# Sentences whose entities a tiny model can learn in a few dozen steps.
_PEOPLE = ["Peter", "Maria", "John", "Anna", "Lukas", "Sofia"]
_PLACES = ["Paris", "Berlin", "Madrid", "Tokyo", "Lima", "Oslo"]
_ORGS = ["Reuters", "Siemens", "Google", "Fiat"]


def conll_text(n: int, offset: int = 0) -> str:
    """n CoNLL sentences (4 columns, -DOCSTART- header), cycling through names and places."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i in range(offset, offset + n):
        person, place, org = _PEOPLE[i % 6], _PLACES[(i * 5) % 6], _ORGS[i % 4]
        words = [(person, "B-PER"), ("Smith", "I-PER"), ("flew", "O"), ("to", "O"), (place, "B-LOC"),
                 ("for", "O"), (org, "B-ORG"), ("on", "O"), ("day", "O"), (str(i), "O"), (".", "O")]
        lines += [f"{w} NNP B-NP {t}" for w, t in words[: 5 + i % 7]] + [""]
    return "\n".join(lines) + "\n"


def sst_text(n: int, offset: int = 0) -> str:
    good, bad = ["great", "wonderful", "moving", "brilliant"], ["dull", "awful", "boring", "clumsy"]
    rows = ["sentence\tlabel"]
    for i in range(offset, offset + n):
        positive = i % 2 == 0
        word = (good if positive else bad)[i % 4]
        rows.append(f"a {word} film , truly {word} {'' if i % 3 else 'and long '}\t{int(positive)}")
    return "\n".join(rows) + "\n"


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_restored(monkeypatch):
    """Code under test sets MLflow's process-wide tracking URI; each test starts from the one before
    it (so a later test reading MLFLOW_TRACKING_URI is not overridden by an earlier test's store)."""
    try:
        from mlflow.tracking._tracking_service import utils
    except ImportError:  # a GPU machine with the training stack alone (tests/test_gpu.py): nothing to restore
        return
    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT with the MiniLM tokenizer: seconds to train, same code paths as a real one."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from nlpstd.models.build import resolve_base

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = resolve_base("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# A runtime section for a GPU node pool: what compiled-pipeline tests look for in the YAML.
GPU_RUNTIME = """
runtime:
  gpu:
    count: 2
    type: nvidia.com/gpu
    node_selector: {cloud.google.com/gke-accelerator: nvidia-h100-80gb}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  training: {cpu: "8", memory: 32Gi, memory_limit: 40Gi}
  tasks: {cpu: "2", memory: 8Gi}
  shm_size: 4Gi
  retries: 3
  checkpoint_volume: nlpstd-checkpoints
"""


def write_standard(folder: Path, body: str) -> Path:
    path = folder / "standard.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def write_conll_splits(folder: Path) -> None:
    (folder / "train.txt").write_text(conll_text(96))
    (folder / "dev.txt").write_text(conll_text(24, offset=500))
    (folder / "test.txt").write_text(conll_text(24, offset=900))


def ner_yaml(base: Path) -> str:
    """The tiny NER standard over `write_conll_splits` files; append sections (e.g. `export: {...}`) to vary it."""
    return textwrap.dedent(f"""
        name: tiny-ner
        task: token-classification
        data: {{format: conll, train: train.txt, validation: dev.txt, test: test.txt, max_length: 32}}
        model: {{base: {base}}}
        finetune: {{epochs: 3, lr: 3.0e-3, batch_size: 8, warmup_ratio: 0.1, checkpoint_every: 10}}
        evaluate: {{gate: {{metric: f1, min: 0.0}}}}
        runtime: {{threads: 1}}
    """)


@pytest.fixture
def ner_standard(tmp_path: Path, tiny_base: Path) -> Path:
    """A token-classification standard on small CoNLL files and the tiny base."""
    write_conll_splits(tmp_path)
    return write_standard(tmp_path, ner_yaml(tiny_base))


@pytest.fixture
def cls_standard(tmp_path: Path, tiny_base: Path) -> Path:
    """A sequence-classification standard on small SST-2-like TSV files and the tiny base."""
    (tmp_path / "train.tsv").write_text(sst_text(96))
    (tmp_path / "dev.tsv").write_text(sst_text(24, offset=300))
    return write_standard(tmp_path, f"""
        name: tiny-cls
        task: sequence-classification
        data: {{format: tsv, train: train.tsv, validation: dev.tsv, text_column: sentence, max_length: 32}}
        model: {{base: {tiny_base}}}
        finetune: {{epochs: 3, lr: 3.0e-3, batch_size: 8, checkpoint_every: 10}}
        evaluate: {{metrics: [accuracy, f1], gate: {{metric: accuracy, min: 0.0}}}}
        runtime: {{threads: 1}}
    """)


def wait_for_checkpoint(process, state: Path, step: int, timeout: float = 240, poll: float = 0.05) -> None:
    """Until the run behind `process` has checkpointed at `step` or later (or has ended, or time is up)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= step:
                return
        except FileNotFoundError:  # none yet, or the run is renaming a new checkpoint into place
            pass
        time.sleep(poll)


def killed_at_step(state: Path) -> int:
    """The step of the last complete checkpoint a killed run left, read as a rerun reads it (a kill
    between the two renames of a checkpoint leaves it as `<folder>.old`, which this puts back)."""
    from nlpstd.train.checkpoint import read_state

    return read_state(state.parent)["step"]


def killed_then_rerun(command: list[str], state: Path, step: int = 50) -> tuple[int, subprocess.CompletedProcess]:
    """Start `command`, kill it without warning (`kill -9`) once its checkpoint `state` is at `step`,
    then run it again to the end, which must resume from where the kill left it: that step, and the rerun."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(process, state, step)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was killed, not finished"
    killed_at = killed_at_step(state)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from the checkpoint at step {killed_at}" in finished.stdout
    return killed_at, finished


def corpus_text(n: int, seed: int = 0) -> str:
    """n paragraphs of a small, learnable English: a masked word is guessable from its neighbours."""
    import random

    rng = random.Random(seed)
    nouns, verbs = ["cat", "dog", "king", "ship", "river", "city"], ["sees", "follows", "finds", "loves"]
    adjectives = ["old", "red", "quiet", "brave"]
    paragraphs = []
    for _ in range(n):
        sentences = [f"The {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}."
                     for _ in range(rng.randint(2, 5))]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


@pytest.fixture
def pretrain_standard(tmp_path: Path, monkeypatch) -> Path:
    """A tiny BERT from scratch: its own WordPiece vocabulary, MLM on a small corpus, then CoNLL fine-tuning."""
    monkeypatch.setenv("NLPSTD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text(corpus_text(120, seed=1))
    (tmp_path / "corpus" / "b.txt").write_text(corpus_text(120, seed=2))
    (tmp_path / "held.txt").write_text(corpus_text(40, seed=3))
    (tmp_path / "train.txt").write_text(conll_text(48))
    (tmp_path / "dev.txt").write_text(conll_text(16, offset=500))
    return write_standard(tmp_path, """
        name: tiny-pretrain
        task: token-classification
        data: {format: conll, train: train.txt, validation: dev.txt, max_length: 32}
        tokenizer: {train: wordpiece, vocab_size: 300, min_frequency: 1}
        model: {size: tiny, layers: 1, hidden: 64, max_position: 64}
        pretrain:
          enabled: true
          corpus: {files: [corpus/*.txt], held_out: [held.txt]}
          max_length: 32
          max_steps: 40
          batch_size: 16
          lr: 3.0e-3
          warmup_ratio: 0.05
          eval_every: 20
          checkpoint_every: 10
          log_every: 1
        finetune: {epochs: 1, lr: 3.0e-3, batch_size: 8}
        evaluate: {metrics: [f1], gate: {metric: f1, min: 0.0}}
        runtime: {threads: 1}
    """)


@pytest.fixture
def offline(monkeypatch):
    """For bad-input cases: no network, no stray variable, and fine-tuning refuses to start should
    a malformed input get that far."""
    from nlpstd.stages import finetune
    from tests.bad_input.standards import UNSET_VAR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(UNSET_VAR, raising=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a malformed input reached fine-tuning")

    monkeypatch.setattr(finetune, "run", no_training)
