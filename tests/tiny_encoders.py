"""Tiny seeded encoders of each family the compression code supports, with a task head, for tests
that compare a model's outputs before and after changing it."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    PreTrainedModel,
    RobertaConfig,
)

CLASSES = {"token": AutoModelForTokenClassification, "sequence": AutoModelForSequenceClassification}


def tiny_encoder(family: str, task: str, *, hidden: int, layers: int, width: int, heads: int, vocab: int,
                 labels: int) -> PreTrainedModel:
    """A `family` encoder ("bert", "electra" or "distilbert"; "roberta", which compression refuses) `layers` deep, `hidden` wide with an FFN
    of `width`, seeded, in eval mode (no dropout: outputs compare exactly). ELECTRA's embeddings are
    half the hidden width, so its projection into the encoder is exercised too."""
    shape = dict(vocab_size=vocab, max_position_embeddings=32, num_labels=labels)
    configs = {
        "bert": lambda: BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                   intermediate_size=width, **shape),
        "electra": lambda: ElectraConfig(embedding_size=hidden // 2, hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, intermediate_size=width, **shape),
        "distilbert": lambda: DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=width, **shape),
        "roberta": lambda: RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                         intermediate_size=width, **shape),
    }
    torch.manual_seed(0)
    return CLASSES[task].from_config(configs[family]()).eval()
