"""Stage 5, export: the deliverable Hugging Face folder with its model card, only if the gate passed;
registered as a new model version, which takes the champion alias if evaluation said it beat the champion."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nlpstd import storage
from nlpstd.errors import GateFailed
from nlpstd.export.card import model_card
from nlpstd.models.build import count_parameters, load_model
from nlpstd.registry import Registry, decision_tags, registry_for
from nlpstd.spec import Standard
from nlpstd.stages.output import read_json, staged, write_metrics
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train.checkpoint import replace_dir

# What a Hugging Face folder needs; training leftovers stay behind.
_KEEP = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "nlpstd.json"}


def run(std: Standard, model_dir: Path, eval_dir: Path, out_dir: Path, tracker: Tracker | None = None,
        standard_file: str = "STANDARD.yaml", registry: Registry | None = None) -> dict:
    """Writes `model/` (config with the label map, model.safetensors, tokenizer, README.md card) and `metrics.json`.
    The registry defaults to the tracker's; untracked, nothing is registered."""
    tracker = tracker or NullTracker()
    registry = registry or registry_for(tracker)
    started = time.perf_counter()

    # -- inputs: the gate decides
    evaluation = read_json(Path(eval_dir) / "metrics.json")
    gate = evaluation["gate"]
    if not gate["passed"]:
        raise GateFailed(f"export skipped: the gate failed ({gate['reason']})")
    model = load_model(model_dir, std.task)
    parameters, _ = count_parameters(model)
    data_info = read_json(Path(model_dir) / "nlpstd.json")

    # -- outputs
    with staged(out_dir) as tmp:
        folder = tmp / "model"
        folder.mkdir()
        for path in Path(model_dir).iterdir():
            if path.name in _KEEP:
                shutil.copy2(path, folder / path.name)
        evaluation["labels"] = [model.config.id2label[i] for i in range(model.config.num_labels)]
        card = model_card(std, fingerprint=data_info["data_fingerprint"], evaluation=evaluation,
                          parameters=parameters, standard_file=standard_file)
        (folder / "README.md").write_text(card, encoding="utf-8")
        (tmp / "standard.yaml").write_text(std.to_yaml(), encoding="utf-8")
        size = sum(p.stat().st_size for p in folder.iterdir())
        metrics = {"parameters": parameters, "size_bytes": size, "formats": list(std.export.formats),
                   "stage_seconds": round(time.perf_counter() - started, 2)}
        write_metrics(tmp, metrics)

    final = Path(out_dir) / "model"
    if std.export.destination:
        _copy_to(final, std.export.destination)
    tracker.log_artifact(final, "model")
    tracker.log_metrics({"parameters": parameters, "size_bytes": size})
    print(f"export: {final} ({size / 1e6:.1f} MB)" + (f", copied to {std.export.destination}" if std.export.destination else ""))
    if tracker.run_id:
        metrics.update(_register(std, evaluation.get("champion", {}), data_info["data_fingerprint"], tracker, registry))
        write_metrics(out_dir, metrics)
    return metrics


def _register(std: Standard, decision: dict, fingerprint: str, tracker: Tracker, registry: Registry) -> dict:
    """A new version of `export.register_as`; the alias moves last, and only on evaluation's say-so."""
    name = std.export.register_as or std.name
    tags = {"nlpstd.spec_hash": std.spec_hash(), "nlpstd.data_fingerprint": fingerprint,
            "nlpstd.destination": std.export.destination or "", **decision_tags(decision)}
    version = registry.register(name, tracker.run_id, "model", tags)
    if decision.get("promote"):
        promoted, reason = registry.promote(name, version, decision.get("champion_version"))
    else:
        promoted, reason = False, decision.get("reason", "evaluation made no champion decision")
    tracker.set_tags({"nlpstd.registered_model": name, "nlpstd.registered_version": version,
                      "nlpstd.promoted": str(promoted).lower(), "nlpstd.promotion_reason": reason})
    print(f"export: registered {name} v{version}; {'now the champion' if promoted else 'champion unchanged'}: {reason}")
    return {"registered_model": name, "registered_version": version, "promoted": promoted, "promotion_reason": reason}


def _copy_to(folder: Path, destination: str) -> None:
    """Readers never see half a model: locally a copy beside the destination, then a rename; on S3
    the files first and the manifest last (see `storage.upload_folder`)."""
    if storage.is_remote(destination):
        storage.upload_folder(folder, destination)
        return
    destination = Path(destination)
    tmp = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    replace_dir(tmp, destination)
