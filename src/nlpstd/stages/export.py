"""Stage 5, export: what a serving team takes over, only if the gate passed.

The Hugging Face folder with its model card, the ONNX formats the standard lists, each checked against
the torch model on held-out examples (a format that strays fails the stage before anything is
uploaded), a KServe manifest, the upload to `export.destination`, an MLflow pyfunc model of the served
format, and a registered model version that takes the champion alias if evaluation said it beat the champion.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from nlpstd.data import prepare as prep
from nlpstd.data.encode import Encoded, encode_data
from nlpstd.errors import GateFailed, NlpstdError, ParityFailed
from nlpstd.evaluate.scoring import score_logits
from nlpstd.export import destination as publication
from nlpstd.export import parity
from nlpstd.export.card import model_card
from nlpstd.export.onnx import MODEL_FILE, OnnxForward, export_onnx, quantize_int8
from nlpstd.export.serving import FOLDERS, inference_service, storage_uri
from nlpstd.fsutil import replace_dir
from nlpstd.inference import Forward, predict_logits, torch_forward
from nlpstd.jsonio import read_json, write_json
from nlpstd.models import ensemble
from nlpstd.models.build import count_parameters, load_model, load_tokenizer
from nlpstd.registry import Registry, decision_tags, history_entry, registry_for
from nlpstd.spec import Standard
from nlpstd.stages import identity
from nlpstd.stages.context import begin
from nlpstd.stages.output import partial_dir, write_metrics
from nlpstd.tracking import Tracker, numeric

log = logging.getLogger(__name__)

# What a Hugging Face folder needs; training leftovers stay behind.
_KEEP = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "nlpstd.json"}
MANIFEST = "inferenceservice.yaml"


def run(std: Standard, data_dir: Path, model_dir: Path, eval_dir: Path, out_dir: Path, tracker: Tracker | None = None,
        standard_file: str = "STANDARD.yaml", registry: Registry | None = None, kept_dir: Path | None = None,
        allow_other_inputs: bool = False) -> dict:
    """Writes `model/` (the Hugging Face folder, README.md card, `onnx/` and `onnx-int8/` as listed, the
    KServe manifest), `parity.json`, `standard.yaml`, `stage.json` and `metrics.json`. The registry
    defaults to the tracker's; untracked, nothing is registered.

    Publishing comes last, after every check and upload has succeeded, so that a failure leaves
    everything as it was. A model evaluation chose as the new champion (untracked: any model that
    passed the gate) goes to `out_dir` and to a new folder of `export.destination`, which then
    serves it; one that stays behind the champion is registered but goes to `kept_dir` (default
    `out_dir`), so the last good export in `out_dir` and at the destination stays where it is."""
    # -- inputs: this recipe's data, model and evaluation; the gate and the champion decision decide
    ctx = begin(std, data_dir, tracker, {"finetune": Path(model_dir).parent, "evaluate": Path(eval_dir)}, allow_other_inputs)
    tracker, data = ctx.tracker, ctx.data
    registry = registry or registry_for(tracker)
    evaluation, champion, destination = _decision(std, Path(eval_dir))
    wanted, name, slot = bool(champion.get("promote", True)), std.export.register_as or std.name, publication.new_slot()
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(model_dir, std.task)
    parameters, _ = count_parameters(model)
    data_info = read_json(Path(model_dir) / "nlpstd.json")
    split, held_out = _held_out(std, data, tokenizer)
    metric = std.evaluate.gate.metric

    # -- outputs, in the partial folder: published (or discarded) at the very end
    tmp = partial_dir(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        folder = tmp / "model"
        folder.mkdir()
        for path in Path(model_dir).iterdir():
            if path.name in _KEEP:
                shutil.copy2(path, folder / path.name)
        ensemble.copy_members(Path(model_dir), folder, data_info.get("ensemble"))  # an ensemble's other members
        if std.task == "token-classification":  # predict, the pyfunc model and ONNX decode entities as evaluation did
            write_json(folder / "nlpstd.json", {**data_info, "iob_repair": std.evaluate.iob_repair})
        report = _formats(std, model, tokenizer, held_out, data.labels, folder, scratch=tmp / "scratch")
        if "ensemble" in data_info:  # an ONNX graph holds every member: its folder names their seeds, no member folders
            for fmt in std.export.formats:
                if fmt != "safetensors":
                    info = folder / FOLDERS[fmt] / "nlpstd.json"
                    write_json(info, {**read_json(info), "ensemble": ensemble.in_graph(data_info["ensemble"])})
        checks = {"split": split, "examples": len(held_out.features), "metric": metric,
                  "tolerances": std.export.parity.model_dump(), "formats": report}
        write_json(tmp / "parity.json", checks)
        failures = parity.violations(report, std.export.parity, metric)
        if failures:  # the figures reach the tracker, the model reaches nothing
            tracker.log_metrics(_flat(report))
            tracker.log_artifact(tmp / "parity.json", "export")
            fix = parity.int8_fix(failures)
            raise ParityFailed(f"export stopped, nothing uploaded: the exported model strays from the torch model on "
                               f"{len(held_out.features)} {split} examples: " + "; ".join(failures) + (f"; {fix}" if fix else ""))

        sizes = {fmt: _format_size(folder, fmt) for fmt in std.export.formats}
        uri = storage_uri(std, slot)
        if uri:
            (folder / MANIFEST).write_text(yaml.safe_dump(inference_service(std, uri), sort_keys=False, allow_unicode=True),
                                           encoding="utf-8")
        evaluation["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
        card = model_card(std, fingerprint=data_info["data_fingerprint"], evaluation=evaluation, parameters=parameters,
                          standard_file=standard_file, parity=checks, sizes=sizes, manifest=MANIFEST if uri else None)
        (folder / "README.md").write_text(card, encoding="utf-8")
        (tmp / "standard.yaml").write_text(std.to_yaml(), encoding="utf-8")
        identity.write(tmp, "export", std, data.fingerprint)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        metrics = {"parameters": parameters, "size_bytes": size, "formats": list(std.export.formats),
                   "parity_split": split, "parity_metric": metric, "parity_examples": len(held_out.features), **_flat(report),
                   **{f"{_key(fmt)}_size_bytes": n for fmt, n in sizes.items()},
                   "stage_seconds": ctx.seconds()}

        # -- the destination's new folder (nothing serves it yet), then the tracker and the registry
        uploaded = publication.upload(folder, destination, slot) if destination else None
        tracker.log_artifact(folder, "model")
        if tracker.run_id:
            _log_pyfunc(folder, std.export.serving.format, tracker)
        tracker.log_artifact(tmp / "parity.json", "export")
        tracker.log_metrics(numeric({k: v for k, v in metrics.items() if k != "stage_seconds"}))
        if tracker.run_id:
            metrics.update(_register(std, champion, data_info["data_fingerprint"], tracker, registry, uploaded or ""))
        promoted = metrics.get("promoted", wanted)
        # evaluation's report can only say "promote, if export succeeds": here it did, and this is what happened
        metrics["champion_outcome"] = "promoted" if promoted else "kept"
        if uploaded and promoted:
            publication.point(destination, slot, {"registered_model": name, "version": metrics.get("registered_version"),
                                                  "spec_hash": std.spec_hash(), "data_fingerprint": data.fingerprint})
            metrics["destination"] = uploaded
        write_metrics(tmp, metrics)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    # -- publish locally: the champion replaces the last good export, anything else lands beside it
    target = Path(out_dir) if promoted else Path(kept_dir or out_dir)
    replace_dir(tmp, target)
    _announce(std, target, Path(out_dir), size, promoted, uploaded, destination, uri)
    return metrics


def _decision(std: Standard, eval_dir: Path) -> tuple[dict, dict, str | None]:
    """Evaluation's metrics, its champion decision, and the destination to publish to (none for a model
    that stays behind the champion). A failed gate stops here, and so does a destination that cannot
    take the export: checked with the standard's files already, again here, where a pipeline task starts."""
    evaluation = read_json(eval_dir / "metrics.json")
    gate = evaluation["gate"]
    if not gate["passed"]:
        raise GateFailed(f"export skipped: the gate failed ({gate['reason']})")
    champion = evaluation.get("champion", {})
    destination = std.export.destination if champion.get("promote", True) else None
    if destination:
        try:
            publication.check(destination, std.export.register_as or std.name)
        except NlpstdError as exc:
            raise NlpstdError(f"export.destination: {exc}") from None
    return evaluation, champion, destination


def _announce(std: Standard, target: Path, out_dir: Path, size: int, promoted: bool, uploaded: str | None,
              destination: str | None, uri: str | None) -> None:
    """Where the export went, and why there."""
    log.info(f"export: {target / 'model'} ({size / 1e6:.1f} MB, {', '.join(std.export.formats)})")
    if uploaded and promoted:
        log.info(f"export: published to {uploaded}; {destination}/{publication.POINTER} now names it")
    elif uploaded:
        log.info(f"export: uploaded to {uploaded}, but {destination}/{publication.POINTER} still names the champion's export")
    if not promoted:
        log.info(f"export: not the champion, so {target} holds it and {out_dir} keeps the last promoted export"
                 if target != out_dir else "export: not the champion")
    if not uri:
        log.info("export: no KServe manifest: set export.destination to s3://… (or export.serving.storage_uri) so a cluster can read the model")


def _held_out(std: Standard, data: prep.PreparedData, tokenizer) -> tuple[str, Encoded]:
    """The split parity is measured on: the standard's choice, else test when there is one."""
    split = std.export.parity.split or ("test" if "test" in data.splits else "validation")
    records = data.splits[split][: std.export.parity.max_examples]
    return split, encode_data(tokenizer, std.data, std.task, records, data.labels)


def _formats(std: Standard, model, tokenizer, held_out: Encoded, labels: list[str], folder: Path, scratch: Path) -> dict[str, dict]:
    """Writes each ONNX format (with the tokenizer and config beside it, so its folder serves alone) and
    scores torch and every format on the held-out examples. int8 is quantized from the fp32 graph,
    which is built and checked even when only int8 ships."""
    formats = std.export.formats
    threads = torch.get_num_threads()

    def scored(name: str, forward: Forward) -> parity.Run:
        logits = predict_logits(forward, held_out.features, std.finetune.eval_batch_size, pad_id=tokenizer.pad_token_id, desc=f"parity {name}")
        return parity.Run(logits, score_logits(logits, held_out, std.task, labels, std.evaluate.iob_repair))

    runs = {"torch": scored("torch", torch_forward(model, torch.device("cpu")))}
    if any(fmt.startswith("onnx") for fmt in formats):
        began = time.perf_counter()
        home = folder / FOLDERS["onnx"] if "onnx" in formats else scratch
        fp32 = export_onnx(model, home / MODEL_FILE, token_types="token_type_ids" in tokenizer.model_input_names)
        log.info(f"export: onnx graph written in {time.perf_counter() - began:.1f} s")
        runs["onnx"] = scored("onnx", OnnxForward(fp32, threads))
        if "onnx-int8" in formats:
            int8 = quantize_int8(fp32, folder / FOLDERS["onnx-int8"] / MODEL_FILE)
            runs["onnx-int8"] = scored("onnx-int8", OnnxForward(int8, threads))
        for fmt in formats:
            if fmt != "safetensors":
                for path in folder.iterdir():
                    if path.is_file() and path.name != "model.safetensors":
                        shutil.copy2(path, folder / FOLDERS[fmt] / path.name)
        shutil.rmtree(scratch, ignore_errors=True)
    report = parity.compare(runs, std.evaluate.gate.metric)
    for name, row in report.items():
        extra = "" if name == "torch" else f", max |Δlogit| {row['max_abs_diff']:.2e}, agreement {row['agreement']:.4%}"
        log.info(f"export: {name:<9} {std.evaluate.gate.metric} {row[std.evaluate.gate.metric]:.4f}{extra}")
    return report


def _log_pyfunc(folder: Path, fmt: str, tracker: Tracker) -> None:
    """The format the standard serves, as an MLflow pyfunc model under the run's `pyfunc/`: load it with
    `mlflow.pyfunc.load_model("runs:/<run id>/pyfunc")`. Written to a scratch folder, then logged like
    any artifact, so the stage still talks to MLflow through the tracker only."""
    from nlpstd.export.pyfunc import save_pyfunc  # imports MLflow: only when a run is tracked

    with tempfile.TemporaryDirectory(prefix="nlpstd-pyfunc-") as scratch:
        tracker.log_artifact(save_pyfunc(folder, Path(scratch) / "pyfunc", fmt), "pyfunc")


def _key(fmt: str) -> str:
    return fmt.replace("-", "_")


def _flat(report: dict[str, dict]) -> dict[str, float]:
    """`torch_f1`, `onnx_max_abs_diff`, `onnx_int8_agreement`, …: one metric per figure."""
    return {f"{_key(fmt)}_{name}": value for fmt, row in report.items() for name, value in row.items()}


def _format_size(folder: Path, fmt: str) -> int:
    """The bytes of a format's weights: an ensemble's safetensors are every member's."""
    if fmt != "safetensors":
        return (folder / FOLDERS[fmt] / MODEL_FILE).stat().st_size
    paths = [folder / "model.safetensors", *(folder / ensemble.MEMBERS).glob("*/model.safetensors")]
    return sum(path.stat().st_size for path in paths)


def _register(std: Standard, decision: dict, fingerprint: str, tracker: Tracker, registry: Registry,
              destination: str = "") -> dict:
    """A new version of `export.register_as`; the alias moves last, and only on evaluation's say-so.
    Here the decision is final (promoted, kept by evaluation, or kept because another run took the
    alias meanwhile), so here it joins the champion history."""
    name = std.export.register_as or std.name
    tags = {"nlpstd.spec_hash": std.spec_hash(), "nlpstd.data_fingerprint": fingerprint,
            "nlpstd.destination": destination, "nlpstd.formats": ",".join(std.export.formats),
            **decision_tags(decision)}
    version = registry.register(name, tracker.run_id, "model", tags)
    if decision.get("promote"):
        promoted, reason = registry.promote(name, version, decision.get("champion_version"))
    else:
        promoted, reason = False, decision.get("reason", "evaluation made no champion decision")
    registry.record(name, history_entry("promote" if promoted else "keep", decision, run_id=tracker.run_id,
                                        candidate_version=version, data_fingerprint=fingerprint,
                                        reason=decision.get("reason") if promoted else reason))
    tracker.set_tags({"nlpstd.registered_model": name, "nlpstd.registered_version": version,
                      "nlpstd.promoted": str(promoted).lower(), "nlpstd.promotion_reason": reason})
    log.info(f"export: registered {name} v{version}; {'now the champion' if promoted else 'champion unchanged'}: {reason}")
    return {"registered_model": name, "registered_version": version, "promoted": promoted, "promotion_reason": reason}
