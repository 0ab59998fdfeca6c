"""Low-rank factorization: a matrix of rank r factorized at rank r predicts as before, a rank shrinks the
model by the expected count, energy picks the smallest rank keeping the share asked, and a factorized model
saved with save_pretrained reloads from its plan, and exports to ONNX, predicting as it did in memory."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_encoders import CLASSES, tiny_encoder
from torch import nn
from transformers import AutoModelForTokenClassification, PreTrainedModel

from nlpstd.compress.factorize import Factorized, apply_plan, factorize, load_factorized, plan
from nlpstd.errors import NlpstdError
from nlpstd.export.onnx import OnnxForward, export_onnx

HIDDEN, LAYERS, HEADS, WIDTH, VOCAB, LABELS = 32, 2, 4, 64, 100, 3
FFN = {"bert": ("intermediate.dense", "output.dense"), "electra": ("intermediate.dense", "output.dense"),
       "distilbert": ("ffn.lin1", "ffn.lin2")}
ATTENTION = {"bert": ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"),
             "distilbert": ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin")}
ATTENTION["electra"] = ATTENTION["bert"]
LAYERS_AT = {"bert": "bert.encoder.layer", "electra": "electra.encoder.layer", "distilbert": "distilbert.transformer.layer"}


def tiny(family: str = "bert", task: str = "token") -> PreTrainedModel:
    """A 2-layer, 32-wide encoder with an FFN of 64 and a task head, seeded, in eval mode (outputs compare exactly)."""
    return tiny_encoder(family, task, hidden=HIDDEN, layers=LAYERS, width=WIDTH, heads=HEADS, vocab=VOCAB, labels=LABELS)


def inputs() -> dict[str, torch.Tensor]:
    """Four sequences of 12, 9, 7 and 5 tokens, padded to 12."""
    generator = torch.Generator().manual_seed(1)
    mask = (torch.arange(12) < torch.tensor([[12], [9], [7], [5]])).long()  # (4, 12)
    return {"input_ids": torch.randint(1, VOCAB, (4, 12), generator=generator) * mask, "attention_mask": mask}


def logits(model: PreTrainedModel) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).logits


def paths(family: str, groups: tuple[str, ...]) -> list[str]:
    within = {"ffn": FFN[family], "attention": ATTENTION[family]}
    return sorted(f"{LAYERS_AT[family]}.{i}.{name}" for i in range(LAYERS) for group in groups for name in within[group])


def planted_rank(model: PreTrainedModel, rank: int, where: list[str]) -> None:
    """Make every matrix at `where` a product of (out, rank) and (rank, in) random matrices: of rank `rank`."""
    generator = torch.Generator().manual_seed(2)
    for path in where:
        weight = model.get_submodule(path).weight
        left = torch.randn(weight.shape[0], rank, generator=generator) * 0.1
        right = torch.randn(rank, weight.shape[1], generator=generator) * 0.1
        with torch.no_grad():
            weight.copy_(left @ right)


def spectrum(out_features: int, in_features: int, singular: list[float]) -> torch.Tensor:
    """An (out, in) matrix whose nonzero singular values are `singular`."""
    generator = torch.Generator().manual_seed(3)
    left = torch.linalg.qr(torch.randn(out_features, len(singular), generator=generator))[0]  # orthonormal columns
    right = torch.linalg.qr(torch.randn(in_features, len(singular), generator=generator))[0]
    return left @ torch.diag(torch.tensor(singular)) @ right.T


# -- a factorized matrix computes what the dense one did


@pytest.mark.parametrize("family", ["bert", "electra", "distilbert"])
@pytest.mark.parametrize("groups", [("ffn",), ("attention",), ("ffn", "attention")])
def test_matrices_of_rank_r_factorized_at_rank_r_predict_as_before(family, groups):
    model = tiny(family)
    planted_rank(model, 4, paths(family, groups))
    before = logits(model)

    _, report = factorize(model, rank=4, modules=groups)

    assert sorted(plan(model)) == paths(family, groups)
    assert all(entry["factorized"] and entry["energy"] > 1 - 1e-6 for entry in report["matrices"].values())
    assert torch.allclose(logits(model), before, atol=1e-5)


def test_full_rank_would_grow_every_matrix_so_all_stay_dense_and_predict_as_before():
    model = tiny()
    before = logits(model)

    _, report = factorize(model, rank=10_000, modules=("ffn", "attention"))

    assert plan(model) == {}
    assert {path: (entry["rank"], entry["factorized"]) for path, entry in report["matrices"].items()} == {
        path: (HIDDEN, False) for path in paths("bert", ("ffn", "attention"))}  # clipped to min(in, out)
    assert report["parameters_after"] == report["parameters_before"]
    assert torch.equal(logits(model), before)


def test_a_rank_whose_factors_would_not_be_smaller_keeps_only_those_matrices_dense():
    model = tiny()

    _, report = factorize(model, rank=16, modules=("ffn", "attention"))  # 16 x (32 + 32) = 32 x 32: no gain

    factorized = {path for path, entry in report["matrices"].items() if entry["factorized"]}
    assert factorized == set(paths("bert", ("ffn",))) == set(plan(model))  # 16 x (64 + 32) < 64 x 32
    assert all(isinstance(model.get_submodule(path), nn.Linear) for path in paths("bert", ("attention",)))


# -- the model shrinks by what the factors save


def test_a_rank_removes_the_expected_parameter_count():
    model = tiny()

    _, report = factorize(model, rank=4)

    per_matrix = WIDTH * HIDDEN - 4 * (WIDTH + HIDDEN)  # the dense matrix out, two thin ones in; the bias stays
    assert report["parameters_before"] - report["parameters_after"] == 2 * LAYERS * per_matrix
    assert report["parameters_after"] == sum(p.numel() for p in model.parameters())


# -- energy picks the smallest rank keeping the share asked


@pytest.mark.parametrize(("energy", "rank", "kept"), [(0.5, 1, 16 / 30), (0.8, 2, 25 / 30), (25 / 30, 2, 25 / 30),
                                                      (0.9, 3, 29 / 30), (0.99, 4, 1.0)])
def test_energy_picks_the_smallest_rank_whose_squared_singular_values_keep_that_share(energy, rank, kept):
    model = tiny()
    path = "bert.encoder.layer.0.intermediate.dense"
    with torch.no_grad():
        model.get_submodule(path).weight.copy_(spectrum(WIDTH, HIDDEN, [4.0, 3.0, 2.0, 1.0]))  # squares 16, 9, 4, 1 of 30

    _, report = factorize(model, energy=energy)

    assert report["matrices"][path]["rank"] == rank
    assert report["matrices"][path]["energy"] == pytest.approx(kept, abs=1e-6)


def test_a_higher_energy_keeps_larger_ranks_and_each_keeps_at_least_the_share_asked():
    low = factorize(tiny(), energy=0.3, modules=("ffn", "attention"))[1]["matrices"]
    full = factorize(tiny(), energy=1.0, modules=("ffn", "attention"))[1]["matrices"]

    assert all(full[path]["rank"] == HIDDEN and not full[path]["factorized"] for path in full)  # all of a random matrix
    assert all(low[path]["rank"] < full[path]["rank"] for path in full)
    assert all(low[path]["energy"] >= 0.3 and full[path]["energy"] >= 1.0 for path in full)


# -- saved with save_pretrained, reloaded from the plan


@pytest.mark.parametrize("family", ["bert", "electra", "distilbert"])
@pytest.mark.parametrize("task", ["token", "sequence"])
def test_a_saved_factorized_model_reloads_from_its_plan_and_predicts_identically(family, task, tmp_path):
    model, _ = factorize(tiny(family, task), rank=4, modules=("ffn", "attention"))
    model.save_pretrained(tmp_path)

    again = load_factorized(tmp_path, CLASSES[task], json.loads(json.dumps(plan(model))))

    assert plan(again) == plan(model)
    assert torch.equal(logits(again), logits(model))


def test_the_plan_names_each_factorized_matrix_from_the_model_root_with_its_rank():
    model, report = factorize(tiny(), rank=4)

    assert plan(model) == {path: 4 for path in paths("bert", ("ffn",))}
    assert plan(model) == {path: entry["rank"] for path, entry in report["matrices"].items() if entry["factorized"]}


def test_save_pretrained_writes_each_factor_as_its_own_weight(tmp_path):
    model, _ = factorize(tiny(), rank=4)
    model.save_pretrained(tmp_path)

    saved = load_file(tmp_path / "model.safetensors")

    assert saved.keys() == model.state_dict().keys()
    for path in plan(model):
        assert {f"{path}.first.weight", f"{path}.second.weight", f"{path}.second.bias"} <= saved.keys()
        assert f"{path}.weight" not in saved
    parameters = [p for _, p in model.named_parameters(remove_duplicate=False)]
    assert len({p.data_ptr() for p in parameters}) == len(parameters)  # no weight shared with another


@pytest.mark.parametrize("other", [{"rank": 8}, {"rank": 4, "modules": ("attention",)}, None])
def test_weights_of_another_plan_are_refused_naming_what_differs(other, tmp_path):
    model, _ = factorize(tiny(), rank=4)
    model.save_pretrained(tmp_path)
    other_plan = plan(factorize(tiny(), **other)[0]) if other else {}

    with pytest.raises(NlpstdError, match=r"the weights are not those of this factorization plan: .*(missing|another shape)"):
        load_factorized(tmp_path, AutoModelForTokenClassification, other_plan)


@pytest.mark.parametrize(("entry", "message"), [
    ({"bert.encoder.layer.9.intermediate.dense": 4}, r"^plan: bert.encoder.layer.9.intermediate.dense: expected a dense Linear, found nothing"),
    ({"bert.encoder.layer.0.intermediate": 4}, r"^plan: bert.encoder.layer.0.intermediate: expected a dense Linear, found a BertIntermediate"),
    ({"bert.encoder.layer.0.intermediate.dense": 0}, r"^plan: bert.encoder.layer.0.intermediate.dense: rank 0 is not in 1..32"),
    ({"bert.encoder.layer.0.intermediate.dense": 33}, r"^plan: bert.encoder.layer.0.intermediate.dense: rank 33 is not in 1..32"),
])
def test_a_plan_that_does_not_fit_the_model_is_refused_naming_the_matrix(entry, message):
    with pytest.raises(NlpstdError, match=message):
        apply_plan(tiny(), entry)


def test_apply_plan_builds_factors_of_the_planned_shapes():
    model = apply_plan(tiny(), {"bert.encoder.layer.1.output.dense": 5})

    factorized = model.get_submodule("bert.encoder.layer.1.output.dense")
    assert isinstance(factorized, Factorized)
    assert (factorized.first.weight.shape, factorized.second.weight.shape, factorized.second.bias.shape) == (
        (5, WIDTH), (HIDDEN, 5), (HIDDEN,))


# -- exported to ONNX, it predicts as in torch


def test_an_onnx_export_of_a_factorized_model_predicts_as_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    model, _ = factorize(tiny(), rank=4, modules=("ffn", "attention"))

    exported = OnnxForward(export_onnx(model, tmp_path / "model.onnx", token_types=True))

    assert abs(exported(inputs()) - logits(model).numpy()).max() < 1e-4


def test_a_torchscript_onnx_export_of_a_factorized_model_predicts_as_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    model, _ = factorize(tiny(), rank=4, modules=("ffn", "attention"))
    batch = inputs()
    axes = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask")}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(model, (batch["input_ids"], batch["attention_mask"]), str(tmp_path / "model.onnx"), dynamo=False,
                          input_names=list(axes), output_names=["logits"], dynamic_axes=axes, opset_version=18)

    assert abs(OnnxForward(tmp_path / "model.onnx")(batch) - logits(model).numpy()).max() < 1e-4


# -- settings that cannot work are refused before any weight changes


@pytest.mark.parametrize(("settings", "message"), [
    ({"rank": 4, "energy": 0.5}, r"^rank, energy: give exactly one"),
    ({}, r"^rank, energy: give exactly one"),
    ({"rank": 0}, r"^rank: 0 is not a rank"),
    ({"rank": -2}, r"^rank: -2 is not a rank"),
    ({"rank": 2.5}, r"^rank: 2.5 is not a rank"),
    ({"rank": True}, r"^rank: True is not a rank"),
    ({"energy": 0}, r"^energy: 0 is not a share"),
    ({"energy": 1.5}, r"^energy: 1.5 is not a share"),
    ({"energy": -0.1}, r"^energy: -0.1 is not a share"),
    ({"rank": 4, "modules": ("mlp",)}, r"^modules: \('mlp',\) names unknown groups \['mlp'\]; choose from ffn, attention"),
    ({"rank": 4, "modules": ()}, r"^modules: \(\) names no group"),
])
def test_settings_that_cannot_work_are_refused_naming_the_setting_and_leave_the_model_as_it_was(settings, message):
    model = tiny()
    weights = {name: p.clone() for name, p in model.state_dict().items()}

    with pytest.raises(NlpstdError, match=message):
        factorize(model, **settings)

    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(p, weights[name]) for name, p in model.state_dict().items())


def test_a_family_factorization_does_not_know_is_refused_naming_the_model():
    model = tiny("roberta")

    with pytest.raises(NlpstdError, match=r"^model: 'roberta' cannot be factorized"):
        factorize(model, rank=4)


def test_factorizing_a_factorized_matrix_again_is_refused_naming_it():
    model, _ = factorize(tiny(), rank=4)

    with pytest.raises(NlpstdError, match=r"^model: bert.encoder.layer.0.intermediate.dense: .*a Factorized.*factorized already"):
        factorize(model, rank=2)


def test_a_folder_without_saved_weights_is_refused_naming_it(tmp_path: Path):
    tiny().config.save_pretrained(tmp_path)

    with pytest.raises(NlpstdError, match=r"model.safetensors missing; save the factorized model with save_pretrained"):
        load_factorized(tmp_path, AutoModelForTokenClassification, {})
