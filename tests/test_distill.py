"""Knowledge distillation (`nlpstd.train.distill`): the loss mixes the KL to a teacher's softened logits
with the labels' cross-entropy on the positions the task scores; the teacher's logits may be cached
once; a student keeps a subset of the teacher's layers; and distillation trains, seeded and
resumable, through the shared loop."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    PreTrainedModel,
)
from transformers.modeling_outputs import TokenClassifierOutput

from nlpstd.compress.prune import every_other_layer
from nlpstd.data.encode import IGNORE
from nlpstd.errors import NlpstdError
from nlpstd.spec import LoopRecipe
from nlpstd.train.batching import Augmented, Supervised, collate
from nlpstd.train.config import EngineConfig, LoopConfig, Selection
from nlpstd.train.distill import (
    TEACHER_LOGITS,
    Distilled,
    TeacherCache,
    cache_bytes,
    check_teacher,
    layer_subset,
    should_cache,
)
from nlpstd.train.loop import train

VOCAB, LABELS = 100, 3
HEADS = {"token": BertForTokenClassification, "sequence": BertForSequenceClassification}
AUTO = {"token": AutoModelForTokenClassification, "sequence": AutoModelForSequenceClassification}


def tiny(task: str = "token", layers: int = 4, seed: int = 0) -> PreTrainedModel:
    """A 64-wide BERT with a task head, in eval mode (no dropout: outputs compare exactly)."""
    torch.manual_seed(seed)
    config = BertConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=128,
                        vocab_size=VOCAB, max_position_embeddings=32, num_labels=LABELS)
    return HEADS[task](config).eval()


def features(task: str = "token", n: int = 32) -> list[dict]:
    """`n` examples of 5 to 12 tokens; a token example leaves its first and last token and about a
    quarter of the others unlabelled, as specials and non-first sub-words are."""
    generator = torch.Generator().manual_seed(1)
    made = []
    for _ in range(n):
        length = int(torch.randint(5, 13, (1,), generator=generator))
        ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        tags = torch.randint(0, LABELS, (length,), generator=generator)
        tags[torch.rand(length, generator=generator) < 0.25] = IGNORE
        tags[0] = tags[-1] = IGNORE
        made.append({"input_ids": ids, "labels": tags.tolist() if task == "token" else int(tags[1].clamp_min(0))})
    return made


def supervised(task: str = "token", micro_batch: int = 8) -> Supervised:
    return Supervised(features(task), micro_batch=micro_batch, seed=0, group_by_length=True, pad_id=0)


def first_batch(objective) -> dict[str, torch.Tensor]:
    """The first eight examples, padded (shorter rows carry padding)."""
    batch = objective.collate(list(range(8)), 0, 0)
    assert not batch["attention_mask"].all()
    return batch


class Shifted(torch.nn.Module):
    """A teacher whose logits are moved by `shift` (B, T, L)."""

    def __init__(self, teacher: torch.nn.Module, shift: torch.Tensor):
        super().__init__()
        self.teacher, self.shift = teacher, shift

    def forward(self, **inputs: torch.Tensor) -> TokenClassifierOutput:
        return TokenClassifierOutput(logits=self.teacher(**inputs).logits + self.shift)


# -- the loss


@pytest.mark.parametrize("task", HEADS)
def test_with_alpha_zero_the_loss_is_exactly_the_students_own_cross_entropy(task):
    objective = supervised(task)
    batch = first_batch(objective)
    student = tiny(task, layers=2, seed=1)
    loss = Distilled(objective, tiny(task), temperature=2.0, alpha=0.0).loss(student, batch)

    assert torch.equal(loss, student(**batch).loss)


@pytest.mark.parametrize("task", HEADS)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_a_student_identical_to_the_teacher_has_no_distillation_term(task, temperature):
    objective = supervised(task)
    teacher = tiny(task)
    loss = Distilled(objective, teacher, temperature, alpha=1.0).loss(copy.deepcopy(teacher), first_batch(objective))

    torch.testing.assert_close(loss, torch.tensor(0.0), rtol=0, atol=1e-7)


@pytest.mark.parametrize("task", HEADS)
def test_a_student_unlike_the_teacher_has_a_positive_distillation_term(task):
    objective = supervised(task)
    loss = Distilled(objective, tiny(task), 2.0, alpha=1.0).loss(tiny(task, seed=1), first_batch(objective))

    assert loss > 0


def test_unlabelled_token_positions_take_no_part_in_the_loss():
    objective = supervised("token")
    batch = first_batch(objective)
    teacher, student = tiny("token"), tiny("token", layers=2, seed=1)
    unlabelled = (batch["labels"] == IGNORE)[:, :, None]  # (B, T, 1): specials, sub-words, padding
    shift = torch.where(unlabelled, 10 * torch.randn(*batch["labels"].shape, LABELS), 0.0)
    plain = Distilled(objective, teacher, 2.0, alpha=0.5).loss(student, batch)
    shifted = Distilled(objective, Shifted(teacher, shift), 2.0, alpha=0.5).loss(student, batch)

    assert shift.abs().sum() > 0
    assert torch.equal(plain, shifted)


def test_gradients_reach_the_student_alone_and_the_teacher_stays_in_eval_mode():
    objective = supervised("token")
    teacher, student = tiny("token").train(), tiny("token", layers=2, seed=1).train()
    Distilled(objective, teacher, 2.0, alpha=0.5).loss(student, first_batch(objective)).backward()

    assert all(param.grad is not None for param in student.parameters())
    assert student.classifier.weight.grad.abs().sum() > 0
    assert all(param.grad is None for param in teacher.parameters())
    assert not teacher.training


def test_the_teacher_draws_no_random_numbers_so_the_students_dropout_is_that_of_plain_fine_tuning():
    objective = supervised("token")
    batch = first_batch(objective)
    student = tiny("token", layers=2, seed=1).train()
    distilled = Distilled(objective, tiny("token"), 2.0, alpha=0.0)
    torch.manual_seed(5)
    losses = [distilled.loss(student, batch) for _ in range(2)]
    torch.manual_seed(5)
    own = [student(**batch).loss for _ in range(2)]

    assert all(torch.equal(a, b) for a, b in zip(losses, own))


def test_under_bf16_autocast_the_loss_is_float32_and_close_to_the_fp32_loss():
    objective = supervised("token")
    batch = first_batch(objective)
    distilled, student = Distilled(objective, tiny("token"), 2.0, alpha=0.5), tiny("token", layers=2, seed=1)
    full = distilled.loss(student, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = distilled.loss(student, batch)

    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, rtol=5e-2, atol=1e-2)


def test_settings_out_of_range_are_refused():
    objective = supervised("token")
    for temperature, alpha in ((0.0, 0.5), (2.0, 1.5), (2.0, -0.1)):
        with pytest.raises(ValueError):
            Distilled(objective, tiny("token"), temperature, alpha)


def test_a_teacher_of_other_labels_is_refused():
    student = tiny("token", layers=2)
    other = tiny("token")
    other.config.id2label = {0: "O", 1: "B-PER", 2: "I-PER"}

    with pytest.raises(NlpstdError, match="finetune.distill.teacher: its labels"):
        check_teacher(other, student)


# -- the teacher's logits, cached


@pytest.mark.parametrize("task", HEADS)
def test_the_cached_teacher_logits_equal_recomputed_ones_within_float16_rounding(task):
    data, teacher = features(task), tiny(task)
    cache = TeacherCache.compute(teacher, data, pad_id=0, batch_size=5)

    for i, feature in enumerate(data):
        batch = collate([feature], pad_id=0)
        labels = batch.pop("labels")
        with torch.no_grad():
            logits = teacher(**batch).logits
        expected = logits[labels != IGNORE] if task == "token" else logits
        torch.testing.assert_close(cache.rows([i]), expected.half(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("task", HEADS)
def test_the_loss_with_the_cache_matches_the_loss_without(task):
    objective, teacher, student = supervised(task), tiny(task), tiny(task, layers=2, seed=1)
    cache = TeacherCache.compute(teacher, objective.features, pad_id=0)
    cached = Distilled(objective, teacher, 2.0, alpha=0.5, cache=cache)
    batch = first_batch(cached)

    assert TEACHER_LOGITS in batch
    torch.testing.assert_close(cached.loss(student, batch), Distilled(objective, teacher, 2.0, 0.5).loss(student, batch),
                               rtol=1e-3, atol=1e-4)


def test_with_a_cache_no_teacher_is_needed():
    objective, teacher, student = supervised("token"), tiny("token"), tiny("token", layers=2, seed=1)
    cache = TeacherCache.compute(teacher, objective.features, pad_id=0)
    batch = first_batch(Distilled(objective, None, 2.0, alpha=0.5, cache=cache))

    assert torch.equal(Distilled(objective, None, 2.0, 0.5, cache=cache).loss(student, batch),
                       Distilled(objective, teacher, 2.0, 0.5, cache=cache).loss(student, batch))


def test_the_cache_keeps_the_scored_positions_alone_at_two_bytes_a_logit():
    data = features("token")
    cache = TeacherCache.compute(tiny("token"), data, pad_id=0)
    labelled = sum(label != IGNORE for feature in data for label in feature["labels"])

    assert cache.logits.shape == (labelled, LABELS) and cache.logits.dtype == torch.float16
    assert cache_bytes(data, LABELS) == cache.logits.nbytes == labelled * LABELS * 2


def test_augmented_features_cannot_use_a_cache():
    data = features("token")
    augmented = Augmented(lambda epoch: data, micro_batch=8, seed=0, group_by_length=True, pad_id=0)
    cache = TeacherCache.compute(tiny("token"), data, pad_id=0)

    with pytest.raises(ValueError, match="augmented"):
        Distilled(augmented, None, 2.0, 0.5, cache=cache)


@pytest.mark.parametrize("augmenting, passes, nbytes, cached", [
    (False, 3, 10**6, True),
    (True, 3, 10**6, False),  # the inputs change each epoch
    (False, 1, 10**6, False),  # one pass: the cache would cost the same teacher forwards
    (False, 3, 10**12, False),  # over the memory budget
])
def test_the_cache_is_taken_only_when_it_is_valid_cheaper_and_fits(augmenting, passes, nbytes, cached):
    assert should_cache(augmenting=augmenting, passes=passes, nbytes=nbytes) is cached


# -- a student of the teacher's layers


@pytest.mark.parametrize("bare", [False, True], ids=["task model", "bare encoder"])
def test_layer_subset_keeps_the_chosen_layers_and_everything_else_as_it_was(bare):
    model = tiny("token").bert if bare else tiny("token")
    kept = [0, 2]
    student = layer_subset(model, kept)
    teacher_state, student_state = model.state_dict(), student.state_dict()

    def source(name: str) -> str:  # the student's layer j is the teacher's layer kept[j]
        return re.sub(r"encoder\.layer\.(\d+)\.", lambda m: f"encoder.layer.{kept[int(m[1])]}.", name)

    assert student.config.num_hidden_layers == 2 and model.config.num_hidden_layers == 4
    assert len(student_state) < len(teacher_state)
    assert all(torch.equal(value, teacher_state[source(name)]) for name, value in student_state.items())


def test_layer_subset_leaves_the_source_model_whole():
    teacher = tiny("token")
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    layer_subset(teacher, every_other_layer(4))

    assert len(teacher.bert.encoder.layer) == 4
    assert all(torch.equal(value, before[name]) for name, value in teacher.state_dict().items())


@pytest.mark.parametrize("task", HEADS)
def test_a_layer_subset_saves_and_reloads_with_plain_transformers_giving_the_same_outputs(task, tmp_path: Path):
    student = layer_subset(tiny(task), [1, 3])
    student.save_pretrained(tmp_path)
    reloaded = AUTO[task].from_pretrained(tmp_path).eval()
    batch = collate(features(task)[:8], pad_id=0)
    batch.pop("labels")

    assert reloaded.config.num_hidden_layers == 2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, student(**batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("layers", [[], [2, 0], [1, 1], [0, 4]])
def test_layer_subset_refuses_layers_that_are_not_ascending_distinct_and_in_range(layers):
    with pytest.raises(NlpstdError, match="layers"):
        layer_subset(tiny("token"), layers)


def test_every_other_layer_starts_at_the_first():
    assert every_other_layer(6) == [0, 2, 4] and every_other_layer(4) == [0, 2]


# -- through the training loop


class _Stop(Exception):
    """Raised from the evaluation hook: training stops as a kill would, after the last checkpoint."""


_ORDER = itertools.count()


def _latest_is_best(model: torch.nn.Module) -> dict[str, float]:
    """Each evaluation scores above every one before it: training ends holding its final weights."""
    return {"order": float(next(_ORDER))}


def confident_teacher() -> PreTrainedModel:
    """The 4-layer teacher with its classifier scaled up: soft targets far from uniform, as a trained one's."""
    teacher = tiny("token")
    with torch.no_grad():
        teacher.classifier.weight.mul_(50)
    return teacher


def mean_kl(student: torch.nn.Module, teacher: torch.nn.Module, objective: Supervised) -> float:
    """The student's KL to the teacher (T = 1) over the training set, in eval mode."""
    distilled, training = Distilled(objective, teacher, temperature=1.0, alpha=1.0), student.training
    student.eval()
    with torch.no_grad():
        kl = [float(distilled.loss(student, objective.collate(batch, 0, 0))) for batch in objective.batches(0)]
    student.train(training)
    return sum(kl) / len(kl)


def distil(work_dir: Path, cache: bool, steps: int = 8, stop_at_evaluation: int | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """A fresh 2-layer student of the confident 4-layer teacher, `steps` steps of 8 examples
    (checkpoints every 2 steps, evaluations every 3); the trained student and its loss curve."""
    def hook(n: int, scores: dict[str, float]) -> None:
        if n == stop_at_evaluation:
            raise _Stop

    teacher, objective = confident_teacher(), supervised("token")
    student = tiny("token", layers=2, seed=1).train()  # leaves the generator dropout draws from seeded
    logits = TeacherCache.compute(teacher, objective.features, pad_id=0) if cache else None
    distilled = Distilled(objective, None if cache else teacher, temperature=2.0, alpha=0.5, cache=logits)
    recipe = LoopRecipe(max_steps=steps, lr=3e-3, batch_size=8, checkpoint_every=2, eval_every=3, log_every=1)
    result = train(student, distilled, _latest_is_best, LoopConfig.of(recipe), EngineConfig(torch.device("cpu")),
                   Selection("order"), work_dir=work_dir, identity="distill-test", on_evaluation=hook)
    return student, [point for point in result.state.history if "loss" in point]


def test_a_short_distillation_lowers_the_students_kl_to_the_teacher(tmp_path: Path):
    teacher, objective = confident_teacher(), supervised("token")
    before = mean_kl(tiny("token", layers=2, seed=1), teacher, objective)
    student, _ = distil(tmp_path, cache=False, steps=16)

    after = mean_kl(student, teacher, objective)
    assert after < 0.5 * before


@pytest.mark.parametrize("cache", [False, True], ids=["teacher each step", "cached teacher"])
def test_an_interrupted_distillation_resumes_and_matches_an_uninterrupted_one(tmp_path: Path, cache: bool):
    with pytest.raises(_Stop):
        distil(tmp_path / "resumed", cache, stop_at_evaluation=1)  # at step 3; saved at 2
    resumed, resumed_curve = distil(tmp_path / "resumed", cache)
    straight, straight_curve = distil(tmp_path / "straight", cache)

    assert resumed_curve == straight_curve  # the same loss, step for step
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters()))
