"""`compress` in the finetune stage: the fine-tuned model's least important layers and FFN neurons
removed (`nlpstd.compress.prune`), ranked on a seeded sample of validation batches, then its large
matrices factorized (`nlpstd.compress.factorize`).

Layers go first, then neurons, each ranked on the model as the step before left it: a neuron's
importance depends on the layers around it. Factorization comes last, on the matrices pruning left.
The validation split also selects the recovery's best weights, so it ranks what it will judge; the
gate's test split never sees either. The recovery then trains the compressed model briefly, and
its run continues the fine-tuning's on the loss curve and in the stage's figures.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpstd.compress.factorize import factorize
from nlpstd.compress.prune import Batch, ffn_importance, layer_importance, parameter_count, prune_ffn, prune_layers
from nlpstd.stages.trained import Trained
from nlpstd.train.batching import collate
from nlpstd.train.config import LoopConfig
from nlpstd.train.loop import LoopState, TrainResult

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
    summary: dict[str, Any] = {"parameters_before": parameter_count(model)}
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
    summary["parameters_after"] = parameter_count(model)
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


def recovered(fit: Callable[..., Trained], model: PreTrainedModel, shrink: CompressSpec, loop: LoopConfig, seed: int,
               work: Path, identity_key: str, score: float) -> Trained:
    """The compressed `model` fine-tuned again for `compress.recovery.steps` (in `work`, resumable), or as
    it is (scoring `score`) with no recovery steps."""
    if not shrink.recovery.steps:
        return Trained(model, TrainResult(LoopState(identity=identity_key, best_score=score), 0, None), None, 0, 0)
    recovery = dataclasses.replace(loop, max_steps=shrink.recovery.steps, lr=shrink.recovery.lr or loop.lr, early_stopping=None)
    return fit(seed, work, identity_key, None, None, start=model, schedule=recovery)


def after_compression(record: dict[str, Any], recovery: TrainResult) -> TrainResult:
    """Fine-tuning and recovery as one run: steps, time and FLOPs summed, the recovery's steps after
    the fine-tuning's on the loss curve, the recovery's best (the weights kept)."""
    offset, state = record["steps"], recovery.state
    shifted = [{**row, "step": row["step"] + offset} for row in state.history]
    merged_state = dataclasses.replace(state, step=offset + state.step, train_seconds=record["train_seconds"] + state.train_seconds,
                                       best_step=None if state.best_step is None else offset + state.best_step,
                                       train_flops=record["train_flops"] + state.train_flops, history=record["history"] + shifted)
    if recovery.resumed_from is not None:
        resumed = offset + recovery.resumed_from
    else:  # a fine-tuning an earlier run finished counts as resumed from its end
        resumed = offset if record["kept"] else record["resumed_from"]
    return TrainResult(state=merged_state, total_steps=record["total_steps"] + recovery.total_steps, resumed_from=resumed)


def compression_figures(record: dict[str, Any], compression: dict[str, Any], compressed_score: float, recovered: Trained,
                         metric: str) -> dict[str, Any]:
    """What compression took and what recovery gave back: the scores before compression, right after
    it and after recovery (`best_validation_*`), and the parameters before and after."""
    figures = {f"dense_best_validation_{metric}": record["best_score"], f"compressed_validation_{metric}": compressed_score,
               "dense_parameters": compression["parameters_before"], "parameters": compression["parameters_after"],
               "trainable_parameters": compression["parameters_after"], "recovery_steps": recovered.result.state.step,
               "pruned_layers": len(compression.get("removed_layers", [])),
               "factorized_matrices": compression.get("factorized_matrices", 0)}
    if "ffn_width" in compression:
        figures["ffn_width"] = compression["ffn_width"]["after"]
    return figures
