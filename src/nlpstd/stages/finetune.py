"""Stage 3, finetune: train the task head (and the encoder, fully or through LoRA) on prepared data.

Rerunning after an interruption resumes from the last checkpoint in the stage's partial folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd import runtime
from nlpstd.data.augment import Augmenter, in_words
from nlpstd.data.encode import encode_data
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score
from nlpstd.models.build import build_model, count_parameters, load_tokenizer, merged, resolve_base, write_model_info
from nlpstd.spec import Standard, budget_widths
from nlpstd.spec.schema import AUGMENT_OPERATIONS
from nlpstd.stages import identity
from nlpstd.stages.context import begin
from nlpstd.stages.output import staged
from nlpstd.stages.training import log_training, write_training
from nlpstd.tracking import Tracker
from nlpstd.train.adversarial import adversarial
from nlpstd.train.batching import Augmented, Supervised
from nlpstd.train.config import LoopConfig, Selection
from nlpstd.train.loop import micro_batch, train

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)


def run(std: Standard, data_dir: Path, out_dir: Path, tracker: Tracker | None = None, base: str | Path | None = None,
        work_dir: Path | None = None, on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
        allow_other_inputs: bool = False) -> dict:
    """Writes `model/` (a Hugging Face folder, LoRA merged), `adapter/` (LoRA only), `history.json`,
    `loss.png`, `stage.json` and `metrics.json`. `base` overrides the standard's base (e.g. a pretrained
    encoder; with pretraining on, it must be this recipe's pretrain output); checkpoints go to `work_dir`
    when given (see `staged`), else beside `out_dir`. `on_evaluation` hears each validation's scores (see `train`)."""
    # -- inputs: this recipe's prepared data (and pretrained encoder)
    pretrained = {"pretrain": Path(base).parent} if base and std.pretrain.enabled else {}
    ctx = begin(std, data_dir, tracker, pretrained, allow_other_inputs)
    tracker, data, device, precision = ctx.tracker, ctx.data, ctx.device, ctx.precision
    source = str(base) if base else resolve_base(std.model.base)
    tokenizer = load_tokenizer(source)

    # -- features
    train_set = encode_data(tokenizer, std.data, std.task, data.splits["train"], data.labels)
    val_set = encode_data(tokenizer, std.data, std.task, data.splits["validation"], data.labels)
    for name, encoded in (("train", train_set), ("validation", val_set)):
        if encoded.truncated:
            unit = "words" if std.task == "token-classification" else "sub-words"
            log.info(f"finetune: {encoded.truncated} {name} examples exceed max_length {std.data.max_length} ({encoded.dropped} {unit} cut)")
        if encoded.windowed:
            log.info(f"finetune: {encoded.windowed} {name} examples exceed max_length {std.data.max_length}: split into "
                     f"windows sharing {std.data.stride} sub-words ({encoded.kept} words kept that truncation would cut)")

    # -- model
    model = build_model(std.task, source, data.labels, std.finetune)
    total_params, trainable_params = count_parameters(model)
    log.info(f"finetune: {std.finetune.method} on {source} ({total_params:,} parameters, {trainable_params:,} trainable) on {device}, {precision}")

    # -- train: model selection and early stopping read the gate's metric on validation
    metric = std.evaluate.gate.metric

    def evaluate(current) -> dict[str, float]:
        scored = score(current, val_set, std.task, data.labels, batch_size=std.finetune.eval_batch_size,
                       device=device, precision=precision, pad_id=tokenizer.pad_token_id, desc="validate",
                       iob_repair=std.evaluate.iob_repair)
        return headline(scored.metrics)

    recipe, loop = std.finetune, LoopConfig.of(std.finetune)
    budget = (recipe.token_budget.max_tokens, budget_widths(std)) if recipe.token_budget else None
    batching = {"micro_batch": micro_batch(loop, "finetune"), "seed": std.seed, "group_by_length": recipe.group_by_length,
                "pad_id": tokenizer.pad_token_id, "budget": budget}
    augmenter = _augmenter(std, tokenizer, data.splits["train"])
    if augmenter is None:
        objective = Supervised(train_set.features, **batching)
    else:  # each epoch trains on its own augmented records, encoded afresh
        objective = Augmented(lambda epoch: encode_data(tokenizer, std.data, std.task, augmenter(epoch), data.labels).features,
                              **batching)
    objective = adversarial(objective, recipe.adversarial)  # the same objective when finetune.adversarial is unset
    with staged(out_dir, keep_on_error=True, work_dir=work_dir) as tmp:
        result = train(model, objective, evaluate, loop, ctx.engine, Selection(metric),
                       work_dir=tmp, identity=f"{std.spec_hash()}:{data.fingerprint}", tracker=tracker,
                       desc="finetune", on_evaluation=on_evaluation)
        if not runtime.is_main():  # the main process writes the model
            return {}

        # -- outputs: a self-describing Hugging Face folder; LoRA also as its adapter
        if std.finetune.method == "lora":
            model.save_pretrained(tmp / "adapter")
        final = merged(model).to("cpu")
        final.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        write_model_info(tmp / "model", task=std.task, max_length=std.data.max_length, standard=std.name,
                         spec_hash=std.spec_hash(), fingerprint=data.fingerprint, stride=std.data.stride,
                         truncation_side=std.data.truncation_side, word_unit=std.data.word_unit)
        identity.write(tmp, "finetune", std, data.fingerprint)
        metrics = write_training(tmp, result, batch_size=recipe.batch_size, started=ctx.started, device=device, precision=precision, extra={
            f"best_validation_{metric}": result.state.best_score,
            "parameters": total_params,
            "trainable_parameters": trainable_params,
            "train_truncated": train_set.truncated,
            **(augmenter.counts(range(result.state.epoch + 1)) if augmenter else {}),  # the epochs training began
        })

    log_training(tracker, out_dir, metrics)
    state = result.state
    log.info(f"finetune: best validation {metric} {state.best_score:.4f} at step {state.best_step} of {state.step}")
    return metrics


def _augmenter(std: Standard, tokenizer: PreTrainedTokenizerFast, records: list[dict]) -> Augmenter | None:
    """The training split's augmentation per epoch (`finetune.augment`; None when unset)."""
    spec = std.finetune.augment
    if spec is None:
        return None
    operations = tuple(spec.operations or AUGMENT_OPERATIONS[std.task])
    if std.task == "token-classification":
        records = in_words(tokenizer, records, std.data.word_unit)
    log.info(f"finetune: augmenting {spec.probability:.0%} of {len(records):,} training examples per epoch "
             f"({', '.join(operations)})")
    return Augmenter(records, operations, spec.probability, spec.rate, std.seed)
