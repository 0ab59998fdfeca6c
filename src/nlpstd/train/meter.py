"""Training throughput as a user pays for it: samples/s, real (non-pad) tokens/s, model TFLOP/s and
model FLOPs utilization (MFU) against the peak of the device the loop runs on.

Model FLOPs count the work the model does on real tokens, not on padding: per sequence of n
tokens through L layers of width d and feed-forward width f, a forward pass costs
2·n·L·(4d² + 2df) in the weights plus 4·n²·L·d in attention (scores and weighted sum), and a
training step three forward passes' worth (backward is twice the forward). The masked-LM
head adds its d×d transform and d×V decoder on the masked positions only, since that is all
nlpstd's MLM objective scores. Embedding look-ups are free.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

# Dense bf16 / fp16 tensor-core peaks in FLOP/s, by a substring of the CUDA device name (datasheets).
# fp32 training runs its matmuls in TF32 on these parts: half the bf16 peak.
_PEAKS_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
}


def device_peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's peak for this precision, or None when unknown (a CPU, an unlisted GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return peak_for(name, precision)


def peak_for(device_name: str, precision: str) -> float | None:
    for key, peak in _PEAKS_BF16.items():
        if key in device_name:
            return peak if precision in ("bf16", "fp16") else peak / 2
    return None


def step_flops(config: PretrainedConfig, lengths: torch.Tensor, masked_tokens: int = 0) -> float:
    """Training FLOPs of one micro-batch: `lengths` are the real lengths of its sequences."""
    layers, d, ffn = config.num_hidden_layers, config.hidden_size, config.intermediate_size
    n = lengths.to(torch.float64)
    forward = 2.0 * float(n.sum()) * layers * (4 * d * d + 2 * d * ffn) + 4.0 * float((n * n).sum()) * layers * d
    forward += 2.0 * masked_tokens * (d * d + d * config.vocab_size)
    return 3.0 * forward


class Meter:
    """Counts a window of steps; `read` turns it into rates and clears it."""

    def __init__(self, config: PretrainedConfig, peak_flops: float | None):
        self.config, self.peak = config, peak_flops
        self.samples = self.tokens = 0
        self.flops = 0.0

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        lengths = batch["attention_mask"].sum(dim=1).cpu()
        masked = int(batch["mlm_positions"].numel()) if "mlm_positions" in batch else 0
        self.samples += int(lengths.numel())
        self.tokens += int(lengths.sum())
        self.flops += step_flops(self.config, lengths, masked)

    def read(self, seconds: float, world: int = 1) -> dict[str, float]:
        """Rates over `seconds` for all `world` processes (the counts are this process's share)."""
        seconds = max(seconds, 1e-9)
        rates = {"samples_per_s": self.samples * world / seconds, "tokens_per_s": self.tokens * world / seconds,
                 "tflops": self.flops * world / seconds / 1e12}
        if self.peak:
            rates["mfu"] = self.flops / seconds / self.peak  # each process against its own device
        self.samples = self.tokens = 0
        self.flops = 0.0
        return rates
