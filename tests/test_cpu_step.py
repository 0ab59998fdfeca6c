"""benchmarks/cpu_step.py: its ratios, that each variant changes the one thing it names, and a
run that reports every variant."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForTokenClassification

from conftest import conll_text

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks are scripts, importing their siblings

import cpu_step as bench  # noqa: E402


def tiny_bert() -> BertForTokenClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32, num_labels=3, attn_implementation="sdpa")
    return BertForTokenClassification(config)


def test_block_ratio_is_the_references_seconds_over_the_variants_after_the_warmup():
    reference = [9.0] * bench.WARMUP + [2.0] * 20
    faster = [0.1] * bench.WARMUP + [1.0] * 10 + [0.5] * 10

    assert bench.block_ratios(reference, faster) == [2.0, 4.0]  # the warm-up steps count for neither


@pytest.mark.parametrize("name", bench.VARIANTS)
def test_each_variant_changes_only_what_it_names(name: str):
    variant = bench.make_variant(name, tiny_bert, "bf16")
    reference = bench.make_variant("nlpstd", tiny_bert, "bf16")
    dropouts = [m.p for m in variant.model.modules() if isinstance(m, torch.nn.Dropout)]
    fused = variant.optimizer.defaults["fused"]

    assert (variant.precision == "fp32") == (name == "fp32")
    assert variant.bit_masks == (name not in ("torch-dropout", "no-dropout-sdpa"))
    assert all(p == 0 for p in dropouts) == name.startswith("no-dropout")
    assert variant.model.get_input_embeddings().weight.requires_grad == (name != "frozen-word-embeddings")
    assert bool(fused) == (name != "foreach-adamw")
    assert reference.optimizer.defaults["fused"]


def test_a_run_reports_every_variant(tmp_path, capsys):
    (tmp_path / "conll2003").mkdir()
    (tmp_path / "conll2003" / "train.txt").write_text(conll_text(32 * 16))

    assert bench.main(["--data", str(tmp_path), "--steps", "15", "--variants", "torch-dropout,no-dropout"]) == 0

    table = capsys.readouterr().out.split("| variant |")[1]
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["nlpstd", "torch-dropout", "no-dropout"]
    assert "| nlpstd | " in table and "| 1.000x |" in table


def test_too_little_data_for_one_timed_block_is_refused(tmp_path):
    (tmp_path / "conll2003").mkdir()
    (tmp_path / "conll2003" / "train.txt").write_text(conll_text(32 * 4))

    with pytest.raises(SystemExit, match="at least 15 are needed"):
        bench.main(["--data", str(tmp_path), "--steps", "15"])
