"""Stage 3, finetune: train the task head (and the encoder, fully or through LoRA) on prepared data.

Rerunning after an interruption resumes from the last checkpoint in the stage's partial folder.

With `finetune.seeds` the stage trains an ensemble: one member per seed, one after another, each
exactly as a run of that seed alone would train it (head, batch order, augmentation and dropout
drawn from the seed), in its own work folder `members/<seed>/`. A rerun keeps the members an
interrupted run finished and resumes the one it cut off. `model/` is then the first member's folder
with the others under `model/members/<seed>/` (`nlpstd.models.ensemble`), and the validation score
is the ensemble's own: the members' logits averaged.

With `finetune.distill` the loss also pulls towards a teacher's softened logits (`nlpstd.train.distill`,
`stages.teacher`); the teacher's weights are part of the run's identity, so a checkpoint distilled
from another teacher is never resumed. With `compress` the fine-tuned model is kept aside (`dense/`,
like an ensemble member), pruned and/or factorized (`stages.compression`), and trained briefly again
to recover; a rerun keeps the finished model and resumes the recovery.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd import runtime
from nlpstd.compress.factorize import plan as factorization_plan
from nlpstd.data.augment import Augmenter, in_words
from nlpstd.data.encode import encode_data
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score
from nlpstd.models import ensemble
from nlpstd.models.build import (
    add_factorization,
    add_lora,
    build_model,
    count_parameters,
    load_checked,
    load_model,
    load_tokenizer,
    merged,
    resolve_base,
    write_model_info,
)
from nlpstd.spec import Standard, budget_widths, with_changes
from nlpstd.spec.schema import AUGMENT_OPERATIONS, OWN_TEACHER
from nlpstd.stages import identity
from nlpstd.stages.compression import after_compression, compress, compression_figures, ranking_batches, recovered
from nlpstd.stages.context import begin
from nlpstd.stages.ensembling import assemble, ensemble_figures, ensemble_result
from nlpstd.stages.output import staged
from nlpstd.stages.teacher import Teacher, load_teacher, teacher_figures
from nlpstd.stages.trained import Trained, kept_or_trained
from nlpstd.stages.training import log_training, write_training
from nlpstd.tracking import Tracker
from nlpstd.train.adversarial import adversarial
from nlpstd.train.batching import Augmented, Supervised
from nlpstd.train.config import LoopConfig, Selection
from nlpstd.train.loop import micro_batch, train

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

DENSE = "dense"  # with compress: the work folder of the model before compression
TEACHER = "teacher"  # with finetune.distill.teacher: self, the teacher's stage folder


def run(std: Standard, data_dir: Path, out_dir: Path, tracker: Tracker | None = None, base: str | Path | None = None,
        work_dir: Path | None = None, on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
        allow_other_inputs: bool = False) -> dict:
    """Writes `model/` (a Hugging Face folder, LoRA merged; an ensemble's with `finetune.seeds`), `adapter/`
    (LoRA only; an ensemble's first member's), `history.json`, `loss.png` (an ensemble's first member's),
    `stage.json` and `metrics.json`. `base` overrides the standard's base (e.g. a pretrained encoder; with
    pretraining on, it must be this recipe's pretrain output); checkpoints go to `work_dir` when given (see
    `staged`), else beside `out_dir`. `on_evaluation` hears each validation's scores (see `train`); of an
    ensemble, its first member's, as the tracker sees that member's curves alone."""
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

    # -- train: model selection and early stopping read the gate's metric on validation
    metric = std.evaluate.gate.metric
    recipe, loop = std.finetune, LoopConfig.of(std.finetune)
    budget = (recipe.token_budget.max_tokens, budget_widths(std)) if recipe.token_budget else None
    batching = {"micro_batch": micro_batch(loop, "finetune"), "group_by_length": recipe.group_by_length,
                "pad_id": tokenizer.pad_token_id, "budget": budget}

    def evaluate(current) -> dict[str, float]:
        scored = score(current, val_set, std.task, data.labels, batch_size=std.finetune.eval_batch_size,
                       device=device, precision=precision, pad_id=tokenizer.pad_token_id, desc="validate",
                       iob_repair=std.evaluate.iob_repair)
        return headline(scored.metrics)

    teacher, teacher_score = None, None  # with finetune.distill: loaded (or trained) in the stage's work folder
    passes = loop.max_steps * recipe.batch_size / len(train_set.features) if loop.max_steps else loop.epochs

    def fit(seed: int, work: Path, identity_key: str, heard_by: Tracker | None,
            hear: Callable[[int, dict[str, float]], None] | None, start: PreTrainedModel | None = None,
            schedule: LoopConfig = loop) -> Trained:
        """A model of `seed` trained with checkpoints in `work`: the seed draws its head, then its batch
        order, augmentation and dropout. `start` trains that model instead of a new one (the recovery
        after compression), on `schedule`."""
        runtime.seed_everything(seed)
        model = start if start is not None else _new_model(std, source, data.labels, teacher)
        total_params, trainable_params = count_parameters(model)
        what = "recovery of the compressed model" if start is not None else f"{recipe.method} on {source}"
        log.info(f"finetune: {what} ({total_params:,} parameters, {trainable_params:,} trainable) on {device}, {precision}")
        augmenter = _augmenter(std, tokenizer, data.splits["train"], seed)
        if augmenter is None:
            objective = Supervised(train_set.features, seed=seed, **batching)
        else:  # each epoch trains on its own augmented records, encoded afresh
            objective = Augmented(lambda epoch: encode_data(tokenizer, std.data, std.task, augmenter(epoch), data.labels).features,
                                  seed=seed, **batching)
        if teacher is not None:
            objective = teacher.objective(model, objective, features=train_set.features, passes=passes,
                                          augmenting=augmenter is not None, pad_id=tokenizer.pad_token_id, device=device,
                                          batch_size=recipe.eval_batch_size)
        objective = adversarial(objective, recipe.adversarial)  # the same objective when finetune.adversarial is unset
        result = train(model, objective, evaluate, schedule, ctx.engine, Selection(metric), work_dir=work, identity=identity_key,
                       tracker=heard_by, desc="finetune", on_evaluation=hear)
        return Trained(model, result, augmenter, total_params, trainable_params)

    def describe(folder: Path) -> None:
        """The tokenizer and nlpstd.json beside the weights: what `predict` needs to read texts as training did."""
        tokenizer.save_pretrained(folder)
        write_model_info(folder, task=std.task, max_length=std.data.max_length, standard=std.name,
                         spec_hash=std.spec_hash(), fingerprint=data.fingerprint, stride=std.data.stride,
                         truncation_side=std.data.truncation_side, word_unit=std.data.word_unit)

    shrink = std.compress
    with staged(out_dir, keep_on_error=True, work_dir=work_dir) as tmp:
        if recipe.distill:
            teacher = _teacher(std, data_dir, tmp / TEACHER, base, allow_other_inputs, tokenizer)
            teacher_score = evaluate(teacher.model.to(device))[metric]
        run_identity = f"{std.spec_hash()}:{data.fingerprint}" + (f":teacher={teacher.digest}" if teacher else "")
        if recipe.seeds:  # an ensemble: one member after another, each in its own work folder
            seeds = list(recipe.seeds)
            records = [kept_or_trained(fit, seed, tmp / ensemble.MEMBERS / str(seed), f"{run_identity}:seed={seed}",
                               f"member {number}/{len(seeds)} (seed {seed})", metric, recipe.method == "lora",
                               tracker if number == 1 else None, on_evaluation if number == 1 else None)
                       for number, seed in enumerate(seeds, 1)]
        elif shrink is not None:  # fine-tuned as usual (kept aside), compressed, then trained again briefly
            record = kept_or_trained(fit, std.seed, tmp / DENSE, run_identity, "the model before compression", metric, False,
                             tracker, on_evaluation)
            model = load_checked(tmp / DENSE / "model", std.task).to(device)
            ranking = ranking_batches(val_set.features, shrink.prune.importance_batches if shrink.prune else 0,
                                      recipe.eval_batch_size, tokenizer.pad_token_id, std.seed)
            compression, compressed_score = compress(model, shrink, ranking), evaluate(model)[metric]
            log.info(f"finetune: validation {metric} {record['best_score']:.4f} before compression, {compressed_score:.4f} after")
            trained = recovered(fit, model, shrink, loop, std.seed, tmp, f"{run_identity}:compressed", compressed_score)
        else:
            trained = fit(std.seed, tmp, run_identity, tracker, on_evaluation)
        if not runtime.is_main():  # the main process writes the model
            return {}

        # -- outputs: a self-describing Hugging Face folder; LoRA also as its adapter
        if recipe.seeds:  # the first member's folder with the others beside it, scored as one: their logits averaged
            assemble(tmp, seeds, recipe.method == "lora", describe)
            scored = evaluate(load_model(tmp / "model", std.task).to(device))[metric]
            result, figures = ensemble_result(records, scored), ensemble_figures(records, metric, scored)
        else:
            if recipe.method == "lora":
                trained.model.save_pretrained(tmp / "adapter")
            final = merged(trained.model).to("cpu")
            final.save_pretrained(tmp / "model")
            describe(tmp / "model")
            if shrink is not None and shrink.factorize is not None:  # plain transformers builds dense matrices
                add_factorization(tmp / "model", factorization_plan(final))
            result = trained.result
            figures = {f"best_validation_{metric}": result.state.best_score, "parameters": trained.parameters,
                       "trainable_parameters": trained.trainable_parameters, **trained.augment_counts()}
            if shrink is not None:
                result = after_compression(record, trained.result)
                figures = {**figures, **compression_figures(record, compression, compressed_score, trained, metric)}
        identity.write(tmp, "finetune", std, data.fingerprint)
        figures = {**figures, **teacher_figures(teacher, teacher_score, metric)}
        metrics = write_training(tmp, result, batch_size=recipe.batch_size, started=ctx.started, device=device, precision=precision,
                                 extra={**figures, "train_truncated": train_set.truncated})
        for work in (tmp / ensemble.MEMBERS, tmp / DENSE, tmp / TEACHER):  # work folders, once all they fed is written
            shutil.rmtree(work, ignore_errors=True)

    log_training(tracker, out_dir, metrics)
    state = result.state
    if recipe.seeds:
        log.info(f"finetune: ensemble of {len(seeds)} (seeds {', '.join(map(str, seeds))}): validation {metric} {state.best_score:.4f}; "
                 f"members {metrics[f'members_mean_best_validation_{metric}']:.4f} ± {metrics[f'members_spread_best_validation_{metric}']:.4f}")
    else:
        log.info(f"finetune: best validation {metric} {state.best_score:.4f} at step {state.best_step} of {state.step}")
    return metrics


def _new_model(std: Standard, source: str, labels: list[str], teacher: Teacher | None) -> PreTrainedModel:
    """A task head on the base (of model.keep_layers), or a copy of the teacher (finetune.distill.init: teacher)."""
    if teacher is None or not teacher.initializes:
        return build_model(std.task, source, labels, std.finetune, std.model.keep_layers)
    student = teacher.student(std.model.keep_layers)
    return add_lora(student, std.task, std.finetune.lora) if std.finetune.method == "lora" else student


def _teacher(std: Standard, data_dir: Path, folder: Path, base: str | Path | None, allow_other_inputs: bool,
             tokenizer: PreTrainedTokenizerFast) -> Teacher:
    """The teacher `finetune.distill` names; for `self`, the standard's own model, trained first: this
    stage run for the standard without distillation, layer subset or compression, into `folder` (a
    whole stage folder; kept by a rerun, and resumed like any stage when cut off)."""
    spec = std.finetune.distill
    assert spec is not None
    if spec.teacher != OWN_TEACHER:
        return load_teacher(spec, std.task, tokenizer)
    if not (folder / "metrics.json").is_file():
        log.info("finetune: training the teacher first: this standard's own model, without distill, keep_layers or compress")
        own = with_changes(std, {"finetune.distill": None, "model.keep_layers": None, "compress": None})
        run(own, data_dir, folder, base=base, allow_other_inputs=allow_other_inputs)
    else:
        log.info("finetune: the teacher was trained by an earlier run: kept")
    return load_teacher(spec, std.task, tokenizer, str(folder / "model"))


def _augmenter(std: Standard, tokenizer: PreTrainedTokenizerFast, records: list[dict], seed: int) -> Augmenter | None:
    """The training split's augmentation per epoch, drawn from `seed` (`finetune.augment`; None when unset)."""
    spec = std.finetune.augment
    if spec is None:
        return None
    operations = tuple(spec.operations or AUGMENT_OPERATIONS[std.task])
    if std.task == "token-classification":
        records = in_words(tokenizer, records, std.data.word_unit)
    log.info(f"finetune: augmenting {spec.probability:.0%} of {len(records):,} training examples per epoch "
             f"({', '.join(operations)})")
    return Augmenter(records, operations, spec.probability, spec.rate, seed)
