"""The standard: one YAML file that pins everything that decides a model.

Loading is strict: unknown keys are errors (with the closest valid key suggested), every
error names the file, the line and the key path, `${VAR:-default}` expands from the
environment, and relative paths resolve against the standard's own folder. Checks across
fields run once, here, before any data or weights are read.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import importlib
import importlib.util
import json
import math
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nlpstd.errors import NlpstdError, StandardError
from nlpstd import s3uri
from nlpstd.models.bases import PACKAGED_BASES
from nlpstd.spans import IobRepair

Task = Literal["token-classification", "sequence-classification"]


def _resolve_path(value: str, info: ValidationInfo, object_key: bool = True) -> str:
    """Relative paths are relative to the standard's folder, not to the working directory. An s3://
    URI must be well formed (and, for a file, name an object) before any request is made."""
    if not value:
        raise ValueError("must not be empty")
    if "://" in value and not value.startswith("s3://"):
        # any other scheme would be taken for a relative folder named `gs:` and fail much later
        raise ValueError("s3:// is the only remote scheme; other paths are local files")
    if value.startswith("s3://"):
        why = s3uri.problem(value, object_key)
        if why:
            raise ValueError(why)
        return value
    if os.path.isabs(value):
        return value
    base_dir = (info.context or {}).get("base_dir", ".")
    return os.path.normpath(os.path.join(base_dir, value))


PathStr = Annotated[str, AfterValidator(_resolve_path)]
FolderStr = Annotated[str, AfterValidator(lambda value, info: _resolve_path(value, info, object_key=False))]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_scalar(cls, value: Any, info: ValidationInfo) -> Any:
        """No setting is infinite: `lr: .inf` would train to a NaN loss and exit 0 (checked here as well
        as by allow_inf_nan, so that a field of several types reports it once, at the field). And YAML
        reads a bare on, off, yes, no, true or false as a boolean, which pydantic would quietly take as
        1 or 0 for a number: say so instead, and how to write the word."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        if not isinstance(value, bool) or info.field_name is None:
            return value
        kinds = _scalar_kinds(cls.model_fields[info.field_name].annotation)
        if bool in kinds:
            return value
        if int in kinds or float in kinds:
            raise ValueError("expected a number, got a yes/no value")
        if str in kinds:
            raise ValueError("YAML reads a bare on, off, yes, no, true or false as a yes/no value; quote the word to mean it")
        return value


def _scalar_kinds(annotation: Any) -> set[type]:
    """The scalar types a field's annotation admits (Literal values count as their type; Any as all)."""
    if annotation is Any:
        return {bool, int, float, str}
    if isinstance(annotation, type):
        return {annotation} if annotation in (bool, int, float, str) else set()
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return {type(arg) for arg in typing.get_args(annotation)}
    if origin is Annotated:
        return _scalar_kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_scalar_kinds(arg) for arg in typing.get_args(annotation)))
    return set()


# Bounds of counts. A count past these is a typo, not a setting: long after loading it would overflow
# a C integer in torch or numpy (a thread count, a seed, a tensor of step numbers) or run for ever.
MAX_COUNT = 2**31 - 1  # the largest signed 32-bit int: steps, epochs, example counts, intervals
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit
MAX_BATCH = 2**20  # examples per step; far beyond any accelerator's memory
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]

# A name becomes an MLflow experiment and registered-model name, the pipeline `nlpstd-<name>`, and
# Kubernetes resource names (an InferenceService, a Katib experiment). Kubernetes labels and most
# resource names hold at most 63 characters; a longer name would be cut, and two cut names can clash.
MAX_NAME = 63
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Name = Annotated[str, Field(pattern=_NAME, max_length=MAX_NAME)]


def _known_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r} (e.g. utf-8, latin-1, cp1252)") from None
    return value


Encoding = Annotated[str, AfterValidator(_known_encoding)]


class DataFile(_Section):
    """A data file; a plain string in YAML is shorthand for `{path: ...}`."""

    path: PathStr = Field(description="Local path (relative to the standard) or s3:// URI.")
    encoding: Encoding | None = Field(None, description="Text encoding; defaults to data.encoding.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


def _one_group_pattern(value: str) -> str:
    """A regular expression with a group to keep, checked here rather than on the first token."""
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    if pattern.groups < 1:
        raise ValueError("needs a group, (...), around the part of the token that is the word")
    return value


class DataChecks(_Section):
    """Limits on what data-prep's report finds; a limit set to null is reported but not checked."""

    max_overlap: float | None = Field(0.01, ge=0, le=1, description="Largest share of a validation or test split "
                                      "that may also occur in train (whitespace- and case-insensitive).")
    max_duplicates: float | None = Field(None, ge=0, le=1, description="Largest share of a split that may repeat "
                                         "an earlier example of the same split (default: not checked).")
    max_unknown_share: float | None = Field(0.05, ge=0, le=1, description="Largest share of a split's sub-words that "
                                            "may be the tokenizer's unknown token; above it the vocabulary does not fit "
                                            "the language (measured by data-prep when the tokenizer exists).")
    max_unaligned_spans: float | None = Field(0.0, ge=0, le=1, description="Largest share of a split's gold spans "
                                              "(JSON Lines) that may start or end inside a word: those are tagged on "
                                              "whole words, not as annotated (measured by data-prep).")
    on_violation: Literal["warn", "fail"] = Field("warn", description="warn: one line, and a note in the report; "
                                                  "fail: stop in data-prep, before any training.")


class DataSpec(_Section):
    format: Literal["conll", "tsv", "csv", "jsonl"] = Field(description="Reader for all splits.")
    train: DataFile
    validation: DataFile
    test: DataFile | None = None
    encoding: Encoding = Field("utf-8", description="Default encoding of every file.")
    max_length: int = Field(128, ge=8, le=8192, description="Sub-word tokens per example, specials included.")
    max_train_examples: int | None = Field(None, gt=0, le=MAX_COUNT, description="Keep the first N training examples (quick runs).")
    max_eval_examples: int | None = Field(None, gt=0, le=MAX_COUNT, description="Keep the first N validation/test examples.")
    text_column: str = Field("text", description="TSV/CSV column or JSONL field holding the text.")
    text_pair_column: str | None = Field(None, description="Optional second text (sentence pairs).")
    label_column: str = Field("label", description="TSV/CSV column or JSONL field holding the label.")
    quoting: bool | None = Field(None, description="CSV quoting rules; default: on for csv, off for tsv.")
    entities_field: str = Field("entities", description="JSONL field with character spans [{start, end, label}].")
    span_end: Literal["exclusive", "inclusive"] = Field("exclusive", description="Whether a span's end offset is part of it.")
    token_pattern: Annotated[str, AfterValidator(_one_group_pattern)] | None = Field(
        None, description="CoNLL: a regular expression every token must match in full; its first group is the word "
                          "(e.g. '(.+?)[0-9]+' for Weibo's `科0`, a character followed by its position in a word).")
    word_unit: Literal["word", "character"] = Field(
        "word", description="Token classification: the units raw text is cut into, each carrying a tag: `word` "
                            "(spaces and punctuation; each CJK ideograph alone) or `character` (every visible character: "
                            "how character-annotated sets such as Weibo are tagged). Span data (jsonl) is cut so for "
                            "training and scoring; CoNLL files give their words, and `predict` cuts text to match them.")
    label_subwords: Literal["first", "all"] = Field("first", description="Which sub-words of a word carry its label.")
    stride: int | None = Field(None, gt=0, le=8192, description="Token classification: split an example longer than max_length into "
                               "windows sharing this many sub-words, rather than cut it (each word predicted where most central).")
    truncation_side: Literal["right", "left"] = Field("right", description="Sequence classification: cut a long text's end "
                                                       "(right) or its start (left).")
    checks: DataChecks = Field(default_factory=DataChecks, description="Limits on split overlap, duplicates, unknown "
                               "sub-words and unaligned spans (data report).")

    def files(self) -> dict[str, DataFile]:
        """The splits that are set, by name."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {split: f for split, f in named.items() if f is not None}

    def encoding_of(self, split: str) -> str:
        return self.files()[split].encoding or self.encoding


class TokenizerSpec(_Section):
    """Either `{from: base}` (the default) or `{train: wordpiece, vocab_size, lowercase}` on the corpus."""

    from_: Literal["base"] | None = Field(None, alias="from", description="Reuse the base model's tokenizer.")
    train: Literal["wordpiece"] | None = Field(None, description="Train a new tokenizer on the pretraining corpus.")
    vocab_size: int = Field(16000, ge=200, le=250_000, description="Vocabulary of a trained tokenizer.")
    lowercase: bool = Field(True, description="Lowercase (and strip accents) before a trained tokenizer splits.")
    min_frequency: int = Field(2, ge=1, le=MAX_COUNT, description="A trained tokenizer keeps pieces seen at least this often.")

    @model_validator(mode="before")
    @classmethod
    def _default_from_base(cls, value: Any) -> Any:
        if isinstance(value, dict) and "from" not in value and "train" not in value:
            return {**value, "from": "base"}
        return value


def _resolve_model(value: str, info: ValidationInfo) -> str:
    """`./x` and `../x` are folders next to the standard; anything else is a name or a hub id."""
    return _resolve_path(value, info) if value.startswith((".", "/")) else value


# Miniature BERT shapes (layers, hidden); heads = hidden / 64 and FFN = 4 x hidden unless overridden.
SIZES: dict[str, tuple[int, int]] = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}


class ModelSpec(_Section):
    """Either `base` (a checkpoint to start from) or `size` (a BERT built from scratch, key by key overridable)."""

    base: Annotated[str, AfterValidator(_resolve_model)] | None = Field(
        None, description="`minilm-l6`, a local Hugging Face folder (`./path`), or a hub id."
    )
    size: Literal["tiny", "mini", "small", "medium", "base"] | None = Field(None, description="Build a BERT of this size from scratch.")
    layers: int | None = Field(None, ge=1, le=48, description="Override the size's number of layers.")
    hidden: int | None = Field(None, ge=16, le=4096, description="Override the size's hidden width.")
    heads: int | None = Field(None, ge=1, le=64, description="Override the attention heads (default hidden / 64).")
    ffn: int | None = Field(None, ge=16, le=65536, description="Override the feed-forward width (default 4 x hidden).")
    max_position: int = Field(512, ge=8, le=8192, description="Longest sequence a from-scratch model accepts.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Hidden and attention dropout of a from-scratch model.")

    def architecture(self) -> dict[str, int]:
        """The from-scratch shape after overrides."""
        layers, hidden = SIZES[self.size or "tiny"]
        layers, hidden = self.layers or layers, self.hidden or hidden
        return {"layers": layers, "hidden": hidden, "heads": self.heads or max(1, hidden // 64), "ffn": self.ffn or 4 * hidden}


CorpusEncoding = Annotated[str, AfterValidator(lambda v: v if v == "auto" else _known_encoding(v))]


class CorpusFile(_Section):
    """A corpus file or glob; a plain string in YAML is shorthand for `{path: ...}`."""

    path: PathStr = Field(description="File or glob (`corpus/*.txt`), relative to the standard.")
    encoding: CorpusEncoding | None = Field(
        None, description="auto (UTF-8, else Latin-1) or a codec name; defaults to corpus.encoding."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class CorpusSpec(_Section):
    files: list[CorpusFile] = Field(default_factory=list, description="Training text: files or globs.")
    training_text: bool = Field(False, description="Also pretrain on the text of the task's training examples (no "
                                "labels): the words a new vocabulary must hold, when there is no other corpus.")
    encoding: CorpusEncoding = Field(
        "auto", description="auto: UTF-8, falling back to Latin-1 per file (and saying so)."
    )
    held_out: list[CorpusFile] = Field(default_factory=list, description="Files that measure MLM loss and perplexity.")
    held_out_fraction: float | None = Field(None, gt=0, le=0.5, description="Or hold out this share of the documents.")
    cross_file_blocks: bool = Field(False, description="Let a block of tokens run on from one file into the next.")


class LoopRecipe(_Section):
    """What the shared training loop reads; fine-tuning and pretraining each set their own defaults."""

    epochs: int = Field(3, gt=0, le=MAX_COUNT, description="Passes over the training data (max_steps wins when set).")
    max_steps: int | None = Field(None, gt=0, le=MAX_COUNT, description="Stop after this many optimizer steps.")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with a linear warm-up.")
    schedule: Literal["linear", "cosine"] = Field("linear", description="Decay after the warm-up.")
    batch_size: int = Field(32, gt=0, le=MAX_BATCH, description="Examples per optimizer step.")
    grad_accumulation: int = Field(1, gt=0, le=MAX_BATCH, description="Split each step's batch into this many forward/backward passes.")
    eval_batch_size: int = Field(64, gt=0, le=MAX_BATCH)
    grad_clip: float | None = Field(1.0, gt=0, description="Max global gradient norm; null disables.")
    early_stopping: int | None = Field(None, gt=0, le=MAX_COUNT, description="Stop after N evaluations without improvement.")
    eval_every: int | None = Field(None, gt=0, le=MAX_COUNT, description="Evaluate every N steps; default once per epoch.")
    checkpoint_every: int = Field(200, gt=0, le=MAX_COUNT, description="Write a resumable checkpoint every N steps.")
    log_every: int = Field(10, gt=0, le=MAX_COUNT, description="Average the loss over N steps for the log and the curve.")


class PretrainSpec(LoopRecipe):
    enabled: bool = Field(False, description="Run masked-language-model pretraining before fine-tuning.")
    corpus: CorpusSpec | None = Field(None, description="Raw text to pretrain on, and the held-out part.")
    objective: Literal["mlm"] = Field("mlm", description="Masked language model (BERT's first objective).")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens (or words) masked per block.")
    whole_word_masking: bool = Field(False, description="Mask every sub-word of a chosen word together.")
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per block, [CLS] and [SEP] included.")
    max_eval_blocks: int | None = Field(None, gt=0, le=MAX_COUNT, description="Measure perplexity on at most N held-out blocks.")
    epochs: int = Field(1, gt=0, le=MAX_COUNT, description="Passes over the corpus (max_steps wins when set).")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of AdamW.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps with a linear warm-up.")
    checkpoint_every: int = Field(500, gt=0, le=MAX_COUNT, description="Write a resumable checkpoint every N steps.")


class LoraSpec(_Section):
    r: int = Field(8, gt=0, le=4096, description="Rank of the update; at most the widest hidden size a BERT has.")
    alpha: int = Field(16, gt=0, le=65536, description="Scale of the update (alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1)


class TokenBudget(_Section):
    """Micro-batches by padded tokens instead of examples: few pad tokens, and a fixed set of shapes."""

    max_tokens: int = Field(gt=0, le=MAX_COUNT, description="Padded tokens per micro-batch: examples × the bucket's width.")
    buckets: list[Annotated[int, Field(gt=0, le=8192)]] | None = Field(
        None, description="Widths batches are padded to, ascending; default: powers of two from 16, then data.max_length.")


class FinetuneSpec(LoopRecipe):
    method: Literal["full", "lora"] = "full"
    group_by_length: bool = Field(True, description="Batch examples of similar length (less padding).")
    token_budget: TokenBudget | None = Field(None, description="Batch by a token budget from length buckets; "
                                             "batch_size then no longer sets the micro-batches.")
    classifier_dropout: float | None = Field(None, ge=0, lt=1)
    lora: LoraSpec = Field(default_factory=LoraSpec)


class GateSpec(_Section):
    metric: str = Field("f1", description="Metric the gate reads.")
    min: float = Field(0.0, description="The model passes when the metric is at least this.")
    min_delta: float = Field(0.0, ge=0, description="To take the champion alias, beat the champion's metric by at least this.")
    promote_ties: bool = Field(False, description="Let a candidate that only ties the champion (same score) take the "
                               "alias; by default a tie keeps the champion, so an identical rerun changes nothing.")
    split: Literal["validation", "test"] | None = Field(None, description="Default: test if present, else validation.")


class EvaluateSpec(_Section):
    metrics: list[str] = Field(default_factory=lambda: ["f1", "precision", "recall", "accuracy"], min_length=1)
    gate: GateSpec = Field(default_factory=GateSpec)
    iob_repair: IobRepair = Field("start", description="Token classification: a predicted I-X that continues no X entity "
                                  "starts one (start, as seqeval and conlleval read it) or is read as O (drop). Scores, "
                                  "evaluate's predictions and every exported model decode entities this one way.")


_CPU = r"^\d{1,9}(\.\d{1,9})?m?$"  # Kubernetes quantities: "4", "500m"
_MEMORY = r"^\d{1,15}(\.\d{1,9})?([KMGTP]i?)?$"  # "16Gi", "512Mi"
_K8S_NAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"  # a DNS-1123 subdomain
_RESOURCE = r"^([a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"  # "nvidia.com/gpu"
# What each pattern means, for errors: a regular expression is no help to someone fixing a standard.
_PATTERN_WORDS = {
    _NAME: "a name is letters, digits, '.', '_' and '-', starting with a letter or digit",
    _CPU: "a Kubernetes CPU quantity is a number of cores, or of millicores ending in m (\"4\", \"500m\")",
    _MEMORY: "a Kubernetes memory quantity is a number of bytes, or of units K, M, G, T, P, Ki, Mi, Gi, Ti or Pi (\"16Gi\")",
    _K8S_NAME: "a Kubernetes name is lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    _RESOURCE: "a Kubernetes resource name is an optional domain and '/', then a name (\"nvidia.com/gpu\")",
}


ExportFormat = Literal["safetensors", "onnx", "onnx-int8"]


class ParitySpec(_Section):
    """How far an exported format may stray from the torch model on held-out examples before export fails."""

    max_abs_diff: float = Field(1e-3, gt=0, description="ONNX fp32 vs torch: largest |difference| of any logit.")
    min_agreement: float = Field(0.999, ge=0, le=1, description="ONNX fp32 vs torch: share of identical predictions.")
    max_metric_drop: float = Field(0.01, ge=0, description="Each format vs torch: largest drop of the gate metric (0.01 = 1 point).")
    split: Literal["test", "validation"] | None = Field(None, description="Held-out split to compare on (default: test if set, else validation).")
    max_examples: int | None = Field(None, gt=0, le=MAX_COUNT, description="Compare on the first N examples only (default: the whole split).")


class ServingSpec(_Section):
    """The KServe InferenceService written beside the export."""

    format: ExportFormat = Field("safetensors", description="What to serve: safetensors (Hugging Face runtime) or onnx / onnx-int8 (ONNX runtime).")
    storage_uri: str | None = Field(None, description="Where the cluster finds the model (default: export.destination when it is s3://).")
    cpu: str = Field("1", pattern=_CPU)
    memory: str = Field("2Gi", pattern=_MEMORY)


class ExportSpec(_Section):
    formats: list[ExportFormat] = Field(default_factory=lambda: ["safetensors"], min_length=1,
                                        description="safetensors (the Hugging Face folder, always), onnx (fp32), onnx-int8 (dynamic int8).")
    register_as: Name | None = Field(None, description="Registered model name (defaults to the standard's name).")
    destination: FolderStr | None = Field(None, description="Copy the exported folder here as well (a path or s3://bucket/prefix).")
    parity: ParitySpec = Field(default_factory=ParitySpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)


class Toleration(_Section):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _exists_takes_no_value(self) -> Toleration:
        """Kubernetes refuses the pair when the pipeline is submitted; say so when the standard loads."""
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists matches every value of the key: drop value, or use operator Equal")
        return self


class GpuSpec(_Section):
    count: int = Field(0, ge=0, le=64, description="GPUs per training task; more than one runs under torchrun.")
    type: str = Field("nvidia.com/gpu", pattern=_RESOURCE, description="The accelerator's resource name.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels of the GPU node pool.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints of the GPU node pool to tolerate.")


class Resources(_Section):
    """What a pipeline task asks Kubernetes for; a limit left unset is not imposed."""

    cpu: str | None = Field(None, pattern=_CPU)
    memory: str | None = Field(None, pattern=_MEMORY)
    cpu_limit: str | None = Field(None, pattern=_CPU)
    memory_limit: str | None = Field(None, pattern=_MEMORY)


# A count or "auto": the value's type picks which, so an error names the problem of the one meant.
CountOrAuto = Annotated[
    Annotated[int, Field(ge=0, le=256), Tag("[count]")] | Annotated[Literal["auto"], Tag("[auto]")],
    Discriminator(lambda value: "[auto]" if isinstance(value, str) else "[count]"),
]


class RuntimeSpec(_Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that has it (else fp16), fp32 elsewhere; fp16 trains with dynamic loss scaling."
    )
    threads: int | None = Field(None, gt=0, le=4096, description="CPU threads for torch; default: all cores.")
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile the training step: auto = "
                                                  "on a GPU; a step that fails to compile falls back to eager.")
    cuda_graphs: bool = Field(False, description="Compile the step in reduce-overhead mode: each batch shape's kernels "
                              "recorded once as a CUDA graph and replayed with one launch (fixed shapes: MLM blocks, "
                              "token-budget buckets). One GPU process only; more memory.")
    loader_workers: CountOrAuto = Field(
        "auto", description="Processes that collate training batches ahead of the step: auto = none on a CPU, "
                            "up to 4 per training process on a GPU.")
    peak_tflops: float | None = Field(None, gt=0, description="The device's peak TFLOP/s for MFU; default: known GPUs "
                                      "by name (bf16 peak, half of it for fp32/TF32), none on a CPU.")
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    training: Resources = Field(default_factory=lambda: Resources(cpu="4", memory="16Gi", memory_limit="16Gi"),
                                description="Pipeline tasks pretrain and finetune.")
    tasks: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="4Gi", memory_limit="4Gi"),
                             description="Pipeline tasks data-prep, evaluate and export.")
    shm_size: str = Field("2Gi", pattern=_MEMORY, description="Shared memory (/dev/shm) of the training tasks, for data loaders.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed training task.")
    checkpoint_volume: str | None = Field(None, pattern=_K8S_NAME, max_length=253, description="A PersistentVolumeClaim for "
                                          "the training tasks' checkpoints, so that a retry resumes instead of starting over.")


_CRON_FIELD = r"[0-9*,/?LW#A-Za-z-]+"
# Kubeflow's scheduler (robfig/cron) reads 6 fields with these bounds; a number outside them would
# be refused only when the schedule is submitted to the cluster.
_CRON_BOUNDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))


class ScheduleSpec(_Section):
    """Recurring retraining on a cluster; the evaluation gate decides whether a run exports."""

    cron: str = Field(description="When to run: 5 fields (minute hour day month weekday) or 6 (seconds first).")
    experiment: Name | None = Field(None, description="Kubeflow experiment (default: the standard's name).")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) not in (5, 6) or not all(re.fullmatch(_CRON_FIELD, f) for f in fields):
            raise ValueError("expected 5 fields (minute hour day month weekday) or 6 (seconds first)")
        for (unit, low, high), field in zip(_CRON_BOUNDS, ["0", *fields] if len(fields) == 5 else fields):
            for mark, digits in re.findall(r"([/#]?)(\d+)", field):
                if mark == "/" and not digits.strip("0"):
                    raise ValueError(f"{unit}: a step of 0 never advances")
                if not mark and not (len(digits) <= 6 and low <= int(digits) <= high):
                    raise ValueError(f"{unit} {digits[:12]} is outside {low}-{high}")
        return cron

    def kfp_cron(self) -> str:
        """Kubeflow reads 6 fields, seconds first."""
        fields = self.cron.split()
        return " ".join(["0", *fields] if len(fields) == 5 else fields)


class SearchRange(_Section):
    """A numeric axis for random and bayes search: integers when low, high (and step) are integers."""

    low: float | int
    high: float | int
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    step: float | int | None = Field(None, gt=0, description="Only multiples of step above low.")

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low >= self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("set either log or step, not both")
        return self

    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step or 1))


# A sweep axis is a list of values or, given as a mapping, a range: the shape decides which, so an
# error names the range's own problem. Tags in brackets are dropped from error paths (see _located).
SweepAxis = Annotated[
    Annotated[list[Any], Tag("[values]")] | Annotated[SearchRange, Tag("[range]")],
    Discriminator(lambda value: "[range]" if isinstance(value, dict | SearchRange) else "[values]"),
]


class PruningSpec(_Section):
    """Stop a trial early when its validation metric trails the others' at the same evaluation."""

    pruner: Literal["median", "hyperband", "none"] = Field("median", description="Optuna's MedianPruner or HyperbandPruner.")
    startup_trials: int = Field(2, ge=0, le=MAX_COUNT, description="Trials that always run to the end, to compare against.")
    warmup_evaluations: int = Field(1, ge=0, le=MAX_COUNT, description="Evaluations of a trial before it may be pruned.")


class SweepObjective(_Section):
    metric: str | None = Field(None, description="Validation metric to maximize (default: the gate's metric).")
    cost: Literal["parameters", "flops", "seconds"] = Field("parameters", description="What a smaller configuration saves: "
                                                             "parameter count, training FLOPs or training seconds.")
    tolerance: float = Field(0.01, ge=0, description="Recommend the cheapest configuration within this of the best (0.01 = 1 point).")
    recommend: Literal["within-tolerance", "passes-gate"] = Field(
        "within-tolerance", description="The cheapest within tolerance of the best, or the cheapest that passes the gate.")
    overfit_gap: float = Field(0.05, ge=0, description="A trial whose train metric exceeds its validation metric by more over-fits.")


class SweepSpec(_Section):
    """Trials of the same standard with some settings changed, ending in a report and a recommended standard.

    `variants` are named sets of changes (model sizes, base checkpoints), each key a dotted path whose value
    replaces what the standard has there; `params` are single settings, each a list of values or a range."""

    strategy: Literal["grid", "random", "bayes"] = Field("grid", description="grid: every combination; random; bayes: Optuna's TPE.")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict, description="name -> {dotted.key: value, ...}.")
    params: dict[str, SweepAxis] = Field(default_factory=dict, description="dotted.key -> [values] or {low, high, log, step}.")
    trials: int | None = Field(None, gt=0, le=MAX_COUNT, description="Trials to run (random, bayes); caps a grid.")
    startup_trials: int | None = Field(None, gt=0, le=MAX_COUNT, description="bayes: trials drawn at random before TPE models the "
                                       "results (default: a third of the trials, at least 2).")
    max_minutes: float | None = Field(None, gt=0, description="Start no trial once the trials so far took this long.")
    pruning: PruningSpec | None = Field(None, description="Prune trials that trail at an evaluation (set finetune.eval_every).")
    objective: SweepObjective = Field(default_factory=SweepObjective)
    parallelism: int = Field(4, gt=0, le=1024, description="Trials at once on a cluster.")
    seed: Seed | None = Field(None, description="Seed of the sampler (default: the standard's seed).")


# Runtime settings that change how fast or where a run goes, not what it computes (device and
# precision do change it, and stay in the spec hash).
NOT_RECIPE = ("threads", "compile", "cuda_graphs", "loader_workers", "peak_tflops", "gpu", "training", "tasks",
              "shm_size", "retries", "checkpoint_volume")


class Standard(_Section):
    name: Name = Field(description="Names runs and the registered model.")
    description: str = ""
    seed: Seed = Field(42, description="Seeds torch, numpy and Python's random: 0 to 2**32 - 1.")
    task: Task
    data: DataSpec
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    model: ModelSpec
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    schedule: ScheduleSpec | None = Field(None, description="Recurring retraining on a cluster.")
    sweep: SweepSpec | None = Field(None, description="Search sizes and settings: `nlpstd sweep`.")
    _base_dir: str | None = PrivateAttr(None)  # the folder relative paths resolved against

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def spec_hash(self) -> str:
        """sha256 of the resolved standard: two runs with the same hash ran the same recipe. Settings
        of how fast, where and when a run goes are left out (`NOT_RECIPE`), so a rerun that changes
        them (more loader workers, another node pool) still resumes its checkpoints."""
        recipe = self.to_dict()
        recipe["runtime"] = {key: value for key, value in recipe["runtime"].items() if key not in NOT_RECIPE}
        recipe.pop("schedule")
        canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def flat_params(self) -> dict[str, str]:
        """`finetune.lr` -> "5e-05": the standard as flat key/value pairs (MLflow params)."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, item)
            else:
                flat[prefix] = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)

        walk("", self.to_dict())
        return flat

    def with_changes(self, changes: dict[str, Any], name: str | None = None) -> Standard:
        """This standard without its sweep, with `{dotted.key: value}` changes applied (a value
        replaces what is there, a mapping a whole section) and checked like a loaded standard."""
        data = self.to_dict()
        data.pop("sweep", None)
        for key, value in changes.items():
            set_dotted(data, key, value)
        if name:
            data["name"] = name
        # every path of the dumped standard is absolute already; a relative one among the changes (a
        # variant's `model.base: ./other`) means the same folder as in the standard it came from
        source = Path(self._base_dir or "/") / "standard.yaml"
        return load_standard_text(yaml.safe_dump(data, sort_keys=False), source)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """`finetune.lora.r` = 4 in a nested mapping, creating the sections on the way."""
    *sections, last = key.split(".")
    for section in sections:
        data = data.setdefault(section, {})
        if not isinstance(data, dict):
            raise NlpstdError(f"{key}: {section} is not a section")
    data[last] = value


# Metrics each task's evaluation produces; the gate may read any of them.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "token-classification": ("f1", "precision", "recall", "accuracy"),
    "sequence-classification": ("accuracy", "f1", "precision", "recall"),
}
FORMATS_FOR_TASK: dict[str, tuple[str, ...]] = {
    "token-classification": ("conll", "jsonl"),
    "sequence-classification": ("tsv", "csv", "jsonl"),
}


# ---------------------------------------------------------------------------------------
# Loading

# A standard is a few dozen keys in a few KiB. These limits sit far above any real standard and far
# below what hurts: read as a tree, a few lines of aliases of aliases ("billion laughs") stand for
# billions of nodes, so aliases and nodes are counted while the YAML is composed, before anything
# walks or expands it.
MAX_STANDARD_BYTES = 1 << 20
MAX_ALIASES = 16  # a standard shares a value or two
MAX_NODES = 10_000  # keys, values and list items, an alias counting as every node it repeats
MAX_DEPTH = 32  # nested mappings and lists; the composer recurses, and deeper input would exhaust the stack


def load_standard(path: str | Path) -> Standard:
    """Read, expand, validate and cross-check a standard; raise StandardError on any fault."""
    path = Path(path)
    return load_standard_text(_read_standard(path), path)


def _read_standard(path: Path) -> str:
    """The standard's text. A named pipe or a device is refused before it is opened (reading would
    block, or never end), and so is a file too large to be a standard."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StandardError(path, None, None, f"cannot read the standard: it is {_file_kind(info.st_mode)}, not a file")
        if info.st_size > MAX_STANDARD_BYTES:
            raise StandardError(path, None, None, f"{info.st_size:,} bytes is too large for a standard "
                                                  f"(at most {MAX_STANDARD_BYTES:,})")
        raw = path.read_bytes()
    except OSError as exc:
        raise StandardError(path, None, None, f"cannot read the standard: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise StandardError(path, line, "encoding", f"byte 0x{raw[exc.start]:02x} is not UTF-8; save the standard "
                                                    "as UTF-8") from None


def _file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def load_standard_text(text: str, path: str | Path = "standard.yaml") -> Standard:
    """A standard given as text (a pipeline parameter); `path` names it in errors and anchors relative paths."""
    path = Path(path)
    if len(text) > MAX_STANDARD_BYTES:
        raise StandardError(path, None, None, f"{len(text):,} characters is too large for a standard "
                                              f"(at most {MAX_STANDARD_BYTES:,})")
    lines, data = _parse_yaml(path, text)
    data = _expand_env(data, (), path, lines)
    base_dir = str(path.parent.resolve())
    try:
        standard = Standard.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _located(exc, path, lines) from None
    standard._base_dir = base_dir
    _check_combinations(standard, path, lines)
    return standard


class _Refused(Exception):
    """A limit of the YAML reader, met while composing (the reader knows a mark, not the file name)."""

    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _StandardLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting while it composes: aliases, nodes (an alias counts as every node
    it repeats, from sizes kept per node, so nothing is walked twice) and depth."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.aliases = 0
        self.nodes = 0
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(event.start_mark, f"more than {MAX_ALIASES} aliases (here *{_clip(event.anchor)}); "
                                                 "a standard needs a few at most")
            node = super().compose_node(parent, index)
            size = self.sizes.get(id(node))
            if size is None:  # the anchored node is still open: the alias lies inside it
                raise _Refused(event.start_mark, f"alias *{_clip(event.anchor)} lies inside the node it names, "
                                                 "so it would repeat without end")
            self._count(size, event.start_mark)
            return node
        if self.depth == MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        self._count(1, event.start_mark)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        self.sizes[id(node)] = 1 + sum(self.sizes[id(child)] for child in children)
        return node

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise _Refused(mark, f"more than {MAX_NODES:,} values once aliases are expanded")

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError):  # an integer of 5,000 digits, a 13th month
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(None, None, f"{_clip(node.value)} is not a valid {kind}",
                                                    node.start_mark) from None


def _parse_yaml(path: Path, text: str) -> tuple[dict[tuple, int], dict]:
    """The document, plus the 1-based line of every key path (for error messages). The text is read
    once: composed under the loader's limits, checked key by key, then built from those nodes."""
    loader = None
    try:
        loader = _StandardLoader(text)
        root = loader.get_single_node()
        lines = _key_lines(root, path)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        raise StandardError(path, exc.mark.line + 1, None, f"invalid YAML: {exc.message}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: a binary file, most likely
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise StandardError(path, text.count("\n", 0, exc.position) + 1, None,
                            f"invalid YAML: character #x{code:04x} is not allowed in YAML text") from None
    except yaml.YAMLError as exc:
        # an unclosed quote or bracket is marked at the end of the file; where it opened is more useful
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = min(mark.line + 1, text.count("\n") + 1) if mark else None
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise StandardError(path, line, None, f"invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        words = {type(None): "an empty file", list: "a list", str: "text", bool: "a yes/no value"}
        got = words.get(type(data), "a number" if isinstance(data, int | float) else type(data).__name__)
        raise StandardError(path, 1, None, f"a standard is a YAML mapping of sections (name, task, data, ...), not {got}")
    return lines, data


_STR_TAG, _MERGE_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"
_TAG_WORDS = {"int": "a number", "float": "a number", "bool": "a yes/no value", "null": "null (no value)", "timestamp": "a date"}


def _key_lines(root: yaml.Node | None, path: Path) -> dict[tuple, int]:
    """The 1-based line of every key path. Keys are names: one that YAML reads as a number, a date or
    null is refused, and so is a key given twice in a mapping (YAML would keep the last, silently)."""
    lines: dict[tuple, int] = {}

    def key_of(key_node: yaml.Node, loc: tuple) -> str:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag in (_STR_TAG, _MERGE_TAG):
            return key_node.value
        line = key_node.start_mark.line + 1
        if isinstance(key_node, yaml.ScalarNode):
            kind = _TAG_WORDS.get(key_node.tag.rsplit(":", 1)[-1], key_node.tag)
            raise StandardError(path, line, _dotted(loc + (key_node.value,)),
                                f"a key is a name, but YAML reads {_clip(key_node.value)!r} as {kind}")
        shape = "a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping"
        raise StandardError(path, line, _dotted(loc) or None, f"a key is a name, not {shape}")

    def walk(node: yaml.Node, loc: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                key, line = key_of(key_node, loc), key_node.start_mark.line + 1
                if key in first:
                    raise StandardError(path, line, _dotted(loc + (key,)), f"duplicate key (first at line {first[key]})")
                first[key] = lines[loc + (key,)] = line
                walk(value_node, loc + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[loc + (index,)] = item.start_mark.line + 1
                walk(item, loc + (index,))

    if root is not None:
        walk(root, ())
    return lines


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, loc: tuple, path: Path, lines: dict[tuple, int]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string, as a shell does: the default stands in for
    a VAR that is unset or empty; an unset VAR without a default is an error."""
    if isinstance(value, dict):
        return {k: _expand_env(v, loc + (k,), path, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, loc + (i,), path, lines) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value or (value is not None and default is None):  # set, and either not empty or with no default
            return value
        if default is None:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"environment variable {name} is not set and has no default")
        return default

    return _ENV.sub(substitute, value)


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of the longest prefix of `loc` that appears in the file (a missing top-level key: line 1)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        text = str(part) if str(part).isprintable() else repr(part)  # an error stays on one line
        out += f"[{part}]" if isinstance(part, int) else (f".{_clip(text)}" if out else _clip(text))
    return out


def _clip(text: Any, limit: int = 60) -> str:
    """`text` cut to `limit` characters: a 5,000-character value has no place in a one-line error."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """A value as an error quotes it: its repr, cut short."""
    return _clip(repr(value), 80)


def _located(exc: ValidationError, path: Path, lines: dict[tuple, int]) -> StandardError:
    """Turn pydantic's first error into `file:line: key.path: message`."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and "[" in part))
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        known = _field_names(loc[:-1])
        suggestion = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        message += f" (did you mean {suggestion[0]!r}?)" if suggestion else f" (valid keys: {', '.join(known)})"
    elif kind == "missing":
        message = "required key is missing"
    else:
        bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        if kind in bounds:
            bound = next(iter(first["ctx"].values()))
            message = f"must be {bounds[kind]} {bound if isinstance(bound, int) else f'{bound:g}'}, got {_shown(value)}"
        elif kind == "finite_number":
            message = f"must be a finite number, got {_shown(value)}"
        elif kind == "string_pattern_mismatch" and first["ctx"]["pattern"] in _PATTERN_WORDS:
            message = f"{_PATTERN_WORDS[first['ctx']['pattern']]}, got {_shown(value)}"
        else:
            message = first["msg"].replace("Value error, ", "")
            message = message if message[:2].isupper() else message[0].lower() + message[1:]  # keep "YAML"
            message += f" ({_shown(value)})" if ", got " in message else f", got {_shown(value)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return StandardError(path, _line_of(loc, lines), _dotted(loc), message)


def _field_names(loc: tuple) -> list[str]:
    """Valid keys of the section at `loc` (walks the model classes, skipping list indices)."""
    model: type[BaseModel] | None = Standard
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _model_in(field.annotation) if field else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _check_combinations(std: Standard, path: Path, lines: dict[tuple, int]) -> None:
    """Settings that are valid alone but cannot combine."""

    def fail(loc: tuple, message: str) -> None:
        raise StandardError(path, _line_of(loc, lines), _dotted(loc), message)

    if std.data.format not in FORMATS_FOR_TASK[std.task]:
        allowed = ", ".join(FORMATS_FOR_TASK[std.task])
        fail(("data", "format"), f"{std.task} reads {allowed}, not {std.data.format!r}")
    known = TASK_METRICS[std.task]
    for index, metric in enumerate(std.evaluate.metrics):
        if metric not in known:
            fail(("evaluate", "metrics", index), f"unknown metric {metric!r} for {std.task} (known: {', '.join(known)})")
    if std.evaluate.gate.metric not in known:
        fail(("evaluate", "gate", "metric"), f"unknown metric {std.evaluate.gate.metric!r} (known: {', '.join(known)})")
    if std.evaluate.gate.split == "test" and std.data.test is None:
        fail(("evaluate", "gate", "split"), "the gate reads the test split, but data.test is not set")
    _check_model(std, fail)
    for section in ("finetune", "pretrain"):
        recipe = getattr(std, section)
        if recipe.batch_size % recipe.grad_accumulation:
            fail((section, "grad_accumulation"), f"batch_size {recipe.batch_size} is not a multiple of grad_accumulation {recipe.grad_accumulation}")
    if std.data.text_pair_column and std.task == "token-classification":
        fail(("data", "text_pair_column"), "sentence pairs apply to sequence-classification only")
    _check_long_texts(std, fail)
    _check_export(std, fail)
    _check_token_budget(std, fail)
    _check_sweep(std, fail)
    if std.model.base is not None:  # last: it reads the base's config.json
        _check_base_positions(std, fail)


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


def _check_sweep(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """Every axis names a real key, and every value it can take makes a valid standard on its own."""
    sweep = std.sweep
    if sweep is None:
        return
    if not sweep.variants and not sweep.params:
        fail(("sweep",), "a sweep needs at least one axis: variants or params")
    metric = sweep.objective.metric
    if metric is not None and metric not in TASK_METRICS[std.task]:
        fail(("sweep", "objective", "metric"), f"unknown metric {metric!r} (known: {', '.join(TASK_METRICS[std.task])})")
    if sweep.strategy != "grid" and sweep.trials is None:
        fail(("sweep", "trials"), f"a {sweep.strategy} search needs a number of trials")

    def check_keys(loc: tuple, keys: Iterable[str]) -> None:
        for key in keys:
            if not _is_field(key):
                known = ", ".join(_field_names(tuple(key.split(".")[:-1]))) or "none at this path"
                fail(loc, f"{key!r} is not a key of the standard (keys there: {known})")

    def try_changes(loc: tuple, changes: dict[str, Any]) -> None:
        try:
            std.with_changes(changes)
        except StandardError as exc:
            fail(loc, f"makes an invalid standard: {exc.field + ': ' if exc.field else ''}{exc.message}")

    first_variant = next(iter(sweep.variants.values()), {})
    for name, changes in sweep.variants.items():
        for key in changes:
            if key in ("name", "sweep") or key.startswith("sweep."):
                fail(("sweep", "variants", name, key), "a sweep cannot change the standard's name or the sweep itself")
        check_keys(("sweep", "variants", name), changes)
        try_changes(("sweep", "variants", name), changes)
    for key, axis in sweep.params.items():
        loc = ("sweep", "params", key)
        if key in ("name", "sweep") or key.startswith("sweep."):
            fail(loc, "a sweep cannot change the standard's name or the sweep itself")
        check_keys(loc, [key])
        if isinstance(axis, SearchRange):
            if sweep.strategy == "grid":
                fail(loc, "a grid takes a list of values, not a range (or use strategy: random or bayes)")
            values = [axis.low, axis.high]
        elif not axis:
            fail(loc, "list at least one value")
        else:
            values = axis
        for index, value in enumerate(values):
            try_changes(loc + ((index,) if isinstance(axis, list) else ()), {**first_variant, key: value})


def _is_field(key: str) -> bool:
    """Whether a dotted path names a key of the standard (a section or a setting)."""
    *parents, last = key.split(".")
    return last in _field_names(tuple(parents)) and (not parents or bool(_field_names(tuple(parents))))


def budget_widths(std: Standard) -> list[int]:
    """The bucket widths of a token budget: as given, or 16, 32, 64, … below data.max_length, then data.max_length."""
    budget = std.finetune.token_budget
    if budget is not None and budget.buckets:
        return list(budget.buckets)
    widths, width = [], 16
    while width < std.data.max_length:
        widths.append(width)
        width *= 2
    return widths + [std.data.max_length]


def _check_export(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    formats = std.export.formats
    if "safetensors" not in formats:
        fail(("export", "formats"), "safetensors is always exported: it is the Hugging Face folder the other formats are built from")
    if len(set(formats)) != len(formats):
        fail(("export", "formats"), "a format is listed twice")
    if std.export.serving.format not in formats:
        fail(("export", "serving", "format"), f"serves {std.export.serving.format!r}, which export.formats does not list")
    if std.export.parity.split == "test" and std.data.test is None:
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


_TRUE = ("1", "on", "yes", "true")  # how huggingface_hub reads HF_HUB_OFFLINE


class _BaseUnusable(Exception):
    """model.base names nothing that can be loaded; the message says why."""


def _check_base_positions(std: Standard, fail: Callable[[tuple, str], None]) -> None:
    """A max_length beyond the base's positions passes validation and data-prep, then crashes fine-tuning
    with an index error; the base's config.json says how many positions it has, so compare here."""
    try:
        config = _base_config(std.model.base)
    except _BaseUnusable as exc:
        fail(("model", "base"), str(exc))
        return
    positions = _usable_positions(config) if config is not None else None
    if positions is None:
        return
    lengths = [(("data", "max_length"), std.data.max_length)]
    if std.pretrain.enabled:
        lengths.append((("pretrain", "max_length"), std.pretrain.max_length))
    for loc, length in lengths:
        if length > positions:
            fail(loc, f"{length} exceeds the {positions} positions of model.base {_clip(std.model.base)}")


def _base_config(base: str) -> dict[str, Any] | None:
    """The base's config.json, read without torch or transformers (loading a standard stays fast). None
    for a hub id that is not cached while the hub can be reached: it is fetched when the model loads."""
    if base in PACKAGED_BASES:
        package = PACKAGED_BASES[base]
        if importlib.util.find_spec(package) is None:
            raise _BaseUnusable(f"{base} ships with the Python package {package}, which is not installed")
        return _read_config(Path(importlib.import_module(package).get_model_path()) / "config.json")
    if os.path.isabs(base):  # a `./` or `../` folder, resolved against the standard's folder
        config = _read_config(Path(base) / "config.json")
        from nlpstd.models.folder import check_model_folder  # reads files only: no torch

        try:
            check_model_folder(base)  # a supported family, safetensors weights, no remote code, a tokenizer
        except NlpstdError as exc:
            raise _BaseUnusable(str(exc)) from None
        return config
    from huggingface_hub import try_to_load_from_cache  # ~0.1 s, and only for a hub id

    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not an `org/name` id
        raise _BaseUnusable(f"{_clip(base)!r} is not a named base ({', '.join(PACKAGED_BASES)}), a folder "
                            "(./path) or a hub id (org/name)") from None
    if isinstance(cached, str):
        config = _read_config(Path(cached))
        from nlpstd.models.folder import read_config  # reads the file only: no torch

        try:
            read_config(Path(cached).parent)  # a supported family, no remote code (the weights may not be cached yet)
        except NlpstdError as exc:
            raise _BaseUnusable(str(exc)) from None
        return config
    offline = [name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(name, "").lower() in _TRUE]
    if offline:
        raise _BaseUnusable(f"{base} is not in the local cache and {offline[0]} is set")
    return None


def _read_config(path: Path) -> dict[str, Any]:
    """A model folder's config.json as a mapping; anything else there is a base that cannot load."""
    try:
        info = os.stat(path)
    except OSError:
        raise _BaseUnusable(f"no Hugging Face model (config.json) in {path.parent}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _BaseUnusable(f"{path} is {_file_kind(info.st_mode)}, not a file")
    if info.st_size > MAX_STANDARD_BYTES:
        raise _BaseUnusable(f"{path} is {info.st_size:,} bytes, too large for a model's config")
    try:
        config = json.loads(path.read_bytes())
    except OSError as exc:
        raise _BaseUnusable(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # invalid JSON, or not UTF-8
        raise _BaseUnusable(f"{path} is not valid JSON ({_clip(exc, 80)})") from None
    if not isinstance(config, dict):
        raise _BaseUnusable(f"{path} is not a JSON object of settings")
    return config


def _usable_positions(config: dict[str, Any]) -> int | None:
    """The longest input the base accepts, specials included; None when its config does not say.
    (The supported families number positions from 0; RoBERTa's offset ones are refused as a family.)"""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    return positions


def check_files(std: Standard, path: str | Path) -> list[str]:
    """Every referenced data file exists, is a regular file and is readable; returns the files checked.
    A named pipe, a folder or a device is refused from its metadata alone: opening a pipe blocks
    until something writes to it, and /dev/zero never ends."""
    path = Path(path)
    lines, _ = _parse_yaml(path, _read_standard(path))
    checked = []
    for split, data_file in std.data.files().items():
        loc = ("data", split)
        if data_file.path.startswith("s3://"):
            from nlpstd import storage

            try:
                storage.fetch(data_file.path)  # into the local cache, where data-prep finds it
            except NlpstdError as exc:
                raise StandardError(path, _line_of(loc, lines), _dotted(loc), str(exc)) from None
            checked.append(data_file.path)
            continue
        try:
            mode = os.stat(data_file.path).st_mode
            if not stat.S_ISREG(mode):
                raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"{data_file.path} is {_file_kind(mode)}, not a file")
            with open(data_file.path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), f"cannot read {data_file.path}: {exc.strerror}") from None
        checked.append(data_file.path)
    if std.export.destination:  # a destination an export may not write into is refused before hours of training
        from nlpstd.export import destination

        loc = ("export", "destination")
        try:
            destination.check(std.export.destination, std.export.register_as or std.name)
        except NlpstdError as exc:
            raise StandardError(path, _line_of(loc, lines), _dotted(loc), str(exc)) from None
    return checked
