"""benchmarks/hf_baseline.py: the alternating run order, the statistics over pairs of runs (pure),
and one end-to-end run of two pairs on the tiny NER standard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks are scripts, importing their siblings

import hf_baseline as bench  # noqa: E402


def run(f1: float, train: float, total: float, rate: float) -> dict:
    return {"f1": f1, "train_seconds": train, "total_seconds": total, "train_samples_per_s": rate}


def pair(trainer_train: float, nlpstd_train: float, trainer_f1: float = 0.9, nlpstd_f1: float = 0.9) -> dict:
    """A pair whose three ratios all equal trainer_train / nlpstd_train (rates inverse to the seconds)."""
    return {"trainer": run(trainer_f1, trainer_train, 2 * trainer_train, 100 / trainer_train),
            "nlpstd": run(nlpstd_f1, nlpstd_train, 2 * nlpstd_train, 100 / nlpstd_train)}


def test_the_first_runner_alternates_pair_by_pair():
    assert bench.schedule(3) == [(1, "trainer"), (1, "nlpstd"), (2, "nlpstd"), (2, "trainer"), (3, "trainer"), (3, "nlpstd")]
    assert bench.schedule(1) == [(1, "trainer"), (1, "nlpstd")]


def test_one_pair_is_its_own_median_and_range_without_quartiles():
    summary = bench.summarize([pair(12.0, 10.0)], "f1")
    assert summary["pairs"] == 1
    for key in ("train_seconds", "total_seconds", "train_samples_per_s"):
        assert summary["ratios"][0][key] == pytest.approx(1.2)  # above 1: nlpstd is faster, whichever the unit
        assert summary["speedup"][key] == pytest.approx({"median": 1.2, "min": 1.2, "max": 1.2})


def test_odd_count_takes_the_middle_ratio_even_count_the_mean_of_the_two_middle_ones():
    odd = bench.summarize([pair(t, 10.0) for t in (30.0, 10.0, 12.0)], "f1")["speedup"]["train_seconds"]
    assert odd == pytest.approx({"median": 1.2, "min": 1.0, "max": 3.0})
    even = bench.summarize([pair(t, 10.0) for t in (10.0, 30.0, 12.0, 14.0)], "f1")["speedup"]["train_seconds"]
    assert even["median"] == pytest.approx(1.3)
    assert (even["min"], even["max"]) == pytest.approx((1.0, 3.0))


def test_the_interquartile_range_appears_from_four_pairs_and_ignores_one_outlier():
    three = bench.summarize([pair(t, 10.0) for t in (11.0, 12.0, 13.0)], "f1")["speedup"]["total_seconds"]
    assert "iqr" not in three
    five = bench.summarize([pair(t, 10.0) for t in (11.0, 12.0, 13.0, 14.0, 90.0)], "f1")["speedup"]["total_seconds"]
    assert (five["q1"], five["median"], five["q3"]) == pytest.approx((1.2, 1.3, 1.4))  # inclusive quartiles
    assert five["iqr"] == pytest.approx(0.2) and five["max"] == pytest.approx(9.0)


def test_the_pass_rule_compares_medians_of_the_validation_metric():
    close = [pair(10.0, 10.0, 0.90, f) for f in (0.80, 0.896, 0.897)]  # one bad nlpstd run does not move the median
    summary = bench.summarize(close, "f1")
    assert summary["metric"]["nlpstd"] == pytest.approx({"median": 0.896, "min": 0.80, "max": 0.897})
    assert summary["difference"] == pytest.approx(-0.004) and summary["passed"]
    behind = bench.summarize([pair(10.0, 10.0, 0.90, 0.894)], "f1")
    assert behind["difference"] == pytest.approx(-0.006) and not behind["passed"]


def test_no_pairs_is_an_error():
    with pytest.raises(ValueError):
        bench.summarize([], "f1")


def test_two_alternating_pairs_run_end_to_end_on_the_tiny_standard(ner_standard, tmp_path):
    """About half a minute on a 2-core CPU: four fresh processes, two steps each."""
    out = tmp_path / "bench"
    command = [sys.executable, str(BENCHMARKS / "hf_baseline.py"), "--standard", str(ner_standard),
               "--max-steps", "2", "--repeats", "2", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| median (min-max) |" in done.stdout and "nlpstd - Trainer, medians:" in done.stdout

    report = json.loads((out / "hf_baseline.json").read_text())
    assert [(r["pair"], r["runner"]) for r in report["runs"]] == bench.schedule(2)
    assert {r["precision"] for r in report["runs"]} == {report["precision"]}  # the same precision on both sides
    assert {r["steps"] for r in report["runs"]} == {2}
    assert report["summary"]["pairs"] == 2 and len(report["summary"]["ratios"]) == 2
    assert report["passed"] == report["summary"]["passed"]
