"""Structured pruning of a fine-tuned encoder: narrower feed-forward blocks and fewer layers.

A pruned model must stay a plain transformers model (saved with `save_pretrained`, reloaded with
`AutoModelFor*.from_pretrained`, served and exported like any other), so it can only shrink what
the config can describe. BERT's config (and ELECTRA's, DistilBERT's) has one FFN width and one
layer count for all layers: `prune_ffn` keeps the same number of neurons in every layer and
`prune_layers` removes whole layers.

Attention heads are scored (`head_importance`) but not removed. In transformers 5 `prune_heads`
and `config.pruned_heads` are gone, and `BertSelfAttention` derives the head size as
`int(hidden_size / num_attention_heads)` and sizes query/key/value as heads x head size; no config
field sets the head size (ELECTRA's `embedding_size` only skips the divisibility check, the size
is still derived from `hidden_size`). Fewer heads therefore means wider heads, not fewer
parameters: 6 heads of a 768-wide BERT are 6 heads of 128, still 768 wide.

Importance is measured on held-out labelled batches (`nlpstd.train.batching.collate` output) with
the model in eval mode, so dropout does not add noise to the ranking.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from nlpstd.errors import NlpstdError

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Family:
    """Where a family keeps what pruning touches; module paths are relative to the base model or a layer."""

    layers: str  # the encoder's ModuleList of layers, from the base model
    up: str  # in a layer: hidden -> FFN width (rows and bias are neurons)
    down: str  # in a layer: FFN width -> hidden (columns are neurons); its input is the FFN activation
    attention_out: str  # in a layer: heads x head size -> hidden; its input is the heads' outputs
    ffn_width: str  # the config field of the FFN width


_BERT = Family("encoder.layer", "intermediate.dense", "output.dense", "attention.output.dense", "intermediate_size")
FAMILIES = {
    "bert": _BERT,
    "electra": _BERT,  # ELECTRA's layers are BERT's, class names aside
    "distilbert": Family("transformer.layer", "ffn.lin1", "ffn.lin2", "attention.out_lin", "hidden_dim"),
}


# -- importance


def ffn_importance(model: PreTrainedModel, batches: Sequence[Batch]) -> list[torch.Tensor]:
    """Per layer, the first-order Taylor importance of each FFN neuron: sum over tokens and batches
    of |activation x d loss / d activation|, shape (FFN width,). It estimates how much the loss
    moves when the neuron's activation is set to zero, from one backward pass per batch; the
    absolute value is taken per token so that tokens pushing the loss up and down do not cancel."""
    family, layers = _family(model), _layers(model)
    return _taylor(model, batches, [layer.get_submodule(family.down) for layer in layers])


def head_importance(model: PreTrainedModel, batches: Sequence[Batch]) -> torch.Tensor:
    """The same Taylor importance per attention head, shape (layers, heads): each head's output
    slice at the input of the attention output projection. Reported only (see the module docstring)."""
    family, layers = _family(model), _layers(model)
    scores = _taylor(model, batches, [layer.get_submodule(family.attention_out) for layer in layers])
    heads = model.config.num_attention_heads
    return torch.stack([score.view(heads, -1).sum(-1) for score in scores])  # (L, H)


def layer_importance(model: PreTrainedModel, batches: Sequence[Batch]) -> torch.Tensor:
    """Per layer, how much the mean held-out loss rises when that layer alone is skipped, shape (layers,).

    Removing a layer is a large change, where a first-order estimate says little; skipping it and
    measuring is exact and still cheap: layers + 1 forward passes without gradients. Negative
    means the model does better without the layer. Layers are scored one at a time, so dropping
    several assumes their effects add up; drop one at a time and rescore when that matters.
    """
    layers = _layers(model)
    with _measuring(model, gradients=False):
        full = _mean_loss(model, batches)
        scores = []
        try:
            for skipped in range(len(layers)):
                _set_layers(model, [layer for i, layer in enumerate(layers) if i != skipped])
                scores.append(_mean_loss(model, batches) - full)
        finally:
            _set_layers(model, list(layers))
    return torch.tensor(scores)


def _taylor(model: PreTrainedModel, batches: Sequence[Batch], projections: list[nn.Module]) -> list[torch.Tensor]:
    """Sum over tokens and batches of |x * d loss / d x| for the input x of each projection, shape (in features,)."""
    scores = [torch.zeros(p.in_features, dtype=torch.float64) for p in projections]
    captured: list[tuple[int, torch.Tensor]] = []  # (projection, its input); a chunked FFN calls it more than once

    def capture(index: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            captured.append((index, inputs[0]))
        return hook

    handles = [p.register_forward_pre_hook(capture(i)) for i, p in enumerate(projections)]
    try:
        with _measuring(model, gradients=True):
            for batch in batches:
                captured.clear()
                loss = _loss(model, batch)
                grads = torch.autograd.grad(loss, [x for _, x in captured])
                for (index, x), grad in zip(captured, grads):
                    scores[index] += (x * grad).abs().flatten(0, -2).sum(0).double().cpu()  # (B, T, F) -> (F,)
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()
    return [score.float() for score in scores]


def _mean_loss(model: PreTrainedModel, batches: Sequence[Batch]) -> float:
    return sum(_loss(model, batch).item() for batch in batches) / len(batches)


def _loss(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    if "labels" not in batch:
        raise NlpstdError("batches: a batch without labels; importance is measured on the task loss")
    device = next(model.parameters()).device
    return model(**{key: value.to(device) for key, value in batch.items()}).loss


@contextlib.contextmanager
def _measuring(model: PreTrainedModel, *, gradients: bool) -> Iterator[None]:
    """Eval mode, and gradients flowing through every weight (a frozen base would stop them);
    the model's mode and trainable flags are restored after."""
    training, trainable = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    if gradients:
        model.requires_grad_(True)
    try:
        with torch.set_grad_enabled(gradients):
            yield
    finally:
        model.train(training)
        for parameter, flag in zip(model.parameters(), trainable):
            parameter.requires_grad_(flag)


# -- surgery


def prune_ffn(model: PreTrainedModel, keep: float | int, importance: list[torch.Tensor]) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Keep the most important FFN neurons of every layer (the same count in each, as the config
    holds one width), in place; returns the model and a summary.

    `keep` is a share of the width in (0, 1], rounded to a multiple of 8 (tensor cores and
    vectorised kernels work in multiples of 8) unless that keeps none or the whole width is kept,
    or an exact count of neurons. `importance` is `ffn_importance`'s result.
    """
    family, layers = _family(model), _layers(model)
    width = getattr(model.config, family.ffn_width)
    kept = _kept_neurons(keep, width)
    if len(importance) != len(layers) or any(score.numel() != width for score in importance):
        raise NlpstdError(f"importance: expected {len(layers)} scores of {width} neurons (ffn_importance of this "
                          f"model), got {[score.numel() for score in importance]}")
    before = parameter_count(model)
    removed = []
    for layer, score in zip(layers, importance):
        index = torch.topk(score.flatten(), kept).indices.sort().values  # the neurons keep their order
        removed.append(sorted(set(range(width)) - set(index.tolist())))
        _replace(layer, family.up, _sliced(layer.get_submodule(family.up), index, dim=0))
        _replace(layer, family.down, _sliced(layer.get_submodule(family.down), index, dim=1))
    setattr(model.config, family.ffn_width, kept)
    summary = {"parameters_before": before, "parameters_after": parameter_count(model),
               family.ffn_width: {"before": width, "after": kept}, "removed_neurons": removed}
    return model, summary


def prune_layers(model: PreTrainedModel, drop: float | int, importance: torch.Tensor) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Remove the least important encoder layers, in place, keeping the others in order; returns the
    model and a summary. `drop` is a share of the layers in (0, 1) or a count; at least one layer
    goes and one stays. `importance` is `layer_importance`'s result."""
    layers = _layers(model)
    count = _dropped_layers(drop, len(layers))
    if importance.numel() != len(layers):
        raise NlpstdError(f"importance: expected {len(layers)} layer scores (layer_importance of this model), "
                          f"got {importance.numel()}")
    before = parameter_count(model)
    removed = sorted(torch.argsort(importance.flatten(), stable=True)[:count].tolist())
    _set_layers(model, [layer for i, layer in enumerate(layers) if i not in removed])
    model.config.num_hidden_layers = len(layers) - count
    summary = {"parameters_before": before, "parameters_after": parameter_count(model),
               "num_hidden_layers": {"before": len(layers), "after": len(layers) - count}, "removed_layers": removed}
    return model, summary


def keep_layers(model: PreTrainedModel, layers: Sequence[int] | str) -> PreTrainedModel:
    """Keep only the encoder layers `layers` of `model` (ascending, e.g. [0, 2, 4] of 6, or
    "every-other"), in place, with everything else (embeddings, head) as it was and the layer count
    in the config, so it saves and reloads with plain transformers."""
    count = model.config.num_hidden_layers  # DistilBERT's n_layers answers to this name too
    kept = every_other_layer(count) if layers == "every-other" else list(layers)
    if not kept or kept != sorted(set(kept)) or not all(0 <= i < count for i in kept):
        raise NlpstdError(f"model.keep_layers: {kept!r} is not an ascending list of distinct layers of the base's "
                          f"{count} (0..{count - 1})")
    if len(kept) < count:  # prune_layers drops the lowest-scoring layers: score the kept ones 1, the others 0
        score = torch.zeros(count)
        score[kept] = 1.0
        prune_layers(model, count - len(kept), score)
    return model


def every_other_layer(count: int) -> list[int]:
    """Layers 0, 2, 4, ... of `count`: how DistilBERT started its student from BERT."""
    return list(range(0, count, 2))


def parameter_count(model: nn.Module) -> int:
    """Every parameter of `model` (the compression modules stay below `nlpstd.models.build`, which uses them)."""
    return sum(p.numel() for p in model.parameters())


def _kept_neurons(keep: float | int, width: int) -> int:
    """The number of neurons `keep` asks for; a share is rounded to a multiple of 8, a count is taken as given."""
    asked = f"keep: {keep!r} is neither a share of the FFN width in (0, 1] nor a count of neurons in 1..{width}"
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise NlpstdError(asked)
    if isinstance(keep, int):
        if not 1 <= keep <= width:
            raise NlpstdError(asked)
        return keep
    if not 0 < keep <= 1:
        raise NlpstdError(asked)
    kept = max(1, round(keep * width))
    if kept < width:
        rounded = 8 * round(kept / 8)
        kept = rounded if 0 < rounded <= width else kept
    return kept


def _dropped_layers(drop: float | int, layers: int) -> int:
    asked = f"drop: {drop!r} is neither a share of the layers in (0, 1) nor a count of layers in 1..{layers - 1}"
    if isinstance(drop, bool) or not isinstance(drop, (int, float)):
        raise NlpstdError(asked)
    if isinstance(drop, float):
        if not 0 < drop < 1:
            raise NlpstdError(asked)
        count = round(drop * layers)
        if not 1 <= count < layers:
            raise NlpstdError(f"drop: {drop!r} of {layers} layers is {count} layers; at least one must go and one stay")
        return count
    if not 1 <= drop < layers:
        raise NlpstdError(asked)
    return drop


def _sliced(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear holding the rows (dim 0, with their bias) or the columns (dim 1) of `index`."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    sliced = nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        sliced.weight.copy_(weight)
        if bias:
            sliced.bias.copy_(linear.bias[index] if dim == 0 else linear.bias)
    sliced.requires_grad_(linear.weight.requires_grad)
    return sliced


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _family(model: PreTrainedModel) -> Family:
    if not isinstance(model, PreTrainedModel):
        raise NlpstdError(f"model: a {type(model).__name__} is not a plain transformers model; merge LoRA weights "
                          "first (nlpstd.models.build.merged)")
    model_type = getattr(model.config, "model_type", None)
    if model_type not in FAMILIES:
        raise NlpstdError(f"model: {model_type!r} cannot be pruned; pruning supports {', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def _layers(model: PreTrainedModel) -> nn.ModuleList:
    return model.base_model.get_submodule(_family(model).layers)


def _set_layers(model: PreTrainedModel, layers: list[nn.Module]) -> None:
    path = _family(model).layers
    _replace(model.base_model, path, nn.ModuleList(layers))
    owner = model.base_model.get_submodule(path.rpartition(".")[0])
    if hasattr(owner, "n_layers"):  # DistilBERT's Transformer keeps its own count
        owner.n_layers = len(layers)
