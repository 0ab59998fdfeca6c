"""Adversarial training on the word embeddings (`finetune.adversarial`): the perturbation's size
and direction, the loss it adds, the gradients it leaves to the loop's backward, LoRA, mixed
precision, DDP, and runs that stay seeded and resumable."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import conll_text, killed_then_rerun, sst_text
from nlpstd.data.conll import read_conll
from nlpstd.data.encode import encode
from nlpstd.models.build import build_model, load_tokenizer
from nlpstd.spec import FinetuneSpec, LoopRecipe
from nlpstd.spec.schema import AdversarialSpec
from nlpstd.train.adversarial import Adversarial, adversarial
from nlpstd.train.batching import Supervised
from nlpstd.train.config import EngineConfig, LoopConfig, Selection
from nlpstd.train.loop import train

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]
TASKS = {"token-classification": NER_LABELS, "sequence-classification": ["0", "1"]}


@pytest.fixture(scope="module")
def features(tiny_base: Path) -> dict[str, list[dict]]:
    """Encoded training examples of each task, of several lengths (so batches are padded)."""
    tokenizer = load_tokenizer(str(tiny_base))
    sentences = [{"text": text, "label": label} for text, label in (row.split("\t") for row in sst_text(32).splitlines()[1:])]
    return {
        "token-classification": encode(tokenizer, "token-classification", read_conll("train.txt", conll_text(32)), NER_LABELS, 32).features,
        "sequence-classification": encode(tokenizer, "sequence-classification", sentences, TASKS["sequence-classification"], 32).features,
    }


def task_model(base: Path, task: str = "token-classification", method: str = "full") -> torch.nn.Module:
    """The tiny base with a fresh head, the same one each time (and the random generator left seeded)."""
    torch.manual_seed(0)
    return build_model(task, str(base), TASKS[task], FinetuneSpec(method=method))


def supervised(features: list[dict], micro_batch: int = 8) -> Supervised:
    return Supervised(features, micro_batch=micro_batch, seed=0, group_by_length=True, pad_id=0)


def padded_batch(objective: Supervised) -> dict[str, torch.Tensor]:
    """The first eight examples: sentences of 5 to 11 words, so shorter rows are padded."""
    batch = objective.collate(list(range(8)), epoch=0, position=0)
    assert not batch["attention_mask"].all()
    return batch


@contextlib.contextmanager
def embedding_sums(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """What each forward feeds the embeddings' LayerNorm: word (+ perturbation) + position + type
    embeddings (B, T, H). Two forwards differ there by the perturbation alone."""
    seen: list[torch.Tensor] = []
    hook = model.bert.embeddings.LayerNorm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        hook.remove()


def example_norms(delta: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(delta.flatten(1), dim=1)


def test_off_by_default_the_objective_is_returned_unchanged(features):
    objective = supervised(features["token-classification"])

    assert adversarial(objective, None) is objective


def test_the_wrapped_objective_keeps_the_micro_batches_of_the_objective_it_wraps(features):
    objective = supervised(features["token-classification"])
    wrapped = adversarial(objective, AdversarialSpec())

    assert wrapped.batches(1) == objective.batches(1)
    assert all(torch.equal(a, b) for a, b in zip(wrapped.collate([3, 4], 1, 0).values(), objective.collate([3, 4], 1, 0).values()))


# -- the perturbation: its size per example, and its direction


def test_fgm_moves_each_example_by_exactly_epsilon_and_leaves_padding_alone(tiny_base, features):
    model = task_model(tiny_base).eval()
    objective = supervised(features["token-classification"])
    batch = padded_batch(objective)
    with embedding_sums(model) as seen:
        adversarial(objective, AdversarialSpec(method="fgm", epsilon=0.5)).loss(model, batch)

    assert len(seen) == 2  # the clean forward and the adversarial one
    delta = seen[1] - seen[0]  # (B, T, H)
    torch.testing.assert_close(example_norms(delta), torch.full((8,), 0.5))
    assert not delta[batch["attention_mask"] == 0].any()


def test_pgd_takes_its_steps_and_ends_within_epsilon_of_the_clean_embeddings(tiny_base, features):
    model = task_model(tiny_base).eval()
    objective = supervised(features["token-classification"])
    batch = padded_batch(objective)
    with embedding_sums(model) as seen:
        adversarial(objective, AdversarialSpec(method="pgd", epsilon=0.5, steps=3)).loss(model, batch)

    assert len(seen) == 4  # steps + 1 forwards
    steps = [example_norms(later - seen[0]) for later in seen[1:]]
    torch.testing.assert_close(steps[0], torch.full((8,), 0.5 / 3))  # the first step is epsilon / steps
    assert (steps[-1] <= 0.5 + 1e-5).all() and (steps[-1] > steps[0]).all()


@pytest.mark.parametrize("task, method, finetuning", [
    ("token-classification", "fgm", "full"),
    ("token-classification", "pgd", "full"),
    ("sequence-classification", "fgm", "full"),
    ("token-classification", "fgm", "lora"),
])
def test_the_perturbation_points_uphill_the_adversarial_loss_exceeds_the_clean_one(tiny_base, features, task, method, finetuning):
    model = task_model(tiny_base, task, finetuning).eval()  # no dropout: the forwards differ by the perturbation alone
    objective = supervised(features[task])
    batch = objective.collate(list(range(8)), 0, 0)
    clean = objective.loss(model, batch)
    total = adversarial(objective, AdversarialSpec(method=method)).loss(model, batch)

    assert total - clean > clean


# -- the loss, and the gradients left to the loop's backward


def test_the_loss_is_the_clean_loss_plus_the_loss_at_the_perturbed_embeddings(tiny_base, features):
    model = task_model(tiny_base).eval()
    objective = supervised(features["token-classification"])
    batch = padded_batch(objective)
    with embedding_sums(model) as seen:
        total = adversarial(objective, AdversarialSpec()).loss(model, batch)
    clean = objective.loss(model, batch)
    replay = model.bert.embeddings.LayerNorm.register_forward_pre_hook(lambda module, args: (seen[-1],))
    try:
        perturbed = objective.loss(model, batch)  # the model fed the perturbed embeddings it was fed
    finally:
        replay.remove()

    torch.testing.assert_close(total, clean + perturbed)


def test_no_parameter_gradient_is_filled_before_the_callers_backward(tiny_base, features):
    model = task_model(tiny_base).train()
    objective = supervised(features["token-classification"])
    adversarial(objective, AdversarialSpec(method="pgd")).loss(model, padded_batch(objective))

    assert all(param.grad is None for param in model.parameters())


def test_backward_fills_the_gradients_of_the_parameters_the_clean_loss_reaches(tiny_base, features):
    model = task_model(tiny_base).train()
    objective = supervised(features["token-classification"])
    batch = padded_batch(objective)
    adversarial(objective, AdversarialSpec()).loss(model, batch).backward()
    filled = {name for name, param in model.named_parameters() if param.grad is not None}
    model.zero_grad(set_to_none=True)
    objective.loss(model, batch).backward()

    assert filled == {name for name, param in model.named_parameters() if param.grad is not None}
    assert "bert.embeddings.word_embeddings.weight" in filled


def test_under_lora_the_frozen_word_embeddings_are_perturbed_and_the_lora_weights_get_gradients(tiny_base, features):
    model = task_model(tiny_base, method="lora").train()
    objective = supervised(features["token-classification"])
    loss = adversarial(objective, AdversarialSpec()).loss(model, padded_batch(objective))
    loss.backward()

    embeddings = model.get_input_embeddings()
    assert not embeddings.weight.requires_grad and embeddings.weight.grad is None
    lora = {name: param for name, param in model.named_parameters() if "lora_" in name}
    assert lora and all(param.grad is not None for param in lora.values())
    assert any(param.grad.abs().sum() > 0 for name, param in lora.items() if "lora_B" in name)


def test_under_ddp_each_micro_batch_is_one_forward_with_the_gradients_of_a_plain_run(tiny_base, features, tmp_path):
    """Two steps in a one-process group: DDP's reducer would refuse the second forward had the
    first backward not reduced every parameter exactly once."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from nlpstd.train.loop import _Loss

    objective = adversarial(supervised(features["token-classification"]), AdversarialSpec())
    batch = padded_batch(objective.objective)
    plain, parallel = task_model(tiny_base).eval(), task_model(tiny_base).eval()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        step = DistributedDataParallel(_Loss(parallel, objective))
        for _ in range(2):
            step(batch).backward()
            objective.loss(plain, batch).backward()
    finally:
        dist.destroy_process_group()

    for (name, a), b in zip(plain.named_parameters(), parallel.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


# -- the model is left as it was


def test_the_embedding_hook_is_removed_after_the_call(tiny_base, features):
    model = task_model(tiny_base)
    objective = supervised(features["token-classification"])
    adversarial(objective, AdversarialSpec(method="pgd")).loss(model, padded_batch(objective))

    assert not model.get_input_embeddings()._forward_hooks


def test_the_embedding_hook_is_removed_also_when_the_forward_raises(tiny_base, features):
    class Failing(Supervised):
        def loss(self, model, batch):
            model(**batch)  # through the hook
            raise RuntimeError("out of memory")

    model = task_model(tiny_base)
    objective = Failing(features["token-classification"], 8, 0, True, 0)
    with pytest.raises(RuntimeError, match="out of memory"):
        adversarial(objective, AdversarialSpec()).loss(model, padded_batch(objective))

    assert not model.get_input_embeddings()._forward_hooks


def test_the_weights_and_the_training_mode_are_left_as_they_were(tiny_base, features):
    model = task_model(tiny_base).train()
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    objective = supervised(features["token-classification"])
    adversarial(objective, AdversarialSpec(method="pgd")).loss(model, padded_batch(objective))

    assert model.training
    assert all(torch.equal(param, before[name]) for name, param in model.named_parameters())


# -- through the training loop: mixed precision, accumulation, seeds, resume


class _Stop(Exception):
    """Raised from the evaluation hook: training stops as a kill would, after the last checkpoint."""


_ORDER = itertools.count()


def _latest_is_best(model: torch.nn.Module) -> dict[str, float]:
    """Each evaluation scores above every one before it: training ends holding its final weights."""
    return {"order": float(next(_ORDER))}


def train_adversarially(base: Path, features: list[dict], work_dir: Path, precision: str = "fp32", accumulation: int = 1,
                        stop_at_evaluation: int | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """Eight steps of 8 examples with FGM: checkpoints every 2 steps, evaluations every 3; the
    trained model and its loss curve."""
    def hook(n: int, scores: dict[str, float]) -> None:
        if n == stop_at_evaluation:
            raise _Stop

    model = task_model(base)  # seeds the generator dropout draws from
    recipe = LoopRecipe(max_steps=8, lr=3e-3, batch_size=8, grad_accumulation=accumulation, checkpoint_every=2, eval_every=3,
                        log_every=1)
    objective = adversarial(supervised(features, micro_batch=8 // accumulation), AdversarialSpec(method="fgm"))
    result = train(model, objective, _latest_is_best, LoopConfig.of(recipe), EngineConfig(torch.device("cpu"), precision),
                   Selection("order"), work_dir=work_dir, identity="adversarial-test", on_evaluation=hook)
    return model, [point for point in result.state.history if "loss" in point]


def test_training_runs_under_bf16_autocast_with_gradient_accumulation(tiny_base, features, tmp_path):
    model, curve = train_adversarially(tiny_base, features["token-classification"], tmp_path, precision="bf16", accumulation=2)

    assert [point["step"] for point in curve] == list(range(1, 9))
    assert all(torch.isfinite(torch.tensor(point["loss"])) for point in curve)
    assert curve[-1]["loss"] < curve[0]["loss"]


def test_two_runs_from_the_same_seed_give_the_same_weights(tiny_base, features, tmp_path):
    first, _ = train_adversarially(tiny_base, features["token-classification"], tmp_path / "first", accumulation=2)
    second, _ = train_adversarially(tiny_base, features["token-classification"], tmp_path / "second", accumulation=2)

    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_interrupted_run_resumes_and_matches_an_uninterrupted_one(tiny_base, features, tmp_path, precision):
    data = features["token-classification"]
    with pytest.raises(_Stop):
        train_adversarially(tiny_base, data, tmp_path / "resumed", precision, 2, stop_at_evaluation=1)  # at step 3; saved at 2
    resumed, resumed_curve = train_adversarially(tiny_base, data, tmp_path / "resumed", precision, 2)
    straight, straight_curve = train_adversarially(tiny_base, data, tmp_path / "straight", precision, 2)

    assert resumed_curve == straight_curve  # the same loss, step for step
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters()))


def test_a_compiled_step_trains_adversarially_without_a_failed_compile(tiny_base, features, tmp_path, capsys):
    """The adversarial loss runs eager inside the compiled step: a compiled backward could not keep
    the clean graph for the loop's backward, and the loop would say the compile failed."""
    model = task_model(tiny_base)
    objective = adversarial(supervised(features["token-classification"]), AdversarialSpec())
    train(model, objective, _latest_is_best, LoopConfig.of(LoopRecipe(max_steps=2, batch_size=8)),
          EngineConfig(torch.device("cpu"), compile=True), Selection("order"), work_dir=tmp_path, identity="compiled")

    assert "torch.compile failed" not in capsys.readouterr().out


# -- the finetune stage (finetune.adversarial in the standard)


def test_sigkill_mid_adversarial_fine_tuning_then_rerun_resumes_and_matches_an_uninterrupted_run(
        ner_standard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nlpstd.runner import run_standard

    text = ner_standard.read_text().replace("finetune: {", "finetune: {adversarial: {method: fgm}, ")
    text = text.replace("epochs: 3", "epochs: 20").replace("checkpoint_every: 10", "checkpoint_every: 25")
    ner_standard.write_text(text.replace("evaluate: {", "evaluate: {metrics: [f1], "))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking"]

    # -- start, kill at the second checkpoint, rerun: it resumes and finishes
    killed_then_rerun(command, out / ".finetune.partial" / "checkpoints" / "last" / "state.json")

    # -- an uninterrupted run, which trains adversarially, ends with the same weights and loss curve
    calls = []
    plain_loss = Adversarial.loss
    monkeypatch.setattr(Adversarial, "loss", lambda self, model, batch: calls.append(1) or plain_loss(self, model, batch))
    reference = tmp_path / "reference"
    run_standard(ner_standard, reference, stages=["data-prep", "finetune"], tracking=False)
    assert calls, "finetune.adversarial reaches the training loop"
    resumed = load_file(out / "finetune" / "model" / "model.safetensors")
    straight = load_file(reference / "finetune" / "model" / "model.safetensors")
    assert all((resumed[k] - straight[k]).abs().max() < 1e-5 for k in straight)
    assert _losses(out) == _losses(reference)


def _losses(out: Path) -> list[tuple[int, float]]:
    """The training loss curve a finished finetune wrote: (step, mean loss) per log line."""
    history = json.loads((out / "finetune" / "history.json").read_text())
    return [(point["step"], point["loss"]) for point in history if "loss" in point]
