"""Low-rank factorization of a fine-tuned encoder's large Linear matrices, by truncated SVD.

A weight W (out x in) is replaced by its best rank-r approximation U_r S_r V_r^T, kept as two thinner
Linears: x -> x V_r^T (in -> r, no bias) -> (U_r S_r)^T + b (r -> out, with W's bias). Each factor takes
sqrt(S_r), so the two matrices have the same scale and neither loses precision to the other (fp16, int8).
Two matrices hold r (in + out) numbers against W's in x out: a matrix whose rank does not pass that test
would grow, so it stays dense and the report says so.

The rank is one number for every matrix (`rank`), or chosen per matrix as the smallest that keeps a share
of the squared singular values (`energy`, the share of W's squared Frobenius norm the approximation keeps):
matrices whose spectrum falls fast then shrink most.

Unlike pruning, the result is not a plain transformers model: no config field says that a projection is two
matrices of some rank. It is saved with `save_pretrained` (the factors are ordinary weights,
`<path>.first.weight`, `<path>.second.weight`, `<path>.second.bias`) and the caller keeps `plan(model)`
beside it. `load_factorized` builds the dense model from the config, swaps in empty factors with
`apply_plan` and fills them strictly: weights of another plan are an error, never a silently random matrix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from nlpstd.compress.prune import FAMILIES, parameter_count
from nlpstd.errors import NlpstdError

GROUPS = ("ffn", "attention")  # what `modules` may name

# A layer's query, key and value projections, per family (prune.py's Family has no use for them).
_QKV = {
    "bert": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "electra": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "distilbert": ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
}


class Factorized(nn.Module):
    """A Linear(in, out) as Linear(in, rank, no bias) then Linear(rank, out): two plain Linears, so the
    state dict, `save_pretrained`, LoRA targeting and ONNX export see nothing unusual."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.first = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.second = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @property
    def in_features(self) -> int:  # read like a Linear's by code that sizes things from it
        return self.first.in_features

    @property
    def out_features(self) -> int:
        return self.second.out_features

    @property
    def rank(self) -> int:
        return self.first.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))  # (..., in) -> (..., rank) -> (..., out)


# -- factorizing


def factorize(model: PreTrainedModel, *, rank: int | None = None, energy: float | None = None,
              modules: Sequence[str] = ("ffn",)) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Replace the selected Linears of every layer by their truncated SVD, in place; returns the model and
    a report: per matrix (model-root path) its shape [out, in], the rank chosen, the energy that rank keeps
    and whether it was factorized (False: factors of that rank would hold more numbers than the matrix),
    and the parameter count before and after.

    Give exactly one of `rank` (the same for every matrix, clipped to min(in, out)) and `energy` (per
    matrix, the smallest rank keeping at least that share of the squared singular values, in (0, 1]).
    `modules` names groups of Linears: "ffn" (the up and down projections), "attention" (query, key,
    value and the output projection).
    """
    _check_budget(rank, energy)
    paths = _paths(model, modules)
    before = parameter_count(model)
    matrices = {}
    for path in paths:
        linear = _linear(model, path, "model")
        u, s, vh = torch.linalg.svd(linear.weight.detach().float(), full_matrices=False)  # (out, k), (k,), (k, in)
        shares = _kept_shares(s)
        chosen = min(rank, len(s)) if rank is not None else _smallest_rank(shares, energy)
        out_features, in_features = linear.weight.shape
        smaller = chosen * (in_features + out_features) < in_features * out_features
        matrices[path] = {"shape": [out_features, in_features], "rank": chosen, "energy": float(shares[chosen - 1]),
                          "factorized": smaller}
        if smaller:
            _replace(model, path, _from_svd(linear, u, s, vh, chosen))
    report = {"parameters_before": before, "parameters_after": parameter_count(model), "matrices": matrices}
    return model, report


def _kept_shares(singular: torch.Tensor) -> torch.Tensor:
    """Share of the squared singular values the first 1, 2, ... of them keep, shape (k,), float64; the last is
    exactly 1, so energy 1.0 is reached. A zero matrix keeps everything with any rank."""
    cumulative = (singular.double() ** 2).cumsum(0)
    if cumulative[-1] == 0:
        return torch.ones_like(cumulative)
    return cumulative / cumulative[-1]


def _smallest_rank(shares: torch.Tensor, energy: float) -> int:
    first_enough = int(torch.searchsorted(shares, torch.tensor([energy], dtype=shares.dtype))[0])  # shares[i] >= energy
    return min(first_enough + 1, len(shares))


def _from_svd(linear: nn.Linear, u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int) -> Factorized:
    """The rank-`rank` factors of `linear`, on its device, in its dtype, trainable as it was."""
    root = s[:rank].sqrt()  # each factor takes half of the scale
    first = root[:, None] * vh[:rank]  # (rank, in)
    second = u[:, :rank] * root  # (out, rank)
    factorized = _empty(linear, rank)
    with torch.no_grad():
        factorized.first.weight.copy_(first)
        factorized.second.weight.copy_(second)
        if linear.bias is not None:
            factorized.second.bias.copy_(linear.bias)
    return factorized


def _check_budget(rank: int | None, energy: float | None) -> None:
    if (rank is None) == (energy is None):
        raise NlpstdError(f"rank, energy: give exactly one (a rank for every matrix, or a share of each matrix's "
                          f"spectrum to keep); got rank={rank!r}, energy={energy!r}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise NlpstdError(f"rank: {rank!r} is not a rank; give a whole number >= 1")
    if energy is not None and (isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1):
        raise NlpstdError(f"energy: {energy!r} is not a share of the squared singular values in (0, 1]")


# -- which matrices


def _paths(model: PreTrainedModel, modules: Sequence[str]) -> list[str]:
    """Model-root paths of the Linears the groups name, layer by layer."""
    model_type = _model_type(model)
    family = FAMILIES[model_type]
    within = {"ffn": (family.up, family.down), "attention": (*_QKV[model_type], family.attention_out)}
    groups = _groups(modules)
    layers = model.base_model.get_submodule(family.layers)
    root = next(name for name, module in model.named_modules() if module is layers)  # e.g. bert.encoder.layer
    return [f"{root}.{i}.{name}" for i in range(len(layers)) for group in groups for name in within[group]]


def _groups(modules: Sequence[str]) -> list[str]:
    groups = [modules] if isinstance(modules, str) else list(modules)  # "ffn" alone means ("ffn",)
    unknown = [group for group in groups if group not in GROUPS]
    if not groups or unknown:
        raise NlpstdError(f"modules: {modules!r} names {'no group' if not groups else f'unknown groups {unknown}'}; "
                          f"choose from {', '.join(GROUPS)}")
    return list(dict.fromkeys(groups))


def _model_type(model: PreTrainedModel) -> str:
    if not isinstance(model, PreTrainedModel):
        raise NlpstdError(f"model: a {type(model).__name__} is not a plain transformers model; merge LoRA weights "
                          "first (nlpstd.models.build.merged)")
    model_type = getattr(model.config, "model_type", None)
    if model_type not in FAMILIES or model_type not in _QKV:
        raise NlpstdError(f"model: {model_type!r} cannot be factorized; factorization supports {', '.join(_QKV)}")
    return model_type


def _linear(model: nn.Module, path: str, field: str) -> nn.Linear:
    try:
        module = model.get_submodule(path)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Linear):
        found = "nothing" if module is None else f"a {type(module).__name__}"
        raise NlpstdError(f"{field}: {path}: expected a dense Linear, found {found} there"
                          + (" (factorized already?)" if isinstance(module, Factorized) else ""))
    return module


def _empty(linear: nn.Linear, rank: int) -> Factorized:
    """Uninitialised factors shaped for `linear` at `rank`, whose values are about to be written."""
    out_features, in_features = linear.weight.shape
    factorized = nn.utils.skip_init(Factorized, in_features, out_features, rank, bias=linear.bias is not None,
                                    device=linear.weight.device, dtype=linear.weight.dtype)
    factorized.requires_grad_(linear.weight.requires_grad)
    return factorized.train(linear.training)


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


# -- saving and loading


def plan(model: PreTrainedModel) -> dict[str, int]:
    """Each factorized matrix's model-root path and rank: what, beside the saved weights, rebuilds the model."""
    return {name: module.rank for name, module in model.named_modules() if isinstance(module, Factorized)}


def apply_plan(model: PreTrainedModel, plan: Mapping[str, int]) -> PreTrainedModel:
    """Swap the planned Linears of a freshly built model for empty factors of the planned ranks, in place,
    so that the state dict of the model the plan came from fills it exactly."""
    for path, rank in plan.items():
        linear = _linear(model, path, "plan")
        largest = min(linear.weight.shape)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= largest:
            raise NlpstdError(f"plan: {path}: rank {rank!r} is not in 1..{largest}")
        _replace(model, path, _empty(linear, rank))
    return model


def load_factorized(folder: str | Path, task_model_class: type, plan: Mapping[str, int]) -> PreTrainedModel:
    """The factorized model `save_pretrained` wrote to `folder`, in eval mode: the dense model built from its
    config by `task_model_class` (an AutoModelFor* class, or a model class), `plan` applied, and every
    weight loaded strictly. Weights that do not fit the plan are refused, naming what differs."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise NlpstdError(f"{folder}: no config.json there; save the factorized model with save_pretrained")
    config = AutoConfig.from_pretrained(folder)
    build = getattr(task_model_class, "from_config", task_model_class)  # Auto classes build with from_config
    model = apply_plan(build(config), plan)
    state = _saved_weights(folder)
    _check_fits(model, state, folder)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise NlpstdError(f"{folder}: {', '.join(missing)} missing; save the factorized model with save_pretrained")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(folder / name))
    return state


def _check_fits(model: PreTrainedModel, state: Mapping[str, torch.Tensor], folder: Path) -> None:
    """Name the weights a strict load would trip on: missing, left over, or of another shape."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    differences = {
        "missing": sorted(expected.keys() - found.keys()),
        "left over": sorted(found.keys() - expected.keys()),
        "of another shape": sorted(key for key in expected.keys() & found.keys() if expected[key] != found[key]),
    }
    if any(differences.values()):
        listed = "; ".join(f"{len(keys)} {kind} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                           for kind, keys in differences.items() if keys)
        raise NlpstdError(f"{folder}: the weights are not those of this factorization plan: {listed}; "
                          "load them with the plan saved beside them")
