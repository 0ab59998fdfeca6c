"""Dropout from random bits, for training on a CPU.

torch draws a CPU dropout mask with `bernoulli_`, one floating-point draw per element: on 2 cores
the 20 dropout layers of a MiniLM-L6 step on CoNLL (6 of them on the attention probabilities)
took 30 ms of a 140 ms step. Here an element's mask costs 16 random bits, a quarter of one 64-bit
draw from the same seeded generator, so a run stays reproducible from its seed and a resumed run
draws the masks an uninterrupted one would.

The drop probability becomes p rounded to a multiple of 2^-16 (0.1 becomes 0.1000061), and kept
values are scaled by the inverse of the exact keep probability, so every activation keeps its
expected value. On a GPU torch's own dropout draws from a counter-based generator on the device
and is already cheap: the training loop draws bit masks on a CPU only, and not when it compiles
the step (the compiler draws its own masks).

While training, attention is computed here (two matrix products and a softmax) even without
attention dropout: on a CPU the backward pass of torch's fused SDPA kernel is the slower one, by
far at sentence lengths (a MiniLM-L6 step on CoNLL batches of 32, bf16, all dropout off: 172
against 102 ms on 2 cores, `benchmarks/cpu_step.py`). Evaluation keeps SDPA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

UNITS = 1 << 16  # a 16-bit mask resolves p to a multiple of 1/UNITS
ATTENTION = "nlpstd-bit-dropout"  # SDPA, except while training: attention with the bit mask


def bit_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of `x`: each element zeroed with probability round(p·2^16)/2^16, the rest scaled up."""
    dropped = round(p * UNITS)
    if dropped == 0:
        return x
    if dropped >= UNITS:
        return torch.zeros_like(x)
    n = x.numel()
    # the full 64-bit range (a bare random_() leaves the sign bit 0), seen as four uniform 16-bit integers
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None).view(torch.int16)[:n]
    keep = bits.view(x.shape) >= dropped - UNITS // 2  # UNITS - dropped of the UNITS values of an int16
    return x * keep.to(device=x.device, dtype=x.dtype).mul_(UNITS / (UNITS - dropped))


class BitDropout(torch.nn.Dropout):
    """`nn.Dropout` whose mask comes from `bit_dropout`; in eval mode the identity, as before."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bit_dropout(x, self.p) if self.training else x  # p that rounds to 0 returns x as it is


def bit_dropout_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """Attention as Hugging Face models call it. While training, the probabilities are computed here
    and dropped with the bit mask (with dropout, torch's SDPA would fall back to this same arithmetic
    on a CPU, drawing with `bernoulli_`; without, its fused kernel trains slower); in evaluation SDPA
    itself. The mask is SDPA's (True: attend)."""
    if not module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=scaling, **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    probabilities = bit_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probabilities, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, bit_dropout_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


@contextlib.contextmanager
def using_bit_dropout(model: torch.nn.Module) -> Iterator[None]:
    """For the duration, the model's dropout layers and SDPA attention draw bit masks; afterwards
    the model is as it was (its saved config names its own attention). Attention other than SDPA
    is left as it is."""
    swapped = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Dropout]
    configs = {id(m.config): m.config for m in model.modules() if _attention(m) == "sdpa"}.values()
    for parent, name, child in swapped:
        setattr(parent, name, BitDropout(child.p).train(child.training))  # a new module would be in training mode
    for config in configs:
        config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for config in configs:
            config._attn_implementation = "sdpa"


def _attention(module: torch.nn.Module) -> str | None:
    """The attention implementation a module's config names, if it has one."""
    return getattr(getattr(module, "config", None), "_attn_implementation", None)
