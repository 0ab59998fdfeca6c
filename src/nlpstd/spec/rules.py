"""Checks across fields: settings that are valid alone but cannot combine. They read nothing but the
standard; the base model's own limits are checked in `base_config`, and a sweep's values (each makes
a standard, so it loads one) in `loading`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nlpstd.sizes import bucket_widths
from nlpstd.spec.messages import _failing_at
from nlpstd.spec.schema import AUGMENT_OPERATIONS, FORMATS_FOR_TASK, TASK_METRICS, Standard, _field_names


def _check_combinations(std: Standard, path: Path, lines: dict[tuple, int]) -> None:
    """Settings that are valid alone but cannot combine. (The sweep's are checked by `loading`, as they
    build a standard for every value.)"""
    fail = _failing_at(path, lines)
    if std.data.format not in FORMATS_FOR_TASK[std.task]:
        allowed = ", ".join(FORMATS_FOR_TASK[std.task])
        fail(("data", "format"), f"{std.task} reads {allowed}, not {std.data.format!r}")
    known = TASK_METRICS[std.task]
    for index, metric in enumerate(std.evaluate.metrics):
        if metric not in known:
            fail(("evaluate", "metrics", index), f"unknown metric {metric!r} for {std.task} (known: {', '.join(known)})")
    if std.evaluate.gate.metric not in known:
        fail(("evaluate", "gate", "metric"), f"unknown metric {std.evaluate.gate.metric!r} (known: {', '.join(known)})")
    if std.evaluate.gate.split == "test" and not _has_test(std):
        fail(("evaluate", "gate", "split"), "the gate reads the test split, but data.test is not set")
    _check_model(std, fail)
    for section in ("finetune", "pretrain"):
        recipe = getattr(std, section)
        if recipe.batch_size % recipe.grad_accumulation:
            fail((section, "grad_accumulation"), f"batch_size {recipe.batch_size} is not a multiple of grad_accumulation {recipe.grad_accumulation}")
    if std.data.text_pair_column and std.task == "token-classification":
        fail(("data", "text_pair_column"), "sentence pairs apply to sequence-classification only")
    _check_long_texts(std, fail)
    _check_layout(std, fail)
    _check_export(std, fail)
    _check_token_budget(std, fail)
    _check_trust(std, fail)
    _check_compression(std, fail)


def _check_long_texts(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Windows are for token classification, the side of a cut for sequence classification."""
    data = std.data
    if data.stride is not None and std.task != "token-classification":
        fail(("data", "stride"), "windows apply to token-classification; for long texts here set data.truncation_side")
    if data.stride is not None and data.stride >= data.max_length - 2:
        fail(("data", "stride"), f"windows of max_length {data.max_length} (2 special tokens) can share at most "
                                 f"{data.max_length - 3} sub-words, got {data.stride}")
    if data.truncation_side != "right" and std.task == "token-classification":
        fail(("data", "truncation_side"), "token-classification keeps every word with data.stride instead of cutting the start")
    if data.word_unit != "word" and std.task != "token-classification":
        fail(("data", "word_unit"), "the unit applies to token-classification; classification reads whole texts")


def _check_layout(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Each split comes from a file or from train, never both nor neither; layout keys fit the format."""
    data = std.data
    carved = data.split_from_train
    for split in ("validation", "test"):
        share = getattr(carved, split) if carved else None
        if share is not None and getattr(data, split) is not None:
            fail(("data", "split_from_train", split), f"data.{split} is a file already; cut it from train or read it, not both")
    if data.validation is None and (carved is None or carved.validation is None):
        fail(("data", "validation"), "required: a file, or a share of train (data.split_from_train.validation: 0.1)")
    if carved and (carved.validation or 0) + (carved.test or 0) >= 0.9:
        fail(("data", "split_from_train"), "validation and test together would leave less than a tenth of train to train on")
    _check_columns(std, fail)
    if data.label_map is not None and std.task == "token-classification" and data.format == "conll":
        fail(("data", "label_map"), "CoNLL tags are names already")
    if data.sample == "stratified" and data.max_train_examples is None and data.max_eval_examples is None:
        fail(("data", "sample"), "a sample is drawn only under a limit: set max_train_examples or max_eval_examples")


def _check_columns(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Header, column names, delimiter and several text columns are TSV/CSV (and columnar) matters."""
    data = std.data
    tabular = data.format in ("tsv", "csv")
    for key, given in (("header", not data.header), ("columns", data.columns is not None), ("delimiter", data.delimiter is not None)):
        if given and not tabular:
            fail(("data", key), f"a TSV/CSV setting; format {data.format} names its columns itself")
    if not data.header and not data.columns:
        fail(("data", "columns"), "without a header row, name the columns in order (data.columns: [label, text])")
    if not data.header and data.columns:
        named = [("text_column", name) for name in _as_list(data.text_column)] + [("label_column", data.label_column)]
        named += [("text_pair_column", data.text_pair_column)] if data.text_pair_column else []
        for key, name in named:
            if name not in data.columns:
                fail(("data", key), f"{name!r} is not one of data.columns ({', '.join(data.columns)})")
    if isinstance(data.text_column, list) and (std.task == "token-classification" or data.format in ("jsonl", "conll")):
        fail(("data", "text_column"), "several text columns are joined for sequence-classification from TSV, CSV, Parquet or datasets")


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _has_test(std: Standard) -> bool:
    """A test split, from a file or cut from train."""
    return std.data.test is not None or bool(std.data.split_from_train and std.data.split_from_train.test)


def _check_token_budget(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    budget = std.finetune.token_budget
    if budget is None:
        return
    widths = budget_widths(std)
    if budget.buckets is not None and (widths != sorted(set(widths)) or widths[0] <= 0):
        fail(("finetune", "token_budget", "buckets"), "widths must be positive and ascending")
    if widths[-1] < std.data.max_length:
        fail(("finetune", "token_budget", "buckets"), f"the widest bucket {widths[-1]} is narrower than data.max_length {std.data.max_length}")
    if budget.max_tokens < widths[-1]:
        fail(("finetune", "token_budget", "max_tokens"), f"{budget.max_tokens} does not hold one example of the widest bucket ({widths[-1]} tokens)")


def _check_trust(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Augmentations that keep the task's labels true, ensembles served whole, and explanations of one model on a split that exists."""
    augment = std.finetune.augment
    if augment is not None and augment.operations is not None:
        allowed = AUGMENT_OPERATIONS[std.task]
        for index, operation in enumerate(augment.operations):
            if operation not in allowed:
                fail(("finetune", "augment", "operations", index),
                     f"{operation!r} does not keep {std.task} labels true (this task takes: {', '.join(allowed)})")
    seeds = std.finetune.seeds
    if seeds is not None:
        if len(set(seeds)) != len(seeds):
            fail(("finetune", "seeds"), f"the seeds repeat ({seeds}): a repeated seed trains the same member twice")
        if std.export.serving.format == "safetensors":
            fail(("export", "serving", "format"), "an ensemble (finetune.seeds) is served from its ONNX graph, which holds "
                 "every member: set export.serving.format: onnx (a Hugging Face runtime would load one member)")
        if std.evaluate.explain is not None:
            fail(("evaluate", "explain"), "explanations take one model's word embeddings, and an ensemble "
                 "(finetune.seeds) has one per member: explain a single-seed run")
    explain = std.evaluate.explain
    if explain is not None and explain.split == "test" and not _has_test(std):
        fail(("evaluate", "explain", "split"), "explanations read the test split, but data.test is not set")


def _check_compression(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """A layer subset of a base, a teacher cache that can stay true, and pruning of one full-weight model."""
    keep = std.model.keep_layers
    if isinstance(keep, list) and keep != sorted(set(keep)):
        fail(("model", "keep_layers"), f"{keep} is not ascending without repeats: name each kept layer once, in order")
    if keep is not None and std.model.base is None:
        fail(("model", "keep_layers"), "keeps layers of model.base; a model built from scratch sets model.layers instead")
    distill = std.finetune.distill
    if distill is not None and distill.cache == "on" and std.finetune.augment is not None:
        fail(("finetune", "distill", "cache"), "cached teacher logits are of the texts before augmentation "
             "(finetune.augment changes them every epoch): set cache: auto or off")
    compress = std.compress
    if compress is None:
        return
    if compress.prune is None and compress.factorize is None:
        fail(("compress",), "compresses nothing: set prune and/or factorize")
    prune, factorize = compress.prune, compress.factorize
    if prune is not None and prune.ffn is None and prune.layers is None:
        fail(("compress", "prune"), "prunes nothing: set ffn (a share of the feed-forward neurons) and/or layers (a share of the layers)")
    if factorize is not None and (factorize.rank is None) == (factorize.energy is None):
        fail(("compress", "factorize"), "set exactly one of rank (every matrix) or energy (a share, per matrix)")
    if factorize is not None and std.export.serving.format == "safetensors":
        fail(("export", "serving", "format"), "a factorized model is served from ONNX: plain transformers cannot load "
             "two matrices where its config has one: set export.serving.format: onnx (or onnx-int8)")
    if std.finetune.method == "lora":
        fail(("compress",), "compression changes the merged weights' shapes, which a LoRA adapter no longer fits: "
             "compress a finetune.method: full model")
    if std.runtime.gpu.count > 1:
        fail(("compress",), f"compression runs in one process, and runtime.gpu.count {std.runtime.gpu.count} trains under "
             "torchrun: compress with one GPU (or the CPU)")
    if std.finetune.seeds is not None:
        fail(("compress",), "an ensemble (finetune.seeds) would be compressed member by member: compress a single-seed run")


def _is_field(key: str) -> bool:
    """Whether a dotted path names a key of the standard (a section or a setting)."""
    *parents, last = key.split(".")
    return last in _field_names(tuple(parents)) and (not parents or bool(_field_names(tuple(parents))))


def budget_widths(std: Standard) -> list[int]:
    """The bucket widths of a token budget: as given, or 16, 32, 64, … below data.max_length, then data.max_length."""
    budget = std.finetune.token_budget
    if budget is not None and budget.buckets:
        return list(budget.buckets)
    return bucket_widths(std.data.max_length)


def _check_export(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    formats = std.export.formats
    if "safetensors" not in formats:
        fail(("export", "formats"), "safetensors is always exported: it is the Hugging Face folder the other formats are built from")
    if len(set(formats)) != len(formats):
        fail(("export", "formats"), "a format is listed twice")
    if std.export.serving.format not in formats:
        fail(("export", "serving", "format"), f"serves {std.export.serving.format!r}, which export.formats does not list")
    if std.export.parity.split == "test" and not _has_test(std):
        fail(("export", "parity", "split"), "parity reads the test split, but data.test is not set")


def _check_model(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """A model comes from a base or a size; a from-scratch model needs pretraining and its own vocabulary."""
    model, tokenizer, pretrain = std.model, std.tokenizer, std.pretrain
    if (model.base is None) == (model.size is None):
        fail(("model",), "set exactly one of model.base (start from a checkpoint) or model.size (build from scratch)")
    if model.base is not None:
        for key in ("layers", "hidden", "heads", "ffn"):
            if getattr(model, key) is not None:
                fail(("model", key), f"model.{key} shapes a model built from scratch; it does not apply to model.base")
    else:
        shape = model.architecture()
        if shape["hidden"] % shape["heads"]:
            fail(("model", "heads"), f"hidden {shape['hidden']} is not divisible by {shape['heads']} heads")
        if not pretrain.enabled:
            fail(("model", "size"), "a model built from scratch knows nothing until pretrained: set pretrain.enabled: true")
        if tokenizer.train is None:
            fail(("model", "size"), "a model built from scratch has no base tokenizer: add tokenizer: {train: wordpiece}")
        for loc, length in ((("pretrain", "max_length"), pretrain.max_length), (("data", "max_length"), std.data.max_length)):
            if length > model.max_position:
                fail(loc, f"{length} exceeds model.max_position {model.max_position}")
    if tokenizer.from_ is not None and tokenizer.train is not None:
        fail(("tokenizer",), "set either tokenizer.from or tokenizer.train, not both")
    if tokenizer.train is not None and model.base is not None:
        fail(("tokenizer", "train"), "a new vocabulary does not fit the base model's embeddings: train a tokenizer with model.size")
    if pretrain.enabled:
        corpus = pretrain.corpus
        if corpus is None:
            fail(("pretrain", "corpus"), "pretraining needs a corpus: {files: [...], held_out: [...]}")
        elif not corpus.files and not corpus.training_text:
            fail(("pretrain", "corpus", "files"), "pretraining needs text: list corpus files, or set training_text: true")
        elif bool(corpus.held_out) == (corpus.held_out_fraction is not None):
            fail(("pretrain", "corpus"), "set exactly one of corpus.held_out (files) or corpus.held_out_fraction")
