"""The training engine's GPU paths on a CUDA device; skipped where there is none (CI). Each has a
CPU counterpart in test_training_engine.py. They need torch, transformers and pydantic only, so
they run where nlpstd's other dependencies are not installed (`benchmarks/gpu_checks.sh`)."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_training_engine import tiny_classifier, tiny_objective

from nlpstd.spec import LoopRecipe
from nlpstd.train.batching import Supervised
from nlpstd.train.config import EngineConfig, LoopConfig, Selection
from nlpstd.train.loader import micro_batches
from nlpstd.train.loop import _EagerOnFailure, _Loss, adamw, param_groups, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU = torch.device("cuda")


def train_on_gpu(tmp_path, precision: str, steps: int = 16, compile: bool = False, cuda_graphs: bool = False,
                 objective=None, **recipe) -> tuple[torch.nn.Module, object]:
    model = tiny_classifier()
    settings = dict(max_steps=steps, lr=3e-3, batch_size=8, log_every=4, checkpoint_every=steps, eval_every=steps) | recipe
    result = train(model, objective or tiny_objective(), lambda m: {"loss": 0.0}, LoopConfig.of(LoopRecipe(**settings)),
                   EngineConfig(GPU, precision, compile=compile, cuda_graphs=cuda_graphs), Selection("loss", maximize=False),
                   work_dir=tmp_path, identity=f"gpu-{precision}")
    return model, result


def losses(result) -> list[float]:
    return [point["loss"] for point in result.state.history if "loss" in point]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_mixed_precision_training_learns_and_keeps_fp32_weights(tmp_path, precision):
    model, result = train_on_gpu(tmp_path, precision, steps=32)

    curve = losses(result)
    assert all(torch.isfinite(torch.tensor(curve))) and curve[-1] < curve[0]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())


def test_fp16_training_on_a_gpu_keeps_a_loss_scale(tmp_path):
    train_on_gpu(tmp_path, "fp16")

    assert torch.load(tmp_path / "checkpoints" / "last" / "scaler.pt", weights_only=True)["scale"] > 1.0


def test_the_optimizer_runs_the_fused_kernel_on_a_gpu():
    optimizer = adamw(param_groups(tiny_classifier().to(GPU), 0.01), 1e-3)

    assert all(group["fused"] for group in optimizer.param_groups)


def test_a_compiled_step_compiles_and_gives_the_eager_loss():
    model, objective = tiny_classifier().to(GPU), tiny_objective()
    batch = {k: v.to(GPU) for k, v in objective.collate(objective.batches(0)[0], 0, 0).items()}
    eager = _Loss(model, objective)
    compiled = _EagerOnFailure(eager)

    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected, got = eager(batch), compiled(batch)

    assert compiled.compiled is not None, "compiling failed and the step fell back to eager"
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


def test_compiled_training_on_a_gpu_learns(tmp_path):
    _, result = train_on_gpu(tmp_path, "bf16", steps=32, compile=True)

    curve = losses(result)
    assert curve[-1] < curve[0]


def test_training_with_cuda_graphs_learns_like_compiled_training(tmp_path):
    _, graphs = train_on_gpu(tmp_path / "graphs", "bf16", steps=32, compile=True, cuda_graphs=True)
    _, compiled = train_on_gpu(tmp_path / "compiled", "bf16", steps=32, compile=True)

    assert losses(graphs)[-1] < losses(graphs)[0]
    assert losses(graphs) == pytest.approx(losses(compiled), rel=0.05)


def test_loader_workers_hand_over_pinned_batches():
    objective = tiny_objective()
    jobs = [(batch, 0, position) for position, batch in enumerate(objective.batches(0))]

    for batch in micro_batches(objective, jobs, workers=2, pin=True):
        assert all(tensor.is_pinned() for tensor in batch.values())


def unpadded_objective() -> Supervised:
    """Every example 8 tokens long: no batch is padded, so none carries an attention mask."""
    features = [{"input_ids": [2 + (i + j) % 60 for j in range(8)], "labels": [(i + j) % 3 for j in range(8)]} for i in range(64)]
    return Supervised(features, micro_batch=8, seed=0, group_by_length=True, pad_id=0)


def host_syncs(tmp_path, steps: int, compile: bool = True, objective=None) -> int:
    """Synchronising calls torch reports during a run that logs, evaluates and saves only at its end.
    Compiled by default: eager BERT syncs once per forward on a padded batch, inside transformers
    (its SDPA mask check reads whether the padding mask is all ones)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_on_gpu(tmp_path, "bf16", steps=steps, compile=compile, objective=objective, log_every=steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_training_steps_do_not_wait_for_the_gpu(tmp_path):
    """The syncs of a run (start, the one log line, evaluation, the checkpoint) do not grow with its steps."""
    host_syncs(tmp_path / "warm-up", 8)  # first-use syncs (kernels loaded, handles made) happen here
    assert host_syncs(tmp_path / "long", 24) == host_syncs(tmp_path / "short", 8)


def test_eager_steps_on_unpadded_batches_do_not_wait_for_the_gpu(tmp_path):
    """Without padding the loop passes no attention mask, so eager BERT has no mask to check."""
    host_syncs(tmp_path / "warm-up", 8, compile=False, objective=unpadded_objective())
    long = host_syncs(tmp_path / "long", 24, compile=False, objective=unpadded_objective())
    assert long == host_syncs(tmp_path / "short", 8, compile=False, objective=unpadded_objective())
