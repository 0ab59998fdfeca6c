"""Structured pruning: the most important FFN neurons and layers stay, the model shrinks by what was
removed, and what is left reloads with plain transformers and predicts exactly as it did in memory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tiny_encoders import CLASSES, tiny_encoder
from transformers import PreTrainedModel

from nlpstd.compress.prune import (
    ffn_importance,
    head_importance,
    layer_importance,
    prune_ffn,
    prune_layers,
)
from nlpstd.data.encode import IGNORE
from nlpstd.errors import NlpstdError
from nlpstd.train.batching import collate

HIDDEN, LAYERS, HEADS, WIDTH, VOCAB, LABELS = 64, 4, 4, 128, 100, 3


def tiny(family: str = "bert", task: str = "token") -> PreTrainedModel:
    """A 4-layer, 64-wide encoder with a task head, in eval mode (no dropout: outputs compare exactly)."""
    return tiny_encoder(family, task, hidden=HIDDEN, layers=LAYERS, width=WIDTH, heads=HEADS, vocab=VOCAB, labels=LABELS)


def batches(task: str = "token") -> list[dict[str, torch.Tensor]]:
    """Three held-out batches of four padded examples of 5 to 12 tokens, labelled at random."""
    generator = torch.Generator().manual_seed(1)
    features = []
    for _ in range(12):
        length = int(torch.randint(5, 13, (1,), generator=generator))
        ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        token_labels = [IGNORE] + torch.randint(0, LABELS, (length - 1,), generator=generator).tolist()
        features.append({"input_ids": ids, "labels": token_labels if task == "token" else token_labels[1]})
    return [collate(features[s : s + 4], pad_id=0) for s in range(0, 12, 4)]


def logits(model: PreTrainedModel, task: str = "token") -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(**batch).logits.flatten() for batch in batches(task)])


def silenced_neurons(model: PreTrainedModel, count: int) -> list[list[int]]:
    """Zero the outgoing weights of `count` random neurons in every layer: they no longer reach the output."""
    generator = torch.Generator().manual_seed(2)
    planted = []
    for layer in model.bert.encoder.layer:
        neurons = sorted(torch.randperm(WIDTH, generator=generator)[:count].tolist())
        with torch.no_grad():
            layer.output.dense.weight[:, neurons] = 0
        planted.append(neurons)
    return planted


PASS_THROUGH = 2


@pytest.fixture(scope="module")
def fitted_once() -> PreTrainedModel:
    return fitted_with_a_pass_through_layer(PASS_THROUGH)


@pytest.fixture
def fitted(fitted_once: PreTrainedModel) -> PreTrainedModel:
    return copy.deepcopy(fitted_once)


def fitted_with_a_pass_through_layer(planted: int) -> PreTrainedModel:
    """A BERT fitted to the held-out batches whose layer `planted` passes its input through.

    The planted layer's attention and FFN output projections are zero, so each of its residual
    blocks is LayerNorm(input). LayerNorms stay at their initial scale 1 and shift 0 and are not
    trained, so every layer's output is already normalised and LayerNorm(input) is the input.
    Fitting the rest makes every other layer cost loss when skipped.
    """
    model = tiny()
    layer = model.bert.encoder.layer[planted]
    with torch.no_grad():
        for linear in (layer.attention.output.dense, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
    trained = [p for name, p in model.named_parameters()
              if "LayerNorm" not in name and not name.startswith(f"bert.encoder.layer.{planted}.")]
    optimizer = torch.optim.Adam(trained, lr=1e-3)
    for _ in range(10):
        for batch in batches():
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return model


def reloaded(model: PreTrainedModel, folder: Path, task: str) -> PreTrainedModel:
    model.save_pretrained(folder)
    again, info = CLASSES[task].from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # no weight newly initialised, left over or of another shape
    return again.eval()


# -- a pruned model is a plain transformers model


@pytest.mark.parametrize("family", ["bert", "electra", "distilbert"])
@pytest.mark.parametrize("task", ["token", "sequence"])
def test_an_ffn_pruned_model_reloads_with_plain_transformers_and_predicts_as_in_memory(family, task, tmp_path):
    model = tiny(family, task)
    model, _ = prune_ffn(model, 0.5, ffn_importance(model, batches(task)))

    again = reloaded(model, tmp_path, task)

    assert torch.allclose(logits(again, task), logits(model, task), atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "electra", "distilbert"])
@pytest.mark.parametrize("task", ["token", "sequence"])
def test_a_layer_pruned_model_reloads_with_plain_transformers_and_predicts_as_in_memory(family, task, tmp_path):
    model = tiny(family, task)
    model, _ = prune_layers(model, 2, layer_importance(model, batches(task)))

    again = reloaded(model, tmp_path, task)

    assert torch.allclose(logits(again, task), logits(model, task), atol=1e-5)


def test_the_config_names_the_new_ffn_width_and_layer_count():
    model = tiny()
    model, _ = prune_ffn(model, 64, ffn_importance(model, batches()))
    model, _ = prune_layers(model, 1, layer_importance(model, batches()))

    assert (model.config.intermediate_size, model.config.num_hidden_layers) == (64, LAYERS - 1)
    assert len(model.bert.encoder.layer) == LAYERS - 1
    assert all(layer.intermediate.dense.out_features == 64 for layer in model.bert.encoder.layer)


# -- the most important neurons stay


def test_neurons_that_do_not_reach_the_output_score_zero_and_only_they_do():
    model = tiny()
    planted = silenced_neurons(model, 32)

    scores = ffn_importance(model, batches())

    for score, neurons in zip(scores, planted):
        assert torch.all(score[neurons] == 0)
        assert torch.all(score[[n for n in range(WIDTH) if n not in neurons]] > 0)


def test_pruning_removes_exactly_the_neurons_that_do_not_reach_the_output():
    model = tiny()
    planted = silenced_neurons(model, 32)

    _, summary = prune_ffn(model, WIDTH - 32, ffn_importance(model, batches()))

    assert summary["removed_neurons"] == planted


def test_removing_neurons_that_do_not_reach_the_output_leaves_the_outputs_unchanged():
    model = tiny()
    silenced_neurons(model, 32)
    before = logits(model)

    prune_ffn(model, WIDTH - 32, ffn_importance(model, batches()))

    assert torch.allclose(logits(model), before, atol=1e-5)


def test_keeping_every_neuron_changes_nothing():
    model = tiny()
    before, parameters = logits(model), sum(p.numel() for p in model.parameters())

    _, summary = prune_ffn(model, 1.0, ffn_importance(model, batches()))

    assert torch.equal(logits(model), before)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert summary["removed_neurons"] == [[]] * LAYERS


def test_a_share_is_rounded_to_a_multiple_of_8():
    model = tiny()

    _, summary = prune_ffn(model, 0.3, ffn_importance(model, batches()))  # 38.4 of 128 neurons

    assert summary["intermediate_size"] == {"before": WIDTH, "after": 40}


def test_a_count_of_neurons_is_kept_as_given():
    model = tiny()

    _, summary = prune_ffn(model, 37, ffn_importance(model, batches()))

    assert summary["intermediate_size"] == {"before": WIDTH, "after": 37}


@pytest.mark.parametrize("keep", [0, 0.0, -0.5, 1.5, WIDTH + 1, True, "half"])
def test_a_keep_that_is_no_share_or_count_of_the_width_is_refused_naming_keep(keep):
    model = tiny()

    with pytest.raises(NlpstdError, match=r"^keep: "):
        prune_ffn(model, keep, [torch.ones(WIDTH)] * LAYERS)


def test_importance_of_another_model_is_refused_naming_importance():
    with pytest.raises(NlpstdError, match=r"^importance: expected 4 scores of 128 neurons"):
        prune_ffn(tiny(), 0.5, [torch.ones(WIDTH)] * (LAYERS - 1))


# -- the least important layers go


def test_skipping_a_pass_through_layer_costs_no_loss_and_skipping_a_fitted_one_does(fitted):
    scores = layer_importance(fitted, batches())

    assert abs(scores[PASS_THROUGH]) < 1e-6
    assert all(scores[i] > 1e-3 for i in range(LAYERS) if i != PASS_THROUGH)


def test_layer_pruning_drops_the_layer_whose_skip_costs_least(fitted):
    _, summary = prune_layers(fitted, 1, layer_importance(fitted, batches()))

    assert summary["removed_layers"] == [PASS_THROUGH]


def test_dropping_a_pass_through_layer_leaves_the_outputs_unchanged(fitted):
    before = logits(fitted)

    prune_layers(fitted, 1, layer_importance(fitted, batches()))

    assert torch.allclose(logits(fitted), before, atol=1e-5)


@pytest.mark.parametrize("drop", [0, 0.0, 1.0, LAYERS, 0.1, -1, True])
def test_a_drop_that_removes_no_layer_or_every_layer_is_refused_naming_drop(drop):
    with pytest.raises(NlpstdError, match=r"^drop: "):
        prune_layers(tiny(), drop, torch.ones(LAYERS))


# -- the model shrinks by what was removed


def test_ffn_pruning_removes_each_neurons_row_bias_and_column_in_every_layer():
    model = tiny()

    _, summary = prune_ffn(model, 64, ffn_importance(model, batches()))

    removed = LAYERS * 64 * (HIDDEN + 1 + HIDDEN)  # up-projection row and bias, down-projection column
    assert summary["parameters_before"] - summary["parameters_after"] == removed
    assert summary["parameters_after"] == sum(p.numel() for p in model.parameters())


def test_layer_pruning_removes_the_parameters_of_the_dropped_layers():
    model = tiny()
    per_layer = sum(p.numel() for p in model.bert.encoder.layer[0].parameters())

    _, summary = prune_layers(model, 0.5, layer_importance(model, batches()))

    assert summary["num_hidden_layers"] == {"before": LAYERS, "after": LAYERS // 2}
    assert summary["parameters_before"] - summary["parameters_after"] == 2 * per_layer


# -- heads are scored, and the model is left as it was


def test_a_head_that_does_not_reach_the_output_scores_zero():
    model = tiny()
    head_size = HIDDEN // HEADS
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.output.dense.weight[:, head_size : 2 * head_size] = 0

    scores = head_importance(model, batches())

    assert scores.shape == (LAYERS, HEADS)
    assert scores[0, 1] == 0 and torch.all(scores[0, [0, 2, 3]] > 0)


def test_scoring_leaves_the_models_mode_weights_and_trainable_flags_as_they_were():
    model = tiny().train()
    model.bert.embeddings.requires_grad_(False)
    weights = {name: p.clone() for name, p in model.state_dict().items()}

    ffn_importance(model, batches())
    layer_importance(model, batches())

    assert model.training
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, weights[name]) for name, p in model.state_dict().items())


def test_a_family_pruning_does_not_know_is_refused_naming_the_model():
    model = tiny("roberta")

    with pytest.raises(NlpstdError, match=r"^model: 'roberta' cannot be pruned"):
        ffn_importance(model, batches())
