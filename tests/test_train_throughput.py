"""benchmarks/train_throughput.py: the table's arithmetic, the counting of timed steps, its entity F1,
and that it imports where nlpstd's settings, tracking and metrics libraries are not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import conll_text

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks are scripts, importing their siblings

import train_throughput as bench  # noqa: E402


def raw(seconds: float, samples: int, tokens: int, flops: float = 0.0) -> dict:
    return {"seconds": seconds, "samples": samples, "real_tokens": tokens, "padded_tokens": tokens, "model_flops": flops}


def test_ratio_is_samples_per_s_for_mlm_and_real_tokens_per_s_for_ner():
    results = {
        "mlm-base": {"kind": "mlm", "runners": {"Trainer eager": raw(2.0, 100, 12_800, 1e12),
                                                "nlpstd compiled": raw(1.0, 150, 12_800, 1.5e12)}},
        # same samples/s, three times the real tokens/s: NER's ratio must follow the tokens
        "cpu": {"kind": "ner", "runners": {"Trainer eager": raw(4.0, 128, 2_000), "nlpstd eager": raw(2.0, 64, 3_000)}},
    }
    rows = {(r["case"], r["runner"]): r for r in bench.table_rows(results, peak=1e12)}

    assert rows["mlm-base", "Trainer eager"]["vs_trainer"] == 1.0
    assert rows["mlm-base", "nlpstd compiled"]["vs_trainer"] == pytest.approx(3.0)  # 150/s over 50/s
    assert rows["mlm-base", "Trainer eager"]["mfu"] == pytest.approx(0.5)  # 1e12 FLOPs in 2 s on a 1e12 FLOP/s peak
    assert rows["cpu", "nlpstd eager"]["samples_per_s"] == rows["cpu", "Trainer eager"]["samples_per_s"] == 32.0
    assert rows["cpu", "nlpstd eager"]["vs_trainer"] == pytest.approx(3.0)  # 1,500 over 500 real tokens/s

    table = bench.markdown_table(bench.table_rows(results, peak=None)).splitlines()
    assert table[0] == "| case | runner | samples/s | real tokens/s | MFU | vs Trainer eager |"
    assert "| cpu | nlpstd eager | 32.0 | 1,500 | n/a | 3.00x |" in table


def test_ratio_is_not_applicable_without_a_trainer_eager_row():
    rows = bench.table_rows({"cpu": {"kind": "ner", "runners": {"nlpstd eager": raw(1.0, 8, 80)}}}, peak=None)
    assert rows[0]["vs_trainer"] is None
    assert bench.markdown_table(rows).endswith("| cpu | nlpstd eager | 8.0 | 80 | n/a | n/a |")


def test_both_runners_count_real_tokens_of_the_timed_steps_only(tmp_path):
    from transformers import BertForTokenClassification, DataCollatorForTokenClassification

    from nlpstd.data.conll import read_conll
    from nlpstd.data.encode import encode
    from nlpstd.data.prepare import label_set
    from nlpstd.models.build import load_tokenizer, resolve_base

    tokenizer = load_tokenizer(resolve_base("minilm-l6"))
    records = read_conll("train.txt", conll_text(24))
    labels = label_set("token-classification", records)
    features = encode(tokenizer, "token-classification", records, labels, 32).features
    config = bench.scratch_config("tiny", len(tokenizer), tokenizer.pad_token_id, num_labels=len(labels))
    objective, _ = bench.nlpstd_batching(features, 4, "budget", seed=0, pad_id=tokenizer.pad_token_id)
    work = bench.Workload("ner", bench.seeded(lambda: BertForTokenClassification(config), 0), bench.trainer_features(features),
                          DataCollatorForTokenClassification(tokenizer), objective)
    args = SimpleNamespace(steps=2, warmup=1, seed=0, loader_workers="2")  # nlpstd collates in worker processes
    cpu = torch.device("cpu")

    trainer = bench.time_trainer(work, args, 4, cpu, "fp32", False, tmp_path)
    nlpstd = bench.time_nlpstd(work, args, 4, cpu, "fp32", False, tmp_path)

    second = objective().batches(0)[1]  # nlpstd's step 2: the only timed one
    assert nlpstd["steps"] == 1 and nlpstd["samples"] == len(second)
    assert nlpstd["real_tokens"] == sum(len(features[i]["input_ids"]) for i in second)
    assert trainer["steps"] == 1 and trainer["samples"] == 4
    assert 4 * 7 <= trainer["real_tokens"] <= trainer["padded_tokens"]  # the shortest sentence: 5 words + [CLS], [SEP]
    row = bench.table_rows({"ner": {"kind": "ner", "runners": {"Trainer eager": trainer, "nlpstd eager": nlpstd}}}, None)[1]
    expected = (nlpstd["real_tokens"] / nlpstd["seconds"]) / (trainer["real_tokens"] / trainer["seconds"])
    assert row["vs_trainer"] == pytest.approx(expected)


def test_entity_f1_matches_nlpstds_seqeval_scores():
    from nlpstd.evaluate.metrics import ner_metrics

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"], ["B-MISC", "B-MISC", "O"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"],  # a stray I- starts an entity: LOC found
            ["O", "B-ORG", "I-ORG", "O"],  # half an entity is a miss
            ["B-MISC", "I-MISC", "O"]]  # two entities merged into one: both missed, one wrong
    ours, theirs = bench.entity_f1(gold, pred), ner_metrics(gold, pred)
    for key in ("f1", "precision", "recall"):
        assert ours[key] == pytest.approx(theirs[key])
    assert ours["recall"] == pytest.approx(2 / 5)


def test_named_shapes_buckets_and_recipe_fields_follow_nlpstds_settings():
    from nlpstd.spec import SIZES, FinetuneSpec, budget_widths

    assert bench.SHAPES == SIZES
    std = SimpleNamespace(finetune=SimpleNamespace(token_budget=None), data=SimpleNamespace(max_length=128))
    assert bench.bucket_widths(128) == budget_widths(std)
    assert set(bench.Recipe.__dataclass_fields__) <= set(FinetuneSpec.model_fields)


def test_imports_without_pydantic_mlflow_seqeval_or_boto3():
    """The GPU image has torch, transformers and accelerate, but none of nlpstd's other libraries."""
    blocked = ("pydantic", "mlflow", "seqeval", "kfp", "boto3", "botocore", "sklearn")
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
            f"sys.path.insert(0, {str(BENCHMARKS)!r})\nimport train_throughput\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_full_fine_tuning_trains_both_runners_the_same_steps_and_reports_the_test_f1_difference(tmp_path):
    import json

    data = tmp_path / "data" / "conll2003"
    data.mkdir(parents=True)
    for split, n, offset in (("train", 48, 0), ("dev", 12, 100), ("test", 12, 200)):
        (data / f"{split}.txt").write_text(conll_text(n, offset))

    assert bench.main(["--full-finetune", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                       "--compile", "off"]) == 0

    report = json.loads((tmp_path / "out" / "full_finetune.json").read_text())
    trainer, nlpstd = report["rows"]
    assert trainer["runner"] == "Trainer eager" and nlpstd["runner"] == "nlpstd eager"
    assert trainer["steps"] == nlpstd["steps"] == 3 * 2  # 3 epochs of 48 sentences in batches of 32
    assert report["test_f1_difference"] == pytest.approx(nlpstd["test_f1"] - trainer["test_f1"])
    assert all(0.0 <= row[key] <= 1.0 for row in report["rows"] for key in ("dev_f1", "test_f1"))
