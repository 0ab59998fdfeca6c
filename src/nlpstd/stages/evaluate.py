"""Stage 4, evaluate: score the fine-tuned model on validation and test, apply the gate, and score the
registry's champion on the same data to decide whether this model may take its place."""

from __future__ import annotations

import html
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd import jsonio
from nlpstd.data.encode import encode_data, record_pieces, words_and_offsets
from nlpstd.data.report import overlap_indices
from nlpstd.evaluate import report, robustness, significance
from nlpstd.evaluate.gate import GateResult, apply_gate
from nlpstd.evaluate.metrics import headline
from nlpstd.evaluate.scoring import Scored, score, subset_metrics
from nlpstd.models.build import load_model, load_tokenizer
from nlpstd.registry import Registry, decide, decision_tags, history_entry, registry_for
from nlpstd.spans import IobRepair, WordUnit, decode_entities, joined_words
from nlpstd.spec import Standard
from nlpstd.stages import identity
from nlpstd.stages.context import begin
from nlpstd.stages.output import staged, write_metrics
from nlpstd.tracking import Tracker

if TYPE_CHECKING:  # explain loads on demand: only a standard with evaluate.explain needs it
    from nlpstd.evaluate.explain import Case, Explanation

log = logging.getLogger(__name__)


def run(std: Standard, data_dir: Path, model_dir: Path, out_dir: Path, tracker: Tracker | None = None,
        registry: Registry | None = None, allow_other_inputs: bool = False) -> dict:
    """Writes `metrics.json` (per split, the gate, the champion decision), `gate.json`, `champion.json`,
    `report.md`, `plots/*.png`, `predictions_<split>.jsonl` and `stage.json`; with evaluate.explain also
    `explanations.json`, `explanations.html` and `explanations/*.png`. `model_dir` is the `model/` of this
    recipe's finetune output. The registry defaults to the tracker's."""
    # -- inputs: this recipe's prepared data and fine-tuned model
    ctx = begin(std, data_dir, tracker, {"finetune": Path(model_dir).parent}, allow_other_inputs)
    tracker, data, device, precision = ctx.tracker, ctx.data, ctx.device, ctx.precision
    registry = registry or registry_for(tracker)

    def load(folder: Path) -> tuple:
        return load_tokenizer(str(folder)), load_model(folder, std.task).to(device)

    def score_records(tokenizer, model, records: list[dict], desc: str):
        encoded = encode_data(tokenizer, std.data, std.task, records, data.labels)
        scored = score(model, encoded, std.task, data.labels, batch_size=std.finetune.eval_batch_size,
                       device=device, precision=precision, pad_id=tokenizer.pad_token_id, desc=desc,
                       iob_repair=std.evaluate.iob_repair)
        return scored, encoded.stats()

    # -- score every labelled split
    scores, scored_by_split, truncation = {}, {}, {}
    candidate = load(model_dir)
    for split in ("validation", "test"):
        if split in data.splits:
            scored_by_split[split], truncation[split] = score_records(*candidate, data.splits[split], f"evaluate {split}")
            scores[split] = scored_by_split[split].metrics
    gate = apply_gate(std.evaluate.gate, scores, has_test="test" in scores)
    refused = None
    if std.evaluate.robustness:
        for split in std.evaluate.robustness.splits or [gate.split]:
            scores[split]["robustness"] = _robustness(std, data, split, scores[split], gate.metric,
                                                      lambda records, desc: score_records(*candidate, records, desc)[0])
        gate, refused = _robustness_gate(gate, scores, std.evaluate.robustness.max_drop)
    explained = _explain(std, data, gate.split, scored_by_split, *candidate, device)  # None unless evaluate.explain
    clean = clean_scores(scored_by_split, overlap_indices(data_dir), std.task, data.labels)
    promote = std.evaluate.gate.promote
    confidence, resamples = (promote.confidence, promote.resamples) if promote else (0.95, significance.RESAMPLES)
    counts = {split: significance.example_counts(scored, std.task, data.labels) for split, scored in scored_by_split.items()}
    for split, split_counts in counts.items():  # how sure each headline figure is, for the report
        bounds = significance.intervals(split_counts, std.task, confidence, std.seed, resamples)
        scores[split]["intervals"] = {"confidence": confidence, **{metric: list(pair) for metric, pair in bounds.items()}}

    # -- the champion, scored on the same split of the same data
    with tempfile.TemporaryDirectory(prefix="nlpstd-champion-") as downloads:
        champion, champion_score, difference = registry.champion(std.export.register_as or std.name, Path(downloads)), None, None
        if champion is not None:
            scored, _ = score_records(*load(champion.model_dir), data.splits[gate.split], f"champion v{champion.version}")
            champion_score = float(scored.metrics[gate.metric])
            if promote and gate.metric not in significance.HEADLINE:
                log.warning(f"evaluate: gate.promote has no interval for {gate.metric!r} (only {', '.join(significance.HEADLINE)}); "
                            "the plain margin decides")
            elif promote:
                difference = significance.paired_difference(counts[gate.split], significance.example_counts(scored, std.task, data.labels),
                                                            std.task, gate.metric, confidence, std.seed, resamples)
    decision = decide(gate.metric, gate.split, gate.value, gate.threshold, std.evaluate.gate.min_delta,
                      champion_score, champion.version if champion else None, std.evaluate.gate.promote_ties,
                      difference, confidence if difference else None, refused)

    # -- outputs
    with staged(out_dir) as tmp:
        plots = []
        for split, metrics in scores.items():
            if "per_type" in metrics:
                plots.append(report.plot_per_type_f1(metrics["per_type"], tmp / "plots" / f"per_type_f1_{split}.png"))
            if "confusion_matrix" in metrics:
                plots.append(report.plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], tmp / "plots" / f"confusion_{split}.png"))
            _write_predictions(tmp / f"predictions_{split}.jsonl", data.splits[split], scored_by_split[split],
                               candidate[0], std.evaluate.iob_repair, std.data.word_unit)
        _write_explanations(tmp, explained)
        extra = {"data fingerprint": data.fingerprint, "spec hash": std.spec_hash(), "model": str(model_dir)}
        for split, stats in truncation.items():
            extra[f"truncated ({split})"] = (
                f"{stats['truncated']} of {stats['examples']} examples exceed max_length {std.data.max_length}"
                f" ({stats['dropped']} {'words predicted O' if std.task == 'token-classification' else 'sub-words cut'})"
            )
            if stats["windowed"]:
                extra[f"windowed ({split})"] = (
                    f"{stats['windowed']} examples split into windows sharing {std.data.stride} sub-words; "
                    f"truncation would have dropped {stats['kept_by_windows']} of their words")
        report.write_report(tmp / "report.md", standard_name=std.name, task=std.task, scores=scores,
                            gate=gate, plots=plots, extra=extra, decision=decision.to_dict(), clean=clean,
                            explanations=explained)
        jsonio.write_json(tmp / "gate.json", gate.to_dict())
        identity.write(tmp, "evaluate", std, data.fingerprint)
        jsonio.write_json(tmp / "champion.json", {**decision.to_dict(), "data_fingerprint": data.fingerprint})
        flat = {f"{split}_{k}": v for split, m in scores.items() for k, v in headline(m).items()}
        flat.update({f"{split}_clean_{k}": v for split, c in clean.items() for k, v in headline(c["metrics"]).items()})
        seconds = ctx.seconds()
        write_metrics(tmp, {**flat, "scores": scores, "gate": gate.to_dict(), "champion": decision.to_dict(),
                            "truncation": truncation, "clean": clean, "stage_seconds": seconds})

    per_name = {f"{split}_f1_{name}": row["f1"] for split, m in scores.items()
                for name, row in (m.get("per_type") or m.get("per_label") or {}).items()}
    per_name.update({f"{split}_{name}_{key}": row[key] for split, m in scores.items()
                     for name, row in m.get("robustness", {}).items() for key in (gate.metric, "drop")})
    tracker.log_metrics({**flat, **per_name})
    tracker.set_tags({"nlpstd.gate": "passed" if gate.passed else "failed", "nlpstd.gate_reason": gate.reason,
                      "nlpstd.precision": precision, **decision_tags(decision.to_dict())})
    if not gate.passed:  # export will not run, so this keep is final: it joins the champion history here
        registry.record(std.export.register_as or std.name, history_entry(
            "keep", decision.to_dict(), run_id=tracker.run_id, candidate_version=None, data_fingerprint=data.fingerprint))
    for name in ("report.md", "gate.json", "champion.json", "plots", *(EXPLANATIONS if explained else ())):
        tracker.log_artifact(Path(out_dir) / name, f"evaluate/{name}" if (Path(out_dir) / name).is_dir() else "evaluate")
    log.info(f"evaluate: {', '.join(f'{k} {v:.4f}' for k, v in flat.items())}")
    log.info(f"evaluate: gate {'PASSED' if gate.passed else 'FAILED'}: {gate.reason}")
    log.info(f"evaluate: champion {'PROMOTE, if export succeeds' if decision.promote else 'KEEP'}: {decision.reason}")
    return {**flat, "gate_passed": gate.passed, "stage_seconds": seconds}


def _robustness(std: Standard, data, split: str, clean: dict, metric: str, scored: Callable[[list[dict], str], Scored]) -> dict:
    """Per perturbation that applies to the split: its headline scores and the drop of `metric` from the clean score."""
    spec, records = std.evaluate.robustness, data.splits[split]
    results = {}
    for name in robustness.applicable(spec.perturbations, records, std.task):
        perturbed = robustness.perturb(records, name, spec.rate, std.seed, data.splits["train"])
        metrics = headline(scored(perturbed, f"robustness {split} {name}").metrics)
        results[name] = {**metrics, "drop": clean[metric] - metrics[metric]}
        log.info(f"evaluate: {split} under {name}: {metric} {metrics[metric]:.4f} (drop {results[name]['drop']:+.4f})")
    return results


EXPLANATIONS = ("explanations.json", "explanations.html", "explanations")  # what evaluate.explain adds


def _explain(std: Standard, data, gate_split: str, scored_by_split: dict[str, Scored], tokenizer, model,
             device) -> dict | None:
    """With evaluate.explain, the attributions of up to `examples` errors and as many successes of its
    split (the gate's by default): explanations.json's content, each picture named but not yet drawn.
    The label explained is the one the model predicts in fp32, which scoring under bf16 may, on a knife
    edge, not share: each caption names both."""
    spec = std.evaluate.explain
    if spec is None:
        return None
    from nlpstd.evaluate.explain import explain_text, explain_word, pick_cases

    split = spec.split or gate_split
    scored, records, started = scored_by_split[split], data.splits[split], time.perf_counter()
    id2label = dict(enumerate(data.labels))
    settings = {"id2label": id2label, "steps": spec.steps, "max_length": std.data.max_length, "device": device}
    examples, numbers = [], {"error": 0, "success": 0}
    for case in pick_cases(scored.gold, scored.predictions, std.task, spec.examples, std.seed):
        record, gold, pred = records[case.index], scored.gold[case.index], scored.predictions[case.index]
        number = numbers[case.kind] + 1
        name = f"{case.kind} {number}, " + (f"line {record['line']}" if record.get("line") else f"example {case.index + 1}")
        if std.task == "token-classification":
            words = record_pieces(tokenizer, record, std.data.word_unit)[0]
            try:
                explanation = explain_word(model, tokenizer, words, case.word, stride=std.data.stride, **settings)
            except ValueError as exc:  # a gold entity missed because truncation cut it away: the model never saw it
                log.info(f"evaluate: not explaining {name}: {exc}")
                continue
            caption, detail = _entity_caption(name, case, words, gold, pred, explanation)
            text = _text_and_offsets(tokenizer, record, std.data.word_unit)[0]
        else:
            explanation = explain_text(model, tokenizer, record["text"], text_pair=record.get("text_pair"), **settings)
            caption = f"{name}: gold {gold}, predicted {pred}; explained: {explanation.target} ({explanation.probability:.2f})"
            text, detail = record["text"], {"gold": gold, "predicted": pred}
        numbers[case.kind] = number
        examples.append({"kind": case.kind, "index": case.index, "line": record.get("line"), "text": text, **detail,
                         "caption": caption, "picture": f"explanations/{case.kind}_{number}.png",
                         "attributions": explanation.to_dict()})
    seconds = round(time.perf_counter() - started, 2)
    log.info(f"evaluate: explained {len(examples)} {split} examples ({spec.steps} steps) in {seconds:.2f}s")
    return {"split": split, "steps": spec.steps, "seconds": seconds, "examples": examples}


def _entity_caption(name: str, case: Case, words: list[str], gold: list[str], pred: list[str],
                    explanation: Explanation) -> tuple[str, dict]:
    """An NER case's caption (the entity found or missed, the tag explained and where) and its details."""
    label, first, end = case.entity
    mention, at = " ".join(words[first:end]), words[case.word]
    said = f"predicted {label} '{mention}'" if case.found else f"missed {label} '{mention}'"
    if case.found and case.kind == "error":
        said += f" (gold tag {gold[case.word]} at '{at}')"
    caption = f"{name}: {said}; explained: {explanation.target} at '{at}' ({explanation.probability:.2f})"
    detail = {"gold": gold[case.word], "predicted": pred[case.word],
              "entity": {"label": label, "text": mention, "words": [first, end], "found": case.found}}
    return caption, detail


def _write_explanations(folder: Path, explained: dict | None) -> None:
    """explanations.json, a picture per example (what the report and MLflow show) and explanations.html."""
    if explained is None:
        return
    snippets = []
    for example in explained["examples"]:
        words, scores, marked = (example["attributions"][key] for key in ("words", "scores", "word"))
        report.plot_explanation(words, scores, folder / example["picture"], example["caption"], marked)
        snippets.append(report.explanation_html(words, scores, example["caption"], marked))
    jsonio.write_json(folder / "explanations.json", explained)
    page = (f"<!doctype html><meta charset=\"utf-8\"><title>Explanations ({html.escape(explained['split'])})</title>"
            "<body style=\"font-family:sans-serif;max-width:60em\">" + "\n".join(snippets) + "</body>\n")
    (folder / "explanations.html").write_text(page, encoding="utf-8")
    (folder / "explanations").mkdir(exist_ok=True)  # the folder MLflow logs, even with no example to draw


def _robustness_gate(gate: GateResult, scores: dict[str, dict], max_drop: float | None) -> tuple[GateResult, str | None]:
    """The gate, failed when the worst drop under a perturbation exceeds `max_drop`; and why, if so."""
    drops = [(row["drop"], name, split) for split, m in scores.items() for name, row in m.get("robustness", {}).items()]
    if max_drop is None or not drops or max(drops)[0] <= max_drop:
        return gate, None
    drop, name, split = max(drops)
    why = f"{gate.metric} drops {drop:.4f} on {split} under {name}, more than robustness.max_drop {max_drop:.4f}"
    return replace(gate, passed=False, reason=f"{gate.reason}; but {why}"), why


def clean_scores(scored_by_split: dict[str, Scored], overlap: dict[str, list[int]], task: str,
                 labels: list[str]) -> dict[str, dict]:
    """Each split scored again without the examples data-prep found in train (`<split>_clean`): a
    score on sentences the model was trained on measures memory. The gate still reads the whole
    split, as published scores do. A split with no overlap (or nothing left) gets no entry."""
    clean = {}
    for split, scored in scored_by_split.items():
        excluded = set(overlap.get(split, ()))
        keep = [i for i in range(len(scored.gold)) if i not in excluded]
        if excluded and keep:
            clean[split] = {"examples": len(keep), "excluded": len(scored.gold) - len(keep),
                            "metrics": subset_metrics(scored, keep, task, labels)}
    return clean


def _write_predictions(path: Path, records: list[dict], scored: Scored, tokenizer, iob_repair: IobRepair,
                       word_unit: WordUnit) -> None:
    """One row per example, gold and predicted labels. Token tasks add the entities the span decoder
    finds, as `predict` returns them, located in the example's `text` (CoNLL words joined by single
    spaces), so a reader sees exactly what the scores counted."""
    with open(path, "w", encoding="utf-8") as out:
        for i, (record, gold, pred) in enumerate(zip(records, scored.gold, scored.predictions)):
            row = {"line": record.get("line"), "gold": gold, "pred": pred}
            row.update({"tokens": record["tokens"]} if "tokens" in record else {"text": record["text"]})
            if scored.word_scores:
                text, offsets = _text_and_offsets(tokenizer, record, word_unit)
                row.update(text=text, entities=decode_entities(text, offsets, pred, scored.word_scores[i], iob_repair))
            out.write(jsonio.dumps(row) + "\n")


def _text_and_offsets(tokenizer, record: dict, word_unit: WordUnit) -> tuple[str, list[tuple[int, int]]]:
    """The text an example's entities are located in, and its words' offsets: the words the model
    scored, split as encoding split them."""
    if "tokens" in record:
        return joined_words(record["tokens"])
    return record["text"], [offsets for _, offsets in words_and_offsets(tokenizer, record["text"], word_unit)]
