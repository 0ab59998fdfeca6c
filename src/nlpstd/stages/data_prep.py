"""Stage 1, data-prep: read and validate every split, fix the label set, fingerprint the data;
with pretraining enabled, also decode the corpus and set its held-out part aside."""

from __future__ import annotations

import time
from pathlib import Path

from nlpstd.data import corpus as corpus_mod
from nlpstd.data import prepare as prep
from nlpstd.spec import Standard
from nlpstd.stages.output import read_json, staged, write_metrics
from nlpstd.tracking import NullTracker, Tracker


def run(std: Standard, out_dir: Path, tracker: Tracker | None = None) -> dict:
    """Writes `<split>.jsonl`, `labels.json`, `summary.json` and `metrics.json` into `out_dir`,
    and `corpus/` (documents per file, held-out part, `corpus.json`) when pretraining is enabled."""
    tracker = tracker or NullTracker()
    started = time.perf_counter()

    # -- inputs: every bad row or corpus file fails here, before anything is written
    prepared = prep.prepare(std)
    corpus = corpus_mod.prepare(std.pretrain.corpus, std.seed) if std.pretrain.enabled else None

    # -- outputs
    metrics = {f"{split}_examples": len(records) for split, records in prepared.splits.items()}
    metrics["num_labels"] = len(prepared.labels)
    if corpus is not None:
        metrics["corpus_train_documents"] = sum(len(docs) for docs in corpus.train)
        metrics["corpus_heldout_documents"] = sum(len(docs) for docs in corpus.held_out)
        fallbacks = corpus_mod.fallbacks(corpus)
        metrics["corpus_latin1_fallbacks"] = len(fallbacks)
        for path in fallbacks:
            print(f"data-prep: {path} is not valid UTF-8; read it as Latin-1 (encoding: auto)")
    metrics["stage_seconds"] = round(time.perf_counter() - started, 2)
    with staged(out_dir) as tmp:
        prep.save(prepared, tmp)
        if corpus is not None:
            corpus_mod.save(corpus, tmp / "corpus")
        write_metrics(tmp, metrics)
    track(out_dir, tracker)
    print(f"data-prep: {', '.join(f'{k} {v}' for k, v in metrics.items())}; fingerprint {prepared.fingerprint[:12]}")
    return metrics


def track(out_dir: Path, tracker: Tracker) -> None:
    """Log a data-prep output folder: its fingerprints, counts and summaries. Separate from `run`, so
    a prepared folder served from a pipeline's cache is logged in the run that reuses it."""
    out_dir, summary = Path(out_dir), read_json(Path(out_dir) / "summary.json")
    tracker.set_tags({"nlpstd.data_fingerprint": summary["fingerprint"]})
    for split, source in summary.get("sources", {}).items():  # the run's inputs, as MLflow datasets
        tracker.log_dataset(split, source, digest=summary["fingerprint"][:16], context=split)
    tracker.log_metrics(read_json(out_dir / "metrics.json"))
    tracker.log_artifact(out_dir / "summary.json")
    if (out_dir / "corpus" / "corpus.json").is_file():
        tracker.set_tags({"nlpstd.corpus_fingerprint": read_json(out_dir / "corpus" / "corpus.json")["fingerprint"]})
        tracker.log_artifact(out_dir / "corpus" / "corpus.json")
