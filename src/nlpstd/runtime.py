"""Device, precision, threads and seeds: decided once from the standard's `runtime` section."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import RuntimeSpec

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPUINFO = Path("/proc/cpuinfo")
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # x86 instructions that compute bf16 in hardware
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def resolve_device(runtime: RuntimeSpec) -> torch.device:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        from nlpstd.errors import NlpstdError

        raise NlpstdError("runtime.device: cuda was asked for, but no CUDA device is visible")
    if runtime.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(runtime.device)


def resolve_precision(runtime: RuntimeSpec, device: torch.device) -> str:
    """auto: bf16 on a GPU that supports it, fp16 on an older GPU; on the CPU bf16 where it computes
    bf16 natively (same scores, faster), fp32 elsewhere, where emulated bf16 would only be slower.
    An explicit `runtime.precision` (fp32 to opt out) always wins."""
    if runtime.precision != "auto":
        return runtime.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    """Whether this machine's CPU has bf16 instructions (AVX-512 BF16, AMX-BF16), read from Linux's
    /proc/cpuinfo; False where that file is missing or unreadable (other systems), so auto stays fp32."""
    try:
        return cpuinfo_has_native_bf16(_CPUINFO.read_text(errors="replace"))
    except OSError:
        return False


def cpuinfo_has_native_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text's first `flags` line names a native bf16 instruction set (every
    core of a machine lists the same flags)."""
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == "flags":
            return not _NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return False


def should_compile(runtime: RuntimeSpec, device: torch.device) -> bool:
    return runtime.compile == "on" or (runtime.compile == "auto" and device.type == "cuda")


def loader_workers(runtime: RuntimeSpec, device: torch.device) -> int:
    """auto: none on a CPU, where every core already trains; on a GPU up to 4 per training process,
    leaving each process a core of its own."""
    if runtime.loader_workers != "auto":
        return runtime.loader_workers
    if device.type != "cuda":
        return 0
    return max(0, min(4, cores_per_process() - 1))


CGROUP = Path("/sys/fs/cgroup")  # this process's cgroup (v2), as a container sees it


def cores() -> int:
    """This machine's cores usable by this process: its CPU affinity, or its container's CPU limit
    when lower. A pod limited to 4 CPUs on a 64-core node sees all 64 in its affinity; starting 64
    workers there would only queue them behind the quota."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "<quota> <period>" in microseconds, or "max <period>" without a limit
        quota, period = (CGROUP / "cpu.max").read_text().split()[:2]
        return max(1, min(available, int(quota) // int(period)))
    except (OSError, ValueError):
        return available


def cores_per_process() -> int:
    """This machine's cores usable by this process, shared evenly by the training processes on it."""
    return max(1, cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def peak_flops(runtime: RuntimeSpec) -> float | None:
    """The standard's stated device peak in FLOP/s, if any (else the meter looks the device up)."""
    return runtime.peak_tflops * 1e12 if runtime.peak_tflops else None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; weights and optimizer state stay fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def keep_freed_memory() -> None:
    """Let the C allocator keep large freed blocks for reuse (glibc; elsewhere nothing changes).
    glibc maps every block over 32 MiB afresh and unmaps it when freed, so a large tensor made anew
    each step, such as the word-embedding gradient (47 MB for MiniLM's 30,522 × 384), faults its
    pages in every step: 8 ms of a 140 ms fine-tuning step on 2 cores. Memory a process frees then
    stays with it for its next use, not with the system."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        return
    mallopt(_M_MMAP_MAX, 0)  # every block from the heap, which keeps what is freed
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # and returns the heap's free top only past 1 GiB


def rank() -> int:
    """This process's rank under torchrun (0 when launched alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Only the main process logs, writes checkpoints and publishes outputs."""
    return rank() == 0


def setup(runtime: RuntimeSpec, seed: int) -> torch.device:
    """Threads, seeds, the process group (under torchrun) and the device, before any model is built.

    Under torchrun each process takes the GPU of its local rank (NCCL), or shares the CPU (gloo)
    with its share of the cores. Every process seeds alike; DDP copies rank 0's weights anyway."""
    world = world_size()
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    elif world > 1:
        torch.set_num_threads(cores_per_process())
    seed_everything(seed)
    device = resolve_device(runtime)
    if device.type == "cuda":  # TF32 tensor cores for the fp32 matmuls that autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    """Wait for every process (nothing to wait for when alone)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (filling caches, repairing files); the others run it after."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def teardown() -> None:
    """Leave the process group cleanly (torch warns at exit otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
