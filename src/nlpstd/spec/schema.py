"""The standard's schema: one pydantic model per section, each field typed, bounded and described.

Nothing here reads a file or the environment: loading (`loading`), the checks across fields
(`rules`) and the checks of files and bases (`files`) build on these models. Each field says what
it is for (`role`): part of the recipe, which decides what a run computes and enters the spec
hash, or a setting of speed, which decides only how fast, where or when a run goes; a runtime
setting also says whether it takes effect on any runner or only on a cluster.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import re
import types
import typing
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
    ValidationInfo,
    field_validator,
    model_validator,
)

from nlpstd import s3uri
from nlpstd.errors import NlpstdError
from nlpstd.sizes import SIZES
from nlpstd.spans import IobRepair

Task = Literal["token-classification", "sequence-classification"]


def _resolve_path(value: str, info: ValidationInfo, object_key: bool = True) -> str:
    """Relative paths are relative to the standard's folder, not to the working directory. An s3://
    URI must be well formed (and, for a file, name an object) before any request is made."""
    if not value:
        raise ValueError("must not be empty")
    if value.startswith("hf:") and "://" not in value:  # a Hugging Face hub dataset id (format: datasets)
        return value
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
OWN_TEACHER = "self"  # finetune.distill.teacher: the standard's own model, trained first
TeacherStr = Annotated[str, AfterValidator(lambda value, info: value if value == OWN_TEACHER else _resolve_path(value, info, object_key=False))]


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

    path: PathStr = Field(description="Local path (relative to the standard) or s3:// URI; for `format: datasets`, a "
                                      "folder written by `save_to_disk`, or a Hugging Face hub id (`hf:NAME`).")
    encoding: Encoding | None = Field(None, description="Text encoding; defaults to data.encoding.")
    split: str | None = Field(None, description="format: datasets: the split to read from a dataset with several "
                                                "(default: this split's own name, train / validation / test).")
    subset: str | None = Field(None, description="format: datasets: the hub dataset's configuration (its subset name).")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


class LabelMap(_Section):
    """Labels stored as numbers, and their names: give exactly one of `names`, `file` or `ids`."""

    names: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1, description="The names in "
                                                                     "order: the first is label number `base`.")
    file: PathStr | None = Field(None, description="A text file with one name per line, in order (the first is `base`).")
    ids: dict[str, Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1, description="Each number "
                                                                        "as written in the data, and its name.")
    base: int = Field(0, ge=0, le=1, description="The number of the first name in `names` or `file`: 0 or 1.")

    @model_validator(mode="after")
    def _one_source(self) -> LabelMap:
        given = [key for key in ("names", "file", "ids") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of names, file or ids (got {', '.join(given) or 'none'})")
        twice = sorted({name for name in self.names or [] if self.names.count(name) > 1})
        if twice:
            raise ValueError(f"names must differ: {', '.join(map(repr, twice))} listed more than once")
        return self


class CarvedSplits(_Section):
    """Held-out splits cut from train, for data that comes without them; seeded by `seed`."""

    validation: float | None = Field(None, gt=0, lt=1, description="Share of the train file that becomes the validation split.")
    test: float | None = Field(None, gt=0, lt=1, description="Share of the train file that becomes the test split.")
    stratify: bool = Field(True, description="Keep each label's share in every part (classification: the label; "
                                             "token classification: the entity types an example holds).")


class ConllLayout(_Section):
    """How a CoNLL file lays out its columns, tags and documents."""

    token_column: int = Field(0, ge=-64, le=63, description="The column holding the word (0 = first; -1 = last).")
    tag_column: int = Field(-1, ge=-64, le=63, description="The column holding the tag (-1 = last).")
    scheme: Literal["iob2", "iob1", "bioes"] = Field("iob2", description="The tag scheme of the file: IOB1 and "
                                                                          "BIOES are converted to IOB2 as they are read.")
    document_separator: str | None = Field("-DOCSTART-", description="A token that marks a document boundary "
                                                                      "line (skipped); null: none.")


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
    max_control_characters: float | None = Field(None, ge=0, le=1, description="Largest share of a split's examples "
                                                 "that may hold control characters (tabs and line breaks excepted; "
                                                 "default: counted, not checked).")
    on_violation: Literal["warn", "fail"] = Field("warn", description="warn: one line, and a note in the report; "
                                                  "fail: stop in data-prep, before any training.")


class DataSpec(_Section):
    format: Literal["conll", "tsv", "csv", "jsonl", "parquet", "datasets"] = Field(
        description="Reader for all splits: conll, tsv, csv, jsonl, parquet, or datasets (a folder written by "
                    "Hugging Face `save_to_disk`, or a hub id).")
    train: DataFile
    validation: DataFile | None = Field(None, description="Required, unless split_from_train.validation cuts it from train.")
    test: DataFile | None = None
    split_from_train: CarvedSplits | None = Field(None, description="Cut a validation (and/or test) split from the train "
                                                                   "file, seeded and stratified by label.")
    encoding: Encoding = Field("utf-8", description="Default encoding of every file.")
    max_length: int = Field(128, ge=8, le=8192, description="Sub-word tokens per example, specials included.")
    max_train_examples: int | None = Field(None, gt=0, le=MAX_COUNT, description="Keep N training examples (quick runs), "
                                                                                 "chosen by `sample`.")
    max_eval_examples: int | None = Field(None, gt=0, le=MAX_COUNT, description="Keep N validation/test examples, chosen by `sample`.")
    sample: Literal["head", "random", "stratified"] = Field(
        "head", description="Which examples a limit keeps: the first N (head), a seeded random sample, or a seeded sample "
                            "that keeps each label's share (stratified). The data report warns when a limit keeps fewer "
                            "labels than the file has.")
    text_column: str | list[str] = Field("text", description="TSV/CSV/Parquet column or JSONL field holding the text; "
                                                             "a list joins several (title and body) with text_separator.")
    text_separator: str = Field(" ", description="What joins the columns of a text_column list.")
    text_pair_column: str | None = Field(None, description="Optional second text (sentence pairs).")
    label_column: str = Field("label", description="TSV/CSV/Parquet column or JSONL field holding the label.")
    label_map: LabelMap | None = Field(None, description="Labels written as numbers: their names (a list, a file, or a "
                                                         "mapping), applied to every split and carried to the model.")
    header: bool = Field(True, description="TSV/CSV: the first row names the columns; false: `columns` names them by position.")
    columns: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1, description="TSV/CSV: the names "
                                                                       "of the columns, in order (for a file without a header row).")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="TSV/CSV: the field delimiter (default: "
                                                                                "tab for tsv, comma for csv).")
    quoting: bool | None = Field(None, description="CSV quoting rules; default: on for csv, off for tsv.")
    conll: ConllLayout = Field(default_factory=ConllLayout, description="CoNLL: which columns hold the word and the tag, "
                                                                        "the tag scheme, the document separator.")
    control_characters: Literal["keep", "remove"] = Field("keep", description="Control characters in a text (tabs and "
                                                                              "line breaks excepted): kept and counted in "
                                                                              "the data report, or removed as read.")
    entities_field: str = Field("entities", description="JSONL field with character spans: a list of {start, end, label} "
                                                        "(or [start, end, label]), or a mapping from each type (and "
                                                        "optionally each mention) to [start, end] pairs.")
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
    keep_layers: list[Annotated[int, Field(ge=0, le=255)]] | Literal["every-other"] | None = Field(
        None, min_length=1, description="Keep only these encoder layers of `base` (0-based, ascending), or every other one "
        "(0, 2, 4, ...: how DistilBERT began), when the task model is built: a smaller student for `finetune.distill`.")

    @field_validator("keep_layers", mode="before")
    @classmethod
    def _layers_or_every_other(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "every-other":
            raise ValueError(f"expected a list of layer numbers ([0, 2, 4]) or 'every-other', got {value!r}")
        return value

    def architecture(self) -> dict[str, int]:
        """The from-scratch shape after overrides."""
        layers, hidden = SIZES[self.size or "tiny"]
        layers, hidden = self.layers or layers, self.hidden or hidden
        return {"layers": layers, "hidden": hidden, "heads": self.heads or max(1, hidden // 64), "ffn": self.ffn or 4 * hidden}


CorpusEncoding = Annotated[str, AfterValidator(lambda v: v if v == "auto" else _known_encoding(v))]


class CorpusFile(_Section):
    """A corpus file or glob; a plain string in YAML is shorthand for `{path: ...}`."""

    path: FolderStr = Field(description="File or glob (`corpus/*.txt`), relative to the standard; or an s3:// object, "
                            "prefix ending in `/` (every object under it) or pattern (`s3://bucket/corpus/*.txt`).")
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


AugmentOperation = Literal["delete", "swap", "insert", "typos", "mention_replace", "shuffle_segments"]
# what an augmentation may do to each task's examples and keep its labels true
AUGMENT_OPERATIONS = {
    "sequence-classification": ("delete", "swap", "insert", "typos"),
    "token-classification": ("mention_replace", "shuffle_segments", "typos"),
}


class AugmentSpec(_Section):
    """Training examples changed afresh each epoch, seeded by (seed, epoch), their labels kept true."""

    probability: float = Field(0.3, gt=0, le=1, description="Share of the training examples augmented in each epoch.")
    operations: list[AugmentOperation] | None = Field(
        None, min_length=1, description="Classification: delete, swap, insert (a word of the same text), typos. "
        "NER: mention_replace (an entity of the same type from the training set), shuffle_segments (words within "
        "each run of one label), typos (on words outside entities). Default: all of the task's.")
    rate: float = Field(0.1, gt=0, le=0.5, description="Share of an example's words an operation touches (at least one).")


class AdversarialSpec(_Section):
    """Training also on word embeddings perturbed towards a higher loss (FGM; PGD in several steps)."""

    method: Literal["fgm", "pgd"] = Field("fgm", description="fgm: one step along the gradient; pgd: `steps` "
                                          "projected steps.")
    epsilon: float = Field(0.1, gt=0, le=100, description="Largest L2 norm of an example's perturbation of its "
                           "word embeddings (MiniLM's are about 1.1 per token; 1.0 stopped SST-2 learning).")
    steps: int = Field(3, ge=1, le=20, description="pgd: ascent steps, each of epsilon / steps (fgm takes one).")


class DistillSpec(_Section):
    """Learn from a fine-tuned teacher's softened logits as well as from the labels (knowledge distillation)."""

    teacher: TeacherStr = Field(description="`self`: this standard's own model, fine-tuned first in the same stage "
                                "(without distill, keep_layers or compress); or a fine-tuned model folder of this task "
                                "and label set (a finetune stage's `model/`, an exported folder, or s3://) whose "
                                "tokenizer is the student's.")
    temperature: float = Field(2.0, gt=0, le=100, description="Softens both sides' logits; the KL term is scaled by its square.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the teacher's targets; 1 - alpha weighs the labels' cross-entropy.")
    init: Literal["base", "teacher"] = Field("base", description="Where the student's weights start: `base` (model.base, "
                                             "or the pretrained encoder) or `teacher` (the teacher's own fine-tuned weights, "
                                             "head included; with model.keep_layers, DistilBERT's start).")
    cache: Literal["auto", "on", "off"] = Field("auto", description="Compute the teacher's logits once, before training: "
                                               "auto = when the data is seen more than once, is not augmented, and "
                                               "the logits fit in 2 GiB.")


class FinetuneSpec(LoopRecipe):
    method: Literal["full", "lora"] = "full"
    group_by_length: bool = Field(True, description="Batch examples of similar length (less padding).")
    token_budget: TokenBudget | None = Field(None, description="Batch by a token budget from length buckets; "
                                             "batch_size then no longer sets the micro-batches.")
    classifier_dropout: float | None = Field(None, ge=0, lt=1)
    lora: LoraSpec = Field(default_factory=LoraSpec)
    augment: AugmentSpec | None = Field(None, description="Augment the training examples each epoch (off when unset).")
    adversarial: AdversarialSpec | None = Field(None, description="Adversarial training on the word embeddings "
                                                "(off when unset); a step runs the model twice (fgm) or steps + 1 times (pgd).")
    seeds: list[Seed] | None = Field(None, min_length=2, max_length=16, description="Fine-tune one member per seed "
                                     "and average their logits (an ensemble); default: one model, of the standard's seed.")
    ensemble: Literal["mean"] = Field("mean", description="How the members' logits combine: their mean.")
    distill: DistillSpec | None = Field(None, description="Distil a teacher's knowledge into the model (off when unset).")


class PruneSpec(_Section):
    """Remove the fine-tuned model's least important layers and feed-forward neurons for real
    (smaller matrices, a valid config)."""

    ffn: float | None = Field(None, gt=0, lt=1, description="Share of each layer's feed-forward neurons to remove, "
                              "ranked by first-order (Taylor) importance on validation batches.")
    layers: float | None = Field(None, gt=0, lt=1, description="Share of the encoder layers to remove, those whose "
                                 "skipping raises the validation loss least.")
    heads: float | None = Field(None, description="Not supported: a BERT config derives the head size from the hidden "
                                "size, so fewer heads cannot make the model smaller; prune `ffn` or `layers`.")
    importance_batches: int = Field(16, gt=0, le=MAX_COUNT, description="Validation batches (of eval_batch_size) the "
                                    "importance is measured on.")

    @field_validator("heads")
    @classmethod
    def _no_heads(cls, value: float | None) -> None:
        if value is not None:
            raise ValueError("attention heads cannot be removed from a BERT-family model into a smaller valid config "
                             "(the head size is hidden / heads): prune ffn or layers instead")
        return value


class FactorizeSpec(_Section):
    """Replace large weight matrices by two thin ones, their truncated SVD (`rank` or `energy`)."""

    rank: int | None = Field(None, gt=0, le=65536, description="The same rank for every matrix.")
    energy: float | None = Field(None, gt=0, le=1, description="Or per matrix, the smallest rank keeping this share of "
                                 "its squared singular values.")
    modules: list[Literal["ffn", "attention"]] = Field(default_factory=lambda: ["ffn"], min_length=1, description="Which "
                                                       "matrices: the feed-forward pair, and/or the attention projections.")


class RecoverySpec(_Section):
    """A short fine-tuning after pruning or factorization, to win back what they cost."""

    steps: int = Field(100, ge=0, le=MAX_COUNT, description="Optimizer steps (0: none).")
    lr: float | None = Field(None, gt=0, description="Peak learning rate (default finetune.lr).")


class CompressSpec(_Section):
    """Make the fine-tuned model smaller before it is evaluated and exported: pruned, then factorized,
    then recovered."""

    prune: PruneSpec | None = Field(None, description="Structured pruning (off when unset).")
    factorize: FactorizeSpec | None = Field(None, description="Low-rank factorization (off when unset); the model is "
                                            "then served from ONNX, as plain transformers cannot load it.")
    recovery: RecoverySpec = Field(default_factory=RecoverySpec)


class PromoteSpec(_Section):
    confidence: float = Field(0.95, gt=0.5, lt=1, description="The paired-bootstrap interval's confidence.")
    resamples: int = Field(1000, ge=100, le=100_000, description="Bootstrap resamples of the split's examples.")


class GateSpec(_Section):
    metric: str = Field("f1", description="Metric the gate reads.")
    min: float = Field(0.0, description="The model passes when the metric is at least this.")
    min_delta: float = Field(0.0, ge=0, description="To take the champion alias, beat the champion's metric by at least this.")
    promote_ties: bool = Field(False, description="Let a candidate that only ties the champion (same score) take the "
                               "alias; by default a tie keeps the champion, so an identical rerun changes nothing.")
    split: Literal["validation", "test"] | None = Field(None, description="Default: test if present, else validation.")
    promote: PromoteSpec | None = Field(None, description="Promote only when the interval of the difference to the "
                                        "champion (paired bootstrap over the same examples) lies above min_delta; "
                                        "unset: a margin of min_delta suffices, however noisy.")


Perturbation = Literal["typos", "lowercase", "uppercase", "punctuation", "entity_swap"]


class RobustnessSpec(_Section):
    perturbations: list[Perturbation] = Field(
        default_factory=lambda: ["typos", "lowercase", "uppercase", "punctuation", "entity_swap"], min_length=1,
        description="How the text is perturbed; each keeps the gold labels true (entity_swap: NER on words only; "
                    "span data takes typos and casing only).")
    rate: float = Field(0.1, gt=0, le=1, description="Share of words (of 4 letters or more) a typo hits.")
    splits: list[Literal["validation", "test"]] | None = Field(None, description="Default: the gate's split.")
    max_drop: float | None = Field(None, ge=0, description="Fail the gate when the gate metric drops by more than this "
                                   "under any perturbation.")


class ExplainSpec(_Section):
    """Token attributions (integrated gradients) of a sample of the model's errors and successes."""

    examples: int = Field(3, ge=1, le=50, description="Errors explained, and as many successes.")
    steps: int = Field(32, ge=2, le=512, description="Integrated-gradients steps from the baseline to the text.")
    split: Literal["validation", "test"] | None = Field(None, description="Default: the gate's split.")


class EvaluateSpec(_Section):
    metrics: list[str] = Field(default_factory=lambda: ["f1", "precision", "recall", "accuracy"], min_length=1)
    gate: GateSpec = Field(default_factory=GateSpec)
    robustness: RobustnessSpec | None = Field(None, description="Score held-out splits again under perturbed text and "
                                              "report each drop (off when unset).")
    explain: ExplainSpec | None = Field(None, description="Explain a sample of predictions in the report, token by "
                                        "token (off when unset).")
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


# What a setting is for, stated on its field, so that what is built from it (the spec hash, the local
# run's warning) cannot fall behind the schema. A field that says nothing is part of the recipe.
RECIPE = "recipe"  # decides what a run computes: in the spec hash
SPEED = "speed"  # decides only how fast, where or when a run goes: left out of the spec hash
LOCAL = "local"  # a runtime setting the stage code applies, on any runner
CLUSTER = "cluster"  # a runtime setting that becomes a task setting of the compiled pipeline (kfp.local ignores it)


def _role(role: Literal["recipe", "speed"], applied: Literal["local", "cluster"] | None = None) -> dict[str, str]:
    """A field's `json_schema_extra`: its role and, for a runtime setting, where it takes effect."""
    return {"role": role} if applied is None else {"role": role, "applied": applied}


class RuntimeSpec(_Section):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", json_schema_extra=_role(RECIPE, LOCAL))
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that has it (else fp16), bf16 on a CPU with native bf16 "
                            "(AVX-512 BF16 or AMX, read from Linux's /proc/cpuinfo), fp32 elsewhere; fp32 opts out. "
                            "fp16 trains with dynamic loss scaling.",
        json_schema_extra=_role(RECIPE, LOCAL),
    )
    threads: int | None = Field(None, gt=0, le=4096, description="CPU threads for torch; default: all cores.",
                                json_schema_extra=_role(SPEED, LOCAL))
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile the training step: auto = "
                                                  "on a GPU; a step that fails to compile falls back to eager.",
                                                  json_schema_extra=_role(SPEED, LOCAL))
    cuda_graphs: bool = Field(False, description="Compile the step in reduce-overhead mode: each batch shape's kernels "
                              "recorded once as a CUDA graph and replayed with one launch (fixed shapes: MLM blocks, "
                              "token-budget buckets). One GPU process only; more memory.", json_schema_extra=_role(SPEED, LOCAL))
    loader_workers: CountOrAuto = Field(
        "auto", description="Processes that collate training batches ahead of the step: auto = none on a CPU, "
                            "up to 4 per training process on a GPU.", json_schema_extra=_role(SPEED, LOCAL))
    peak_tflops: float | None = Field(None, gt=0, description="The device's peak TFLOP/s for MFU; default: known GPUs "
                                      "by name (bf16 peak, half of it for fp32/TF32), none on a CPU.",
                                      json_schema_extra=_role(SPEED, LOCAL))
    gpu: GpuSpec = Field(default_factory=GpuSpec, json_schema_extra=_role(SPEED, CLUSTER))
    training: Resources = Field(default_factory=lambda: Resources(cpu="4", memory="16Gi", memory_limit="16Gi"),
                                description="Pipeline tasks pretrain and finetune.", json_schema_extra=_role(SPEED, CLUSTER))
    tasks: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="4Gi", memory_limit="4Gi"),
                             description="Pipeline tasks data-prep, evaluate and export.", json_schema_extra=_role(SPEED, CLUSTER))
    shm_size: str = Field("2Gi", pattern=_MEMORY, description="Shared memory (/dev/shm) of the training tasks, for data loaders.",
                          json_schema_extra=_role(SPEED, CLUSTER))
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed training task.", json_schema_extra=_role(SPEED, CLUSTER))
    checkpoint_volume: str | None = Field(None, pattern=_K8S_NAME, max_length=253, description="A PersistentVolumeClaim for "
                                          "the training tasks' checkpoints, so that a retry resumes instead of starting over.",
                                          json_schema_extra=_role(SPEED, CLUSTER))


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
    cost: Literal["parameters", "flops", "seconds", "inference_flops", "latency"] = Field(
        "parameters", description="What a smaller configuration saves: parameter count, training FLOPs, training seconds, "
        "FLOPs of one forward pass, or CPU latency at batch 1.")
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


def field_role(model: type[BaseModel], name: str) -> str:
    """RECIPE or SPEED: what the field `name` of `model` says it is for (RECIPE when it says nothing)."""
    extra = model.model_fields[name].json_schema_extra
    return extra.get("role", RECIPE) if isinstance(extra, dict) else RECIPE


def not_recipe(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` that change how fast, where or when a run goes, not what it computes."""
    return tuple(name for name in model.model_fields if field_role(model, name) == SPEED)


def runtime_fields(applied: Literal["local", "cluster"]) -> tuple[str, ...]:
    """The runtime settings applied by the stage code on any runner (LOCAL), or only by a cluster's
    pipeline tasks (CLUSTER), in the schema's order."""
    return tuple(name for name, field in RuntimeSpec.model_fields.items()
                 if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("applied") == applied)


# Runtime settings that change how fast or where a run goes, not what it computes (device and
# precision do change it, and stay in the spec hash).
NOT_RECIPE = not_recipe(RuntimeSpec)


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
    compress: CompressSpec | None = Field(None, description="Prune or factorize the fine-tuned model (off when unset).")
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    schedule: ScheduleSpec | None = Field(None, description="Recurring retraining on a cluster.", json_schema_extra=_role(SPEED))
    sweep: SweepSpec | None = Field(None, description="Search sizes and settings: `nlpstd sweep`.")
    _base_dir: str | None = PrivateAttr(None)  # the folder relative paths resolved against

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def spec_hash(self) -> str:
        """sha256 of the resolved standard: two runs with the same hash ran the same recipe. Settings
        of how fast, where and when a run goes are left out (the SPEED fields: `NOT_RECIPE` and the
        schedule), so a rerun that changes them (more loader workers, another node pool) still resumes
        its checkpoints."""
        recipe = {key: value for key, value in self.to_dict().items() if key not in not_recipe(Standard)}
        recipe["runtime"] = {key: value for key, value in recipe["runtime"].items() if key not in NOT_RECIPE}
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
    "token-classification": ("conll", "jsonl", "parquet", "datasets"),
    "sequence-classification": ("tsv", "csv", "jsonl", "parquet", "datasets"),
}



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
