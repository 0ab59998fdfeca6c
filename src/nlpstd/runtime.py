"""Device, precision, threads and seeds: decided once from the standard's `runtime` section."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from nlpstd.spec import RuntimeSpec

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(runtime: RuntimeSpec) -> torch.device:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        from nlpstd.errors import NlpstdError

        raise NlpstdError("runtime.device: cuda was asked for, but no CUDA device is visible")
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(runtime.device)


def resolve_precision(runtime: RuntimeSpec, device: torch.device) -> str:
    """auto: bf16 on a GPU that supports it, fp16 on an older GPU, fp32 on the CPU."""
    if runtime.precision != "auto":
        return runtime.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; weights and optimizer state stay fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def setup(runtime: RuntimeSpec, seed: int) -> torch.device:
    """Threads, seeds and the device, in that order, before any model is built."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # N independent copies would write the same checkpoints
        from nlpstd.errors import NlpstdError

        raise NlpstdError(f"launched as {world} processes (torchrun), but training does not yet shard across "
                          "processes: set runtime.gpu.count to 1")
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    seed_everything(seed)
    return resolve_device(runtime)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
