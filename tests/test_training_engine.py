"""The training engine's speed paths, on the CPU: the fused optimizer and its fallback, fp16 loss
scaling, and loader workers that collate ahead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nlpstd.train.loop import adamw, param_groups


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 2))


def test_the_optimizer_runs_the_fused_kernel_on_a_cpu():
    optimizer = adamw(param_groups(small_model(), 0.01), 1e-3)

    assert all(group["fused"] for group in optimizer.param_groups)


def test_a_device_without_the_fused_kernel_gets_the_multi_tensor_update(monkeypatch: pytest.MonkeyPatch):
    real = torch.optim.AdamW

    def no_fused_kernel(params, **options):
        if options.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **options)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused_kernel)
    optimizer = adamw(param_groups(small_model(), 0.01), 1e-3)

    assert all(group["foreach"] and not group["fused"] for group in optimizer.param_groups)


def test_the_fused_update_matches_the_reference_update():
    fused, reference = small_model(), small_model()
    optimizers = [adamw(param_groups(fused, 0.01), 1e-2), torch.optim.AdamW(param_groups(reference, 0.01), lr=1e-2, foreach=False)]
    inputs = torch.randn(32, 8)
    for _ in range(5):
        for model, optimizer in zip((fused, reference), optimizers):
            model(inputs).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

    for a, b in zip(fused.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# -- fp16: loss scaling, and a resumed run that restores the scale


class _Stop(Exception):
    """Raised from the evaluation hook: training stops as a kill would, after the last checkpoint."""


def tiny_classifier() -> torch.nn.Module:
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=3,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForTokenClassification(config)


def tiny_objective():
    from nlpstd.train.batching import Supervised

    features = [{"input_ids": [2 + (i + j) % 60 for j in range(4 + i % 9)], "labels": [(i + j) % 3 for j in range(4 + i % 9)]}
                for i in range(64)]
    return Supervised(features, micro_batch=8, seed=0, group_by_length=True, pad_id=0)


def train_fp16(work_dir, stop_at_evaluation: int | None = None) -> torch.nn.Module:
    from nlpstd.spec import LoopRecipe
    from nlpstd.train.config import EngineConfig, LoopConfig, Selection
    from nlpstd.train.loop import train

    def hook(n: int, scores: dict[str, float]) -> None:
        if n == stop_at_evaluation:
            raise _Stop

    model = tiny_classifier()
    recipe = LoopRecipe(max_steps=16, lr=1e-3, batch_size=8, checkpoint_every=4, eval_every=6, log_every=4)
    train(model, tiny_objective(), lambda m: {"loss": 0.0}, LoopConfig.of(recipe), EngineConfig(torch.device("cpu"), "fp16"),
          Selection("loss", maximize=False), work_dir=work_dir, identity="fp16-test", on_evaluation=hook)
    return model


def test_fp16_training_keeps_a_loss_scale_in_its_checkpoint(tmp_path):
    train_fp16(tmp_path)

    scale = torch.load(tmp_path / "checkpoints" / "last" / "scaler.pt", weights_only=True)
    assert scale["scale"] > 1.0 and scale["_growth_tracker"] > 0


def test_an_fp16_run_resumes_with_its_loss_scale_and_matches_an_uninterrupted_one(tmp_path):
    with pytest.raises(_Stop):
        train_fp16(tmp_path / "resumed", stop_at_evaluation=1)  # stops at step 6; the last checkpoint is step 4
    resumed = train_fp16(tmp_path / "resumed")
    straight = train_fp16(tmp_path / "straight")

    scales = [torch.load(tmp_path / run / "checkpoints" / "last" / "scaler.pt", weights_only=True) for run in ("resumed", "straight")]
    assert scales[0] == scales[1]
    for a, b in zip(resumed.parameters(), straight.parameters()):
        torch.testing.assert_close(a, b)


def test_bf16_and_fp32_training_write_no_loss_scale(tmp_path):
    from nlpstd.spec import LoopRecipe
    from nlpstd.train.config import EngineConfig, LoopConfig, Selection
    from nlpstd.train.loop import train

    train(tiny_classifier(), tiny_objective(), lambda m: {"loss": 0.0}, LoopConfig.of(LoopRecipe(max_steps=2, batch_size=8)),
          EngineConfig(torch.device("cpu"), "bf16"), Selection("loss", maximize=False), work_dir=tmp_path, identity="bf16")

    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoints" / "last" / "scaler.pt").exists()


# -- loader workers: micro-batches collated ahead, in worker processes


def test_loader_workers_give_the_same_micro_batches_in_the_same_order():
    from nlpstd.train.loader import micro_batches

    objective = tiny_objective()
    jobs = [(batch, 0, position) for position, batch in enumerate(objective.batches(0))]
    inline = list(micro_batches(objective, jobs, workers=0, pin=False))
    ahead = list(micro_batches(objective, jobs, workers=2, pin=False))

    assert len(ahead) == len(inline) == len(jobs)
    for a, b in zip(ahead, inline):
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("workers", [0, 2])
def test_loading_micro_batches_draws_nothing_from_the_global_random_generator(workers):
    """Dropout draws from it: a draw at each epoch's loader would shift a resumed run's dropout masks."""
    from nlpstd.train.loader import micro_batches

    objective = tiny_objective()
    torch.manual_seed(7)
    list(micro_batches(objective, [(objective.batches(0)[0], 0, 0)], workers=workers, pin=False))
    after_loading = torch.rand(4)
    torch.manual_seed(7)

    assert torch.equal(after_loading, torch.rand(4))


def test_training_with_loader_workers_matches_training_without(tmp_path):
    from nlpstd.spec import LoopRecipe
    from nlpstd.train.config import EngineConfig, LoopConfig, Selection
    from nlpstd.train.loop import train

    models = []
    for workers in (0, 2):
        model = tiny_classifier()
        train(model, tiny_objective(), lambda m: {"loss": 0.0}, LoopConfig.of(LoopRecipe(epochs=2, lr=1e-3, batch_size=8)),
              EngineConfig(torch.device("cpu"), loader_workers=workers), Selection("loss", maximize=False),
              work_dir=tmp_path / str(workers), identity="workers")
        models.append(model)

    for a, b in zip(*(model.parameters() for model in models)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("setting, device, cores, expected", [
    ("auto", "cpu", 16, 0),     # every CPU core already trains
    ("auto", "cuda", 16, 4),    # at most 4 per process
    ("auto", "cuda", 3, 2),     # a core left to the training process
    ("auto", "cuda", 1, 0),
    (3, "cpu", 16, 3),          # a number is taken as it is
])
def test_loader_workers_are_none_on_a_cpu_and_spare_cores_on_a_gpu(monkeypatch, setting, device, cores, expected):
    from nlpstd import runtime
    from nlpstd.spec import RuntimeSpec

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(runtime, "CGROUP", Path("/nonexistent"))
    assert runtime.loader_workers(RuntimeSpec(loader_workers=setting), torch.device(device)) == expected


def test_loader_workers_split_the_cores_between_training_processes(monkeypatch):
    from nlpstd import runtime
    from nlpstd.spec import RuntimeSpec

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(runtime, "CGROUP", Path("/nonexistent"))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert runtime.loader_workers(RuntimeSpec(), torch.device("cuda")) == 1


@pytest.mark.parametrize("cpu_max, expected", [("400000 100000\n", 4), ("150000 100000\n", 1), ("50000 100000\n", 1),
                                               ("max 100000\n", 64), (None, 64)])
def test_cores_are_the_containers_cpu_limit_when_lower_than_the_affinity(monkeypatch, tmp_path: Path, cpu_max, expected):
    from nlpstd import runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max)
    monkeypatch.setattr(runtime, "CGROUP", tmp_path)
    assert runtime.cores() == expected


# -- attention masks: left out where no row is padded


class _RecordsMasks:
    """The tiny objective, noting for every micro-batch the loop trains whether it was padded and
    whether it reached the loss with an attention mask."""

    def __init__(self):
        from nlpstd.train.batching import Supervised

        lengths = [6] * 24 + [3 + i % 4 for i in range(8)]  # unpadded batches, then padded ones
        features = [{"input_ids": [2 + j for j in range(n)], "labels": [j % 3 for j in range(n)]} for n in lengths]
        self.inner = Supervised(features, micro_batch=8, seed=0, group_by_length=False, pad_id=0)
        self.seen: list[tuple[bool, bool]] = []

    def batches(self, epoch: int) -> list[list[int]]:
        return [list(range(s, s + 8)) for s in range(0, 32, 8)]

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        return self.inner.collate(indices, epoch, position)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.seen.append((bool((batch["input_ids"] == 0).any()), "attention_mask" in batch))
        return self.inner.loss(model, batch)


def test_the_loop_hands_only_padded_batches_to_the_model_with_an_attention_mask(tmp_path):
    from nlpstd.spec import LoopRecipe
    from nlpstd.train.config import EngineConfig, LoopConfig, Selection
    from nlpstd.train.loop import train

    objective = _RecordsMasks()
    train(tiny_classifier(), objective, lambda m: {"loss": 0.0},
          LoopConfig.of(LoopRecipe(max_steps=4, lr=1e-3, batch_size=8, log_every=4, checkpoint_every=4, eval_every=4)),
          EngineConfig(torch.device("cpu"), "fp32"), Selection("loss", maximize=False), work_dir=tmp_path, identity="masks")

    assert objective.seen == [(False, False)] * 3 + [(True, True)]


# -- compiling: the mode, and CUDA graphs where they apply


@pytest.mark.parametrize("compile, graphs, device, world, expected", [
    (False, True, "cuda", 1, None),                    # nothing compiles unless compiling is on
    (True, False, "cuda", 1, "default"),
    (True, True, "cuda", 1, "reduce-overhead"),
    (True, True, "cuda", 2, "default"),                # DDP's all-reduce is not in the recorded graph
    (True, True, "cpu", 1, "default"),                 # no CUDA graphs without CUDA
])
def test_cuda_graphs_apply_to_a_compiled_step_in_one_gpu_process(compile, graphs, device, world, expected):
    from nlpstd.train.loop import compile_mode

    assert compile_mode(compile, graphs, torch.device(device), world) == expected


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_the_step_is_compiled_in_the_chosen_mode(monkeypatch, mode):
    from nlpstd.train.loop import _EagerOnFailure

    asked = {}
    monkeypatch.setattr(torch, "compile", lambda module, **options: asked.update(options) or module)
    _EagerOnFailure(torch.nn.Identity(), mode)

    assert asked == {"mode": mode}


def test_fine_tuning_and_pretraining_models_use_pytorchs_fused_attention(tiny_base):
    """SDPA picks flash or memory-efficient attention kernels on a GPU; eager attention would not."""
    from nlpstd.models.build import build_mlm_model, build_model, load_tokenizer
    from nlpstd.spec import FinetuneSpec, ModelSpec

    tagger = build_model("token-classification", str(tiny_base), ["O", "B-PER"], FinetuneSpec())
    encoder = build_mlm_model(ModelSpec(base=str(tiny_base)), load_tokenizer(str(tiny_base)))

    assert tagger.config._attn_implementation == encoder.config._attn_implementation == "sdpa"


def test_the_gpu_tests_load_without_mlflow_kfp_seqeval_or_boto3():
    """A GPU machine may have the training stack alone (torch, transformers, pydantic)."""
    import subprocess
    import sys
    from pathlib import Path

    blocked = ("mlflow", "seqeval", "kfp", "boto3", "botocore", "sklearn", "optuna")
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\nimport pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--collect-only', 'tests/test_gpu.py']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tests/test_gpu.py::test_training_steps_do_not_wait_for_the_gpu" in done.stdout


# -- the allocator keeps large freed blocks (glibc), so a gradient made anew each step reuses its memory


def _mapped_bytes() -> int:
    """Bytes glibc currently holds in blocks mapped one by one (mallinfo2's hblkhd)."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to read")
    mallinfo2.restype = MallInfo2
    return mallinfo2().hblkhd


def test_a_large_tensor_comes_from_the_heap_once_freed_memory_is_kept():
    from nlpstd.runtime import keep_freed_memory

    keep_freed_memory()
    before = _mapped_bytes()
    block = torch.ones(64 << 20, dtype=torch.uint8)  # above glibc's largest mapping threshold (32 MiB)

    assert _mapped_bytes() - before < block.numel()  # not a mapping of its own, which freeing would unmap
