"""Training that diverges stops loudly: one error line naming the stage, the step, the loss and the lr,
and no checkpoint or best weights holding what diverged. Loss scaling's skipped fp16 steps are not divergence."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nlpstd.errors import TrainingDiverged
from nlpstd.runner import run_standard


def _diverging(standard: Path, section: str) -> None:
    """A learning rate no model survives, and a checkpoint every other step, so that one falls
    between the step that diverges and the next log line."""
    text = standard.read_text()
    if section == "finetune":
        text = text.replace("finetune: {epochs: 3, lr: 3.0e-3,", "finetune: {epochs: 3, lr: 1.0e+30, log_every: 50,")
        text = text.replace("checkpoint_every: 10}", "checkpoint_every: 2}")
    else:
        text = text.replace("  lr: 3.0e-3\n", "  lr: 1.0e+30\n")
        text = text.replace("  checkpoint_every: 10\n  log_every: 1\n", "  checkpoint_every: 2\n  log_every: 50\n")
    assert text != standard.read_text()
    standard.write_text(text)


def _step_of(message: str) -> int:
    return int(re.search(r"diverged at step (\d+)", message).group(1))


def _assert_finite_weights(folder: Path) -> None:
    weights = load_file(folder / "model.safetensors")
    assert all(bool(torch.isfinite(tensor).all()) for tensor in weights.values()), folder


def test_a_fine_tune_that_diverges_exits_2_with_one_error_line_naming_the_step_and_runs_nothing_after(ner_standard: Path, tmp_path: Path):
    _diverging(ner_standard, "finetune")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking"]
    done = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)

    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert re.match(r"error: finetune diverged at step \d+: the loss is nan \(lr [0-9.e+]+\); lower finetune\.lr", errors[0])
    assert not (out / "finetune").exists() and not (out / "evaluate").exists() and not (out / "export").exists()


def test_a_fine_tune_that_diverges_leaves_only_checkpoints_from_before_the_step(ner_standard: Path, tmp_path: Path):
    _diverging(ner_standard, "finetune")
    out = tmp_path / "out"
    with pytest.raises(TrainingDiverged) as raised:
        run_standard(ner_standard, out, stages=["data-prep", "finetune"], tracking=False)

    checkpoints = out / ".finetune.partial" / "checkpoints"
    from nlpstd.train.checkpoint import read_state

    assert read_state(checkpoints / "last")["step"] < _step_of(str(raised.value))
    _assert_finite_weights(checkpoints / "last")


def test_mlm_pretraining_that_diverges_stops_naming_the_step_before_any_checkpoint_holds_it(pretrain_standard: Path, tmp_path: Path):
    _diverging(pretrain_standard, "pretrain")
    out = tmp_path / "out"
    with pytest.raises(TrainingDiverged, match=r"^pretrain diverged at step \d+: the loss is (nan|inf) \(lr .*lower pretrain\.lr") as raised:
        run_standard(pretrain_standard, out, stages=["data-prep", "pretrain"], tracking=False)

    last = out / ".pretrain.partial" / "checkpoints" / "last"
    from nlpstd.train.checkpoint import read_state

    assert read_state(last)["step"] < _step_of(str(raised.value))
    _assert_finite_weights(last)
    assert not (out / "pretrain").exists()


# -- the loop itself, on a tiny classifier


def _tiny_classifier() -> torch.nn.Module:
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=3,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForTokenClassification(config)


class _Scaled:
    """A supervised objective whose loss is multiplied by `factor` from the `from_call`-th loss on
    (NaN: a loss that turns NaN there; 1e4: a finite loss whose fp16 gradients overflow once scaled)."""

    def __init__(self, factor: float, from_call: int = 1):
        from nlpstd.train.batching import Supervised

        features = [{"input_ids": [2 + (i + j) % 60 for j in range(4 + i % 9)], "labels": [(i + j) % 3 for j in range(4 + i % 9)]}
                    for i in range(64)]
        self.inner = Supervised(features, micro_batch=8, seed=0, group_by_length=True, pad_id=0)
        self.factor, self.from_call, self.calls = factor, from_call, 0
        self.batches, self.collate = self.inner.batches, self.inner.collate

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        loss = self.inner.loss(model, batch)
        return loss * self.factor if self.calls >= self.from_call else loss


def _train(work_dir: Path, objective: _Scaled, precision: str = "fp32", evaluate=None, **recipe):
    from nlpstd.spec import LoopRecipe
    from nlpstd.train.config import EngineConfig, LoopConfig, Selection
    from nlpstd.train.loop import train

    settings = {"max_steps": 12, "lr": 1e-3, "batch_size": 8, "checkpoint_every": 100, "log_every": 4, **recipe}
    return train(_tiny_classifier(), objective, evaluate or (lambda m: {"loss": 0.0}), LoopConfig.of(LoopRecipe(**settings)),
                 EngineConfig(torch.device("cpu"), precision), Selection("loss", maximize=False), work_dir=work_dir,
                 identity="failures")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_loss_that_turns_nan_between_log_lines_is_reported_at_its_own_step(tmp_path: Path, precision: str):
    with pytest.raises(TrainingDiverged, match=r"^train diverged at step 6: the loss is nan \(lr "):
        _train(tmp_path, _Scaled(float("nan"), from_call=6), precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_no_checkpoint_is_written_once_the_loss_is_nan(tmp_path: Path, precision: str):
    from nlpstd.train.checkpoint import read_state

    with pytest.raises(TrainingDiverged, match="at step 6:"):
        _train(tmp_path, _Scaled(float("nan"), from_call=6), precision, checkpoint_every=1, log_every=100)

    assert read_state(tmp_path / "checkpoints" / "last")["step"] == 5
    _assert_finite_weights(tmp_path / "checkpoints" / "last")


def test_a_nan_held_out_score_stops_training_and_keeps_no_best_weights(tmp_path: Path):
    with pytest.raises(TrainingDiverged, match=r"^train diverged at step 4: the held-out loss is nan"):
        _train(tmp_path, _Scaled(1.0), evaluate=lambda m: {"loss": math.nan}, eval_every=4)

    assert not (tmp_path / "checkpoints" / "best").exists()


def test_fp16_steps_the_loss_scaler_skips_are_not_divergence(tmp_path: Path):
    result = _train(tmp_path, _Scaled(1e4), "fp16", checkpoint_every=12)

    scaler = torch.load(tmp_path / "checkpoints" / "last" / "scaler.pt", weights_only=True)
    assert scaler["scale"] < 2.0**16, "the scale backed off: some steps were skipped"
    assert result.state.step == 12
    assert all(math.isfinite(point["loss"]) for point in result.state.history if "loss" in point)


def test_the_divergence_advice_for_fp16_names_bf16(tmp_path: Path):
    with pytest.raises(TrainingDiverged, match="set runtime.precision: bf16"):
        _train(tmp_path, _Scaled(float("nan"), from_call=2), "fp16")
