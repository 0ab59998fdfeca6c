"""`runtime.precision: auto` on the CPU: bf16 autocast where the CPU computes bf16 natively, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nlpstd import runtime
from nlpstd.spec import RuntimeSpec

CPU = torch.device("cpu")

# the flags lines of real /proc/cpuinfo texts, trimmed
SAPPHIRE_RAPIDS = "fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8"
COOPER_LAKE = "fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16"
SKYLAKE = "fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_fp16"


def cpuinfo(flags: str, cores: int = 2) -> str:
    """A /proc/cpuinfo text of `cores` identical cores with these flags."""
    core = "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Some Xeon\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n"
    return "\n".join(core.format(n=n, flags=flags) for n in range(cores))


@pytest.mark.parametrize(("flags", "native"), [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (SKYLAKE, False)])
def test_the_cpuinfo_parser_finds_the_native_bf16_flags(flags: str, native: bool):
    assert runtime.cpuinfo_has_native_bf16(cpuinfo(flags)) is native


@pytest.mark.parametrize("text", [
    "",
    "processor\t: 0\nvendor_id\t: GenuineIntel\n",  # no flags line
    "processor\t: 0\nFeatures\t: fp asimd bf16\n",  # an ARM text: its bf16 is not the x86 flags auto reads
    "processor\t: 0\nbugs\t\t: avx512_bf16\n",  # the name outside the flags line
    "processor\t: 0\nflags\t\t: avx512_bf16x\n",  # a longer name that only starts like one
])
def test_the_cpuinfo_parser_says_no_without_the_flags(text: str):
    assert runtime.cpuinfo_has_native_bf16(text) is False


def test_the_detection_reads_cpuinfo_and_says_no_when_it_cannot(tmp_path: Path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo(COOPER_LAKE))
    monkeypatch.setattr(runtime, "_CPUINFO", info)
    assert runtime.cpu_has_native_bf16() is True
    info.write_text(cpuinfo(SKYLAKE))
    assert runtime.cpu_has_native_bf16() is False
    monkeypatch.setattr(runtime, "_CPUINFO", tmp_path / "missing")  # macOS, Windows: no such file
    assert runtime.cpu_has_native_bf16() is False


@pytest.mark.parametrize(("native", "chosen"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_the_cpu_follows_native_bf16(monkeypatch, native: bool, chosen: str):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.resolve_precision(RuntimeSpec(precision="auto"), CPU) == chosen


@pytest.mark.parametrize("asked", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_precision_wins_over_auto(monkeypatch, asked: str, native: bool):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.resolve_precision(RuntimeSpec(precision=asked), CPU) == asked


def test_auto_on_a_gpu_ignores_the_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert runtime.resolve_precision(RuntimeSpec(precision="auto"), torch.device("cuda")) == "fp16"


def test_bf16_autocast_on_the_cpu_computes_in_bf16_and_fp32_does_not():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with runtime.autocast(CPU, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with runtime.autocast(CPU, "fp32"):
        assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the weights stay fp32
