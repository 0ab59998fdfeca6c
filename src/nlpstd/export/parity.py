"""Parity of the exported formats with the torch model, on held-out examples: a format ships only if it
predicts what the model that passed the gate predicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import Scored
from nlpstd.spec import ParitySpec


@dataclass
class Run:
    """One format's pass over the held-out examples."""

    logits: list[np.ndarray]
    scored: Scored


def max_abs_diff(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """The largest |difference| of any logit of any example (padding excluded: rows are unpadded)."""
    return max(float(np.abs(a - b).max()) for a, b in zip(reference, other))


def agreement(reference: Scored, other: Scored) -> float:
    """Share of identical predictions: per word for token tasks, per example for sequence tasks."""
    def flat(predictions: list) -> list:
        return [p for row in predictions for p in row] if predictions and isinstance(predictions[0], list) else predictions

    a, b = flat(reference.predictions), flat(other.predictions)
    return sum(x == y for x, y in zip(a, b)) / max(len(a), 1)


def compare(runs: dict[str, Run], metric: str) -> dict[str, dict]:
    """Per format: its scores, and against torch its max |Δlogit|, agreement and drop of `metric`.
    int8 is also compared with the fp32 graph it was quantized from."""
    reference = runs["torch"]
    base = reference.scored.metrics[metric]
    report = {"torch": headline(reference.scored.metrics)}
    for name, run in runs.items():
        if name == "torch":
            continue
        row = {**headline(run.scored.metrics),
               "max_abs_diff": max_abs_diff(reference.logits, run.logits),
               "agreement": agreement(reference.scored, run.scored),
               "metric_drop": base - run.scored.metrics[metric]}
        if name == "onnx-int8" and "onnx" in runs:
            row["agreement_with_onnx"] = agreement(runs["onnx"].scored, run.scored)
        report[name] = row
    return report


def violations(report: dict[str, dict], parity: ParitySpec, metric: str) -> list[str]:
    """What exceeds the standard's tolerances. The fp32 graph must match torch closely; every format
    must keep the metric. int8 logits differ by design, so only its metric is held to a bound."""
    found = []
    onnx = report.get("onnx")
    if onnx is not None:
        if onnx["max_abs_diff"] > parity.max_abs_diff:
            found.append(f"onnx: max |Δlogit| {onnx['max_abs_diff']:.2e} > export.parity.max_abs_diff {parity.max_abs_diff:g}")
        if onnx["agreement"] < parity.min_agreement:
            found.append(f"onnx: agreement {onnx['agreement']:.4%} < export.parity.min_agreement {parity.min_agreement:.4%}")
    for name, row in report.items():
        if name != "torch" and row["metric_drop"] > parity.max_metric_drop:
            found.append(f"{name}: {metric} {row[metric]:.4f} is {row['metric_drop']:.4f} below torch's "
                         f"{report['torch'][metric]:.4f} (export.parity.max_metric_drop {parity.max_metric_drop:g})")
    return found


INT8_FIX = ("to ship without int8, remove onnx-int8 from export.formats (or raise export.parity.max_metric_drop), "
            "then rerun with --stages export (the fine-tuned model is reused)")


def int8_fix(failures: list[str]) -> str | None:
    """The way out when int8 alone strays (`violations` lines start with the format's name): quantization
    lost too much, the model itself is fine. Export settings are no part of finetune's or evaluate's
    stage identity, so `--stages export` reuses both folders and only export runs again."""
    if failures and all(line.startswith("onnx-int8:") for line in failures):
        return INT8_FIX
    return None
