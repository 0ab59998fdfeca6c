"""`compress` in the finetune stage: the fine-tuned model's least important layers and FFN neurons
removed (`nlpstd.compress.prune`), ranked on a seeded sample of validation batches, then its large
matrices factorized (`nlpstd.compress.factorize`).

Layers go first, then neurons, each ranked on the model as the step before left it: a neuron's
importance depends on the layers around it. Factorization comes last, on the matrices pruning left.
The validation split also selects the recovery's best weights, so it ranks what it will judge; the
gate's test split never sees either.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from nlpstd.compress.factorize import factorize
from nlpstd.compress.prune import Batch, ffn_importance, layer_importance, prune_ffn, prune_layers
from nlpstd.train.batching import collate

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from nlpstd.spec.schema import CompressSpec, PruneSpec

log = logging.getLogger(__name__)


def ranking_batches(features: list[dict], batches: int, batch_size: int, pad_id: int, seed: int) -> list[Batch]:
    """`batches` labelled batches of `batch_size` validation features drawn with `seed` (all of them
    when the split is smaller), each of similar lengths."""
    count = min(len(features), batches * batch_size)
    picked = sorted(random.Random(seed).sample(range(len(features)), count), key=lambda i: len(features[i]["input_ids"]))
    return [collate([features[i] for i in picked[start : start + batch_size]], pad_id) for start in range(0, count, batch_size)]


def compress(model: PreTrainedModel, spec: CompressSpec, batches: list[Batch]) -> dict[str, Any]:
    """Prune, then factorize `model` in place as `spec` asks; what changed, and the parameters before and after."""
    summary: dict[str, Any] = {"parameters_before": sum(p.numel() for p in model.parameters())}
    if spec.prune is not None:
        summary.update(_prune(model, spec.prune, batches))
    if spec.factorize is not None:
        _, report = factorize(model, rank=spec.factorize.rank, energy=spec.factorize.energy, modules=spec.factorize.modules)
        ranks = {path: row["rank"] for path, row in report["matrices"].items() if row["factorized"]}
        summary["factorized_matrices"], summary["factorized_ranks"] = len(ranks), ranks
        dense = len(report["matrices"]) - len(ranks)
        log.info(f"finetune: factorized {len(ranks)} of {len(report['matrices'])} matrices (ranks "
                 f"{min(ranks.values(), default=0)}-{max(ranks.values(), default=0)})"
                 + (f"; {dense} stay dense, as two factors of their rank would be larger" if dense else ""))
    summary["parameters_after"] = sum(p.numel() for p in model.parameters())
    log.info(f"finetune: {summary['parameters_before']:,} parameters compressed to {summary['parameters_after']:,} "
             f"({summary['parameters_after'] / summary['parameters_before']:.0%})")
    return summary


def _prune(model: PreTrainedModel, spec: PruneSpec, batches: list[Batch]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if spec.layers is not None:
        _, layers = prune_layers(model, spec.layers, layer_importance(model, batches))
        summary["removed_layers"] = layers["removed_layers"]
        log.info(f"finetune: pruned {len(layers['removed_layers'])} of {layers['num_hidden_layers']['before']} layers "
                 f"(layers {', '.join(map(str, layers['removed_layers']))})")
    if spec.ffn is not None:
        _, ffn = prune_ffn(model, 1 - spec.ffn, ffn_importance(model, batches))
        width = next(value for value in ffn.values() if isinstance(value, dict))  # intermediate_size (hidden_dim)
        summary["ffn_width"] = width
        log.info(f"finetune: pruned the feed-forward width from {width['before']} to {width['after']} neurons per layer")
    return summary
