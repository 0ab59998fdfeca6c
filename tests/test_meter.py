"""The throughput meter's arithmetic: model FLOPs on real tokens, rates per window, MFU against the device peak."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForMaskedLM, BertForTokenClassification

from nlpstd.train.meter import Meter, peak_for, step_flops

CONFIG = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                    max_position_embeddings=64, attn_implementation="sdpa")


def measured_training_flops(model: torch.nn.Module, batch: dict, loss) -> int:
    """What torch counts for one forward and backward pass."""
    with FlopCounterMode(display=False) as counter:
        loss(model, batch).backward()
    return counter.get_total_flops()


def test_step_flops_agree_with_torchs_flop_counter_on_a_token_classifier():
    model = BertForTokenClassification(CONFIG.__class__(**{**CONFIG.to_dict(), "num_labels": 3}))
    batch = {"input_ids": torch.randint(5, 500, (4, 48)), "attention_mask": torch.ones(4, 48, dtype=torch.long),
             "labels": torch.randint(0, 3, (4, 48))}
    counted = measured_training_flops(model, batch, lambda m, b: m(**b).loss)
    assert step_flops(CONFIG, torch.full((4,), 48)) == pytest.approx(counted, rel=0.03)


def test_step_flops_count_the_mlm_head_on_masked_positions_only():
    from nlpstd.train.mlm import masked_lm_loss

    model = BertForMaskedLM(CONFIG)
    positions = torch.arange(0, 4 * 48, 7)
    batch = {"input_ids": torch.randint(5, 500, (4, 48)), "attention_mask": torch.ones(4, 48, dtype=torch.long),
             "mlm_positions": positions, "mlm_labels": torch.randint(5, 500, (len(positions),))}
    counted = measured_training_flops(model, batch, masked_lm_loss)
    assert step_flops(CONFIG, torch.full((4,), 48), masked_tokens=len(positions)) == pytest.approx(counted, rel=0.03)


def test_padding_is_not_counted_as_work():
    meter, padded = Meter(CONFIG, None), Meter(CONFIG, None)
    meter.add({"attention_mask": torch.ones(2, 10, dtype=torch.long)})
    padded.add({"attention_mask": torch.cat([torch.ones(2, 10, dtype=torch.long), torch.zeros(2, 30, dtype=torch.long)], 1)})
    assert meter.read(1.0) == padded.read(1.0)


def test_rates_cover_the_window_and_all_processes_then_reset():
    meter = Meter(CONFIG, peak_flops=1e12)
    meter.add({"attention_mask": torch.ones(8, 16, dtype=torch.long)})
    flops = step_flops(CONFIG, torch.full((8,), 16))
    rates = meter.read(2.0, world=2)
    assert rates["samples_per_s"] == 8 and rates["tokens_per_s"] == 128
    assert rates["tflops"] == pytest.approx(flops / 1e12) and rates["mfu"] == pytest.approx(flops / 2.0 / 1e12)
    assert meter.read(1.0)["samples_per_s"] == 0, "counts start over after a read"


def test_no_mfu_without_a_known_peak():
    assert "mfu" not in Meter(CONFIG, None).read(1.0)


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
    ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H100 80GB HBM3", "fp32", 989e12 / 2),
    ("NVIDIA A100-SXM4-80GB", "fp16", 312e12),
    ("Some Future Accelerator", "bf16", None),
])
def test_device_peaks_are_looked_up_by_name_and_precision(name: str, precision: str, peak: float | None):
    assert peak_for(name, precision) == peak
