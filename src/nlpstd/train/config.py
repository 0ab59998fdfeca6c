"""The training loop's settings, grouped by concern: what a run does step by step (`LoopConfig`),
where and how the steps run (`EngineConfig`), and which held-out score keeps the best weights
(`Selection`).

Plain frozen dataclasses, built once by each stage from its standard (`LoopConfig.of(std.finetune)`,
`EngineConfig.of(std.runtime, device)`). The loop reads nothing else, so it imports without the
standard's schema (pydantic), and a benchmark builds the same settings by hand."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from nlpstd import runtime


@dataclass(frozen=True)
class LoopConfig:
    """The schedule, the optimizer and the rhythm of a run: the loop fields of the standard's
    `finetune` and `pretrain` sections (their help text and defaults live there)."""

    epochs: int  # passes over the training data; max_steps wins when set
    max_steps: int | None  # optimizer steps
    lr: float  # AdamW's peak learning rate
    weight_decay: float  # on weights of 2 or more dimensions, not on biases and LayerNorm
    warmup_ratio: float  # share of the steps with a linear warm-up
    schedule: str  # "linear" or "cosine" decay after the warm-up
    batch_size: int  # examples per optimizer step, all processes and micro-batches together
    grad_accumulation: int  # micro-batches per step and process
    eval_batch_size: int  # examples per forward pass when evaluating
    grad_clip: float | None  # max global gradient norm; None: no clipping
    early_stopping: int | None  # stop after this many evaluations without a better score
    eval_every: int | None  # steps between evaluations; None: once an epoch
    checkpoint_every: int  # steps between resumable checkpoints
    log_every: int  # steps per log line (the loss is read from the device only then)

    @classmethod
    def of(cls, section: Any) -> LoopConfig:
        """The fields of the same name of a standard's section (`std.finetune`, `std.pretrain`)."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class EngineConfig:
    """Where and how the steps run; resolved, so no setting is left at "auto"."""

    device: torch.device
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast; fp16 also scales the loss)
    compile: bool = False  # torch.compile the step (a step that fails to compile runs eager)
    cuda_graphs: bool = False  # compile in reduce-overhead mode where it applies (see `loop.compile_mode`)
    loader_workers: int = 0  # processes collating micro-batches ahead; 0: collated in the loop
    peak_flops: float | None = None  # the device's peak FLOP/s for MFU; None: looked up by device name

    @classmethod
    def of(cls, section: Any, device: torch.device) -> EngineConfig:
        """The standard's `runtime` section resolved for `device` (from `runtime.setup`)."""
        return cls(device=device, precision=runtime.resolve_precision(section, device),
                   compile=runtime.should_compile(section, device), cuda_graphs=section.cuda_graphs,
                   loader_workers=runtime.loader_workers(section, device), peak_flops=runtime.peak_flops(section))


@dataclass(frozen=True)
class Selection:
    """The held-out score that picks the best weights and counts evaluations toward early stopping."""

    metric: str  # a key of the scores `evaluate(model)` returns
    maximize: bool = True

    def improves(self, score: float, best: float | None) -> bool:
        return best is None or (score > best if self.maximize else score < best)
