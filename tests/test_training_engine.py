"""The training engine's speed paths, on the CPU: the fused optimizer and its fallback."""

from __future__ import annotations

import pytest
import torch

from nlpstd.train.loop import adamw, param_groups


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 2))


def test_the_optimizer_runs_the_fused_kernel_on_a_cpu():
    optimizer = adamw(param_groups(small_model(), 0.01), 1e-3)

    assert all(group["fused"] for group in optimizer.param_groups)


def test_a_device_without_the_fused_kernel_gets_the_multi_tensor_update(monkeypatch: pytest.MonkeyPatch):
    real = torch.optim.AdamW

    def no_fused_kernel(params, **options):
        if options.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **options)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused_kernel)
    optimizer = adamw(param_groups(small_model(), 0.01), 1e-3)

    assert all(group["foreach"] and not group["fused"] for group in optimizer.param_groups)


def test_the_fused_update_matches_the_reference_update():
    fused, reference = small_model(), small_model()
    optimizers = [adamw(param_groups(fused, 0.01), 1e-2), torch.optim.AdamW(param_groups(reference, 0.01), lr=1e-2, foreach=False)]
    inputs = torch.randn(32, 8)
    for _ in range(5):
        for model, optimizer in zip((fused, reference), optimizers):
            model(inputs).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

    for a, b in zip(fused.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
