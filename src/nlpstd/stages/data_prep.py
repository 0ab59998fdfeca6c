"""Stage 1, data-prep: read and validate every split, fix the label set, fingerprint the data."""

from __future__ import annotations

from pathlib import Path

from nlpstd.data import prepare as prep
from nlpstd.spec import Standard
from nlpstd.stages.output import staged, write_metrics
from nlpstd.tracking import NullTracker, Tracker


def run(std: Standard, out_dir: Path, tracker: Tracker | None = None) -> dict:
    """Writes `<split>.jsonl`, `labels.json`, `summary.json` and `metrics.json` into `out_dir`."""
    tracker = tracker or NullTracker()

    # -- inputs: every bad row fails here, before anything is written
    prepared = prep.prepare(std)

    # -- outputs
    metrics = {f"{split}_examples": len(records) for split, records in prepared.splits.items()}
    metrics["num_labels"] = len(prepared.labels)
    with staged(out_dir) as tmp:
        prep.save(prepared, tmp)
        write_metrics(tmp, metrics)
    tracker.set_tags({"nlpstd.data_fingerprint": prepared.fingerprint})
    tracker.log_metrics(metrics)
    tracker.log_artifact(Path(out_dir) / "summary.json")
    print(f"data-prep: {', '.join(f'{k} {v}' for k, v in metrics.items())}; fingerprint {prepared.fingerprint[:12]}")
    return metrics
