"""Stage 4, evaluate: score the fine-tuned model on validation and test, apply the gate, and score the
registry's champion on the same data to decide whether this model may take its place."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from nlpstd import runtime
from nlpstd.data import prepare as prep
from nlpstd.data.encode import encode
from nlpstd.evaluate import report
from nlpstd.evaluate.gate import apply_gate
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import score
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.registry import Registry, decide, decision_tags, registry_for
from nlpstd.spec import Standard
from nlpstd.stages.output import staged, write_metrics
from nlpstd.tracking import NullTracker, Tracker


def run(std: Standard, data_dir: Path, model_dir: Path, out_dir: Path, tracker: Tracker | None = None,
        registry: Registry | None = None) -> dict:
    """Writes `metrics.json` (per split, the gate, the champion decision), `gate.json`, `champion.json`,
    `report.md`, `plots/*.png` and `predictions_<split>.jsonl`. The registry defaults to the tracker's."""
    tracker = tracker or NullTracker()
    registry = registry or registry_for(tracker)
    started = time.perf_counter()

    # -- inputs
    data = prep.load(data_dir)
    device = runtime.setup(std.runtime, std.seed)
    precision = runtime.resolve_precision(std.runtime, device)

    def load(folder: Path) -> tuple:
        return load_tokenizer(str(folder)), load_model(folder, std.task).to(device)

    def score_split(tokenizer, model, split: str, desc: str):
        encoded = encode(tokenizer, std.task, data.splits[split], data.labels, std.data.max_length, std.data.label_subwords)
        scored = score(model, encoded, std.task, data.labels, batch_size=std.finetune.eval_batch_size,
                       device=device, precision=precision, pad_id=tokenizer.pad_token_id, desc=desc)
        return scored, encoded.stats()

    # -- score every labelled split
    scores, scored_by_split, truncation = {}, {}, {}
    candidate = load(model_dir)
    for split in ("validation", "test"):
        if split in data.splits:
            scored_by_split[split], truncation[split] = score_split(*candidate, split, f"evaluate {split}")
            scores[split] = scored_by_split[split].metrics
    gate = apply_gate(std.evaluate.gate, scores, has_test="test" in scores)

    # -- the champion, scored on the same split of the same data
    with tempfile.TemporaryDirectory(prefix="nlpstd-champion-") as downloads:
        champion, champion_score = registry.champion(std.export.register_as or std.name, Path(downloads)), None
        if champion is not None:
            scored, _ = score_split(*load(champion.model_dir), gate.split, f"champion v{champion.version}")
            champion_score = float(scored.metrics[gate.metric])
    decision = decide(gate.metric, gate.split, gate.value, gate.threshold, std.evaluate.gate.min_delta,
                      champion_score, champion.version if champion else None)

    # -- outputs
    with staged(out_dir) as tmp:
        plots = []
        for split, metrics in scores.items():
            if "per_type" in metrics:
                plots.append(report.plot_per_type_f1(metrics["per_type"], tmp / "plots" / f"per_type_f1_{split}.png"))
            if "confusion_matrix" in metrics:
                plots.append(report.plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], tmp / "plots" / f"confusion_{split}.png"))
            _write_predictions(tmp / f"predictions_{split}.jsonl", data.splits[split], scored_by_split[split])
        extra = {"data fingerprint": data.fingerprint, "spec hash": std.spec_hash(), "model": str(model_dir)}
        for split, stats in truncation.items():
            extra[f"truncated ({split})"] = (
                f"{stats['truncated']} of {stats['examples']} examples exceed max_length {std.data.max_length}"
                f" ({stats['dropped']} {'words predicted O' if std.task == 'token-classification' else 'sub-words cut'})"
            )
        report.write_report(tmp / "report.md", standard_name=std.name, task=std.task, scores=scores,
                            gate=gate, plots=plots, extra=extra, decision=decision.to_dict())
        (tmp / "gate.json").write_text(json.dumps(gate.to_dict(), indent=2))
        (tmp / "champion.json").write_text(json.dumps({**decision.to_dict(), "data_fingerprint": data.fingerprint}, indent=2))
        flat = {f"{split}_{k}": v for split, m in scores.items() for k, v in headline(m).items()}
        seconds = round(time.perf_counter() - started, 2)
        write_metrics(tmp, {**flat, "scores": scores, "gate": gate.to_dict(), "champion": decision.to_dict(),
                            "truncation": truncation, "stage_seconds": seconds})

    per_name = {f"{split}_f1_{name}": row["f1"] for split, m in scores.items()
                for name, row in (m.get("per_type") or m.get("per_label") or {}).items()}
    tracker.log_metrics({**flat, **per_name})
    tracker.set_tags({"nlpstd.gate": "passed" if gate.passed else "failed", "nlpstd.gate_reason": gate.reason,
                      **decision_tags(decision.to_dict())})
    for name in ("report.md", "gate.json", "champion.json", "plots"):
        tracker.log_artifact(Path(out_dir) / name, "evaluate" if name != "plots" else "evaluate/plots")
    print(f"evaluate: {', '.join(f'{k} {v:.4f}' for k, v in flat.items())}")
    print(f"evaluate: gate {'PASSED' if gate.passed else 'FAILED'}: {gate.reason}")
    print(f"evaluate: champion {'PROMOTE' if decision.promote else 'KEEP'}: {decision.reason}")
    return {**flat, "gate_passed": gate.passed, "stage_seconds": seconds}


def _write_predictions(path: Path, records: list[dict], scored) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record, gold, pred in zip(records, scored.gold, scored.predictions):
            row = {"line": record.get("line"), "gold": gold, "pred": pred}
            row.update({"tokens": record["tokens"]} if "tokens" in record else {"text": record["text"]})
            out.write(json.dumps(row) + "\n")
