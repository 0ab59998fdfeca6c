"""Resolve the standard's base model and build the task model on top of it (full or LoRA)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from nlpstd.compress.factorize import load_factorized
from nlpstd.compress.prune import keep_layers as keep_only
from nlpstd.compress.prune import parameter_count
from nlpstd.errors import LocatedError, NlpstdError
from nlpstd.jsonio import write_json
from nlpstd.models.bases import PACKAGED_BASES
from nlpstd.models.ensemble import Ensemble, ensemble_spec, member_folders
from nlpstd.models.folder import (
    CONFIG,
    INFO,
    TOKENIZER,
    WEIGHTS,
    check_model_folder,
    check_tokenizer_files,
    first_line,
    read_config,
    read_json_object,
)

FACTORIZED = "factorized"  # nlpstd.json: {module path: rank} of a factorized model's matrices

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import FinetuneSpec, LoraSpec, ModelSpec


def resolve_base(base: str) -> str:
    """A named base, a local folder, or a hub id (which then honours HF_HUB_OFFLINE). A local folder
    is checked whole, and a hub id's config.json read alone, before any of its weights are fetched
    or loaded: a base that asks for its own code, or is of a family nlpstd does not support, stops here."""
    if base in PACKAGED_BASES:
        package = __import__(PACKAGED_BASES[base])
        return str(package.get_model_path())
    if os.path.isabs(base):  # the standard resolved a `./` or `../` path against its folder
        if not os.path.isdir(base):
            raise NlpstdError(f"model.base: {base}: no such folder")
        if not os.path.lexists(os.path.join(base, CONFIG)):
            raise NlpstdError(f"model.base: no Hugging Face model (config.json) in {base}")
        check_model_folder(base)
        return base
    read_config(_hub_config(base).parent)  # a hub id such as `bert-base-uncased` or `org/name`
    return base


def _hub_config(base: str) -> Path:
    """The hub model's config.json, from the local cache or downloaded alone (no weights yet)."""
    try:
        return Path(cached_file(base, CONFIG))
    except Exception as exc:  # the hub client raises its own error types for offline, missing and gated models
        raise NlpstdError(f"model.base: {base!r} is neither a named base, a local folder (./path) nor a model the "
                          f"Hugging Face hub gives ({first_line(exc)})") from None


def load_tokenizer(source: str) -> PreTrainedTokenizerFast:
    """The fast tokenizer of a model folder or hub id (word offsets come from it). A folder's files are
    checked first; nothing of the folder's own code runs."""
    if os.path.isdir(source):
        if os.path.lexists(os.path.join(source, CONFIG)):  # transformers reads model_type there, and auto_map
            read_config(source)
            _load_config(Path(source))
        check_tokenizer_files(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
        raise _load_error(source, TOKENIZER, "not a tokenizer transformers can load", exc) from None
    if not tokenizer.is_fast:
        raise _load_error(source, TOKENIZER, "no fast tokenizer (offsets are needed to align labels)", None)
    if tokenizer.pad_token_id is None:
        raise _load_error(source, TOKENIZER, "no padding token (texts are batched with it)", None)
    return tokenizer


def model_class(task: str) -> type:
    return AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification


def build_model(task: str, source: str, labels: list[str], recipe: FinetuneSpec,
                keep_layers: list[int] | str | None = None) -> PreTrainedModel:
    """A fresh task head on the base encoder; the label map goes into the config so the model describes
    itself. `keep_layers` (`model.keep_layers`) keeps only those encoder layers, before any LoRA."""
    extra = {} if recipe.classifier_dropout is None else {"classifier_dropout": recipe.classifier_dropout}
    if os.path.isdir(source):  # `stage finetune --base DIR` reaches here without resolve_base
        check_model_folder(source)
    try:
        model = model_class(task).from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            trust_remote_code=False,
            use_safetensors=True,
            **extra,
        )
    except Exception as exc:  # transformers' errors for a file that passed the checks: one line, not a traceback
        raise _load_error(source, CONFIG, "transformers cannot load the model it describes", exc) from None
    if keep_layers is not None:
        model = keep_only(model, keep_layers)
    if recipe.method == "lora":
        model = add_lora(model, task, recipe.lora)
    return model


def build_mlm_model(model: ModelSpec, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """The encoder with its masked-LM head: the base checkpoint's, or a BERT of `model.size` from scratch.

    A base saved without an MLM head (a sentence encoder, say) gets a freshly initialised head
    tied to its word embeddings; the first held-out evaluation shows what that costs.
    """
    if model.base is not None:
        source = resolve_base(model.base)
        try:
            return AutoModelForMaskedLM.from_pretrained(source, trust_remote_code=False, use_safetensors=True)
        except Exception as exc:  # transformers' errors for a file that passed the checks: one line
            raise _load_error(source, CONFIG, "transformers cannot load the model it describes", exc) from None
    shape = model.architecture()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape["hidden"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        intermediate_size=shape["ffn"],
        max_position_embeddings=model.max_position,
        hidden_dropout_prob=model.dropout,
        attention_probs_dropout_prob=model.dropout,
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertForMaskedLM(config)


def add_lora(model: PreTrainedModel, task: str, lora: LoraSpec) -> PreTrainedModel:
    """Wrap in PEFT LoRA; the classifier head stays fully trainable (it starts from scratch)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.TOKEN_CLS if task == "token-classification" else TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
    )
    return get_peft_model(model, config)


def merged(model: PreTrainedModel) -> PreTrainedModel:
    """A plain transformers model: LoRA weights folded into the base weights."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def count_parameters(model: PreTrainedModel) -> tuple[int, int]:
    """(total, trainable) parameters."""
    total = parameter_count(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def load_model(model_dir: str | Path, task: str) -> PreTrainedModel | Ensemble:
    """A fine-tuned folder's model, exactly as saved: the folder is checked first, and weights that do
    not fill the model (a tensor missing, of another shape, or left over) are refused, since
    transformers would fill the gap with random numbers and predict nonsense without a word. A folder
    whose nlpstd.json names an ensemble (`finetune.seeds`) gives an `Ensemble` of all its members,
    each checked and loaded the same way."""
    folder = Path(model_dir)
    config = check_model_folder(folder, task)
    model = load_checked(folder, task)
    spec = ensemble_spec(folder)
    if spec is None:
        return model
    return Ensemble([model, *(load_checked(member, task) for member in member_folders(folder, spec, config, task))])


def load_checked(folder: Path, task: str) -> PreTrainedModel:
    """The model of a checked folder, refused unless its weights fill it exactly; a factorized one
    (nlpstd.json's `factorized` plan) with its two thin matrices where the config has one."""
    plan = factorization(folder)
    if plan is not None:
        return load_factorized(folder, model_class(task), plan)
    config = _load_config(folder)
    with _quiet_loading():
        try:
            model, report = model_class(task).from_pretrained(
                str(folder), config=config, trust_remote_code=False, use_safetensors=True,
                ignore_mismatched_sizes=True, output_loading_info=True)
        except Exception as exc:  # transformers' errors for a file that passed the checks: one line
            raise _load_error(str(folder), CONFIG, "transformers cannot build the model it describes", exc) from None
    if report["mismatched_keys"]:
        key, saved, expected = min(report["mismatched_keys"], key=lambda mismatch: mismatch[0])
        raise LocatedError(folder / WEIGHTS, None, None, f"does not fit config.json: {key} is {list(saved)} in the "
                           f"file, {list(expected)} by the config")
    if report["missing_keys"] or report["unexpected_keys"]:
        missing, unexpected = sorted(report["missing_keys"]), sorted(report["unexpected_keys"])
        example = f"lacks {missing[0]}" if missing else f"holds {unexpected[0]}, which the model has no place for"
        raise LocatedError(folder / WEIGHTS, None, None, f"{example} ({len(missing)} tensors missing, {len(unexpected)} "
                           "left over): these are not the weights of the model config.json describes")
    return model


def _load_config(folder: Path) -> PretrainedConfig:
    """config.json as transformers reads it; values of the wrong type or out of range are one line."""
    try:
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # a strict-dataclass validation error, a ValueError, ...: each names the field
        raise _load_error(str(folder), CONFIG, "transformers refuses it", exc) from None


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No progress bar or load report on stderr while a checked folder loads: `predict` prints results only."""
    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _load_error(source: str, file: str, problem: str, exc: BaseException | None) -> NlpstdError:
    """A library's refusal as one line, located at the file of a local folder (else at the hub id)."""
    detail = f": {first_line(exc)}" if exc is not None else ""
    if os.path.isdir(source):
        return LocatedError(Path(source) / file, None, None, problem + detail)
    return NlpstdError(f"model.base: {source}: {problem}{detail}")


def factorization(folder: Path) -> dict[str, int] | None:
    """The `factorized` entry of a folder's nlpstd.json ({module path: rank}), checked; None when the
    model is dense (or the folder has no nlpstd.json, as a plain transformers folder)."""
    info = Path(folder) / INFO
    plan = read_json_object(info).get(FACTORIZED) if os.path.lexists(info) else None
    if plan is None:
        return None
    if not isinstance(plan, dict) or not plan or not all(isinstance(k, str) and type(v) is int and v > 0 for k, v in plan.items()):
        raise LocatedError(info, None, FACTORIZED, f"expected {{module path: rank}} of the factorized matrices, got {plan!r}")
    return plan


def add_factorization(folder: Path, plan: dict[str, int]) -> None:
    """Record in nlpstd.json which matrices of the saved weights are factorized, and to which rank."""
    info = Path(folder) / INFO
    write_json(info, {**read_json_object(info), FACTORIZED: plan})


def write_model_info(folder: Path, *, task: str, max_length: int, standard: str, spec_hash: str, fingerprint: str,
                     stride: int | None = None, truncation_side: str = "right", word_unit: str = "word") -> None:
    """`nlpstd.json` beside the weights: what `predict` needs that config.json does not say (and must
    do as training did: how long texts are windowed or cut)."""
    info = {"task": task, "max_length": max_length, "stride": stride, "truncation_side": truncation_side, "word_unit": word_unit,
            "standard": standard, "spec_hash": spec_hash, "data_fingerprint": fingerprint}
    write_json(Path(folder) / "nlpstd.json", info)
