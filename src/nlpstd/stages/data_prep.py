"""Stage 1, data-prep: read and validate every split, fix the label set, fingerprint the data, and
write the data report (lengths, labels, duplicates, overlap between splits) checked against
`data.checks`; with pretraining enabled, also check the corpus files and write their manifest."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nlpstd.data import corpus as corpus_mod
from nlpstd.data import prepare as prep
from nlpstd.data import report as data_report
from nlpstd.data.labelmap import describe
from nlpstd.errors import NlpstdError
from nlpstd.jsonio import read_json
from nlpstd.spec import Standard
from nlpstd.stages import identity
from nlpstd.stages.output import staged, write_metrics
from nlpstd.tracking import NullTracker, Tracker

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)


def run(std: Standard, out_dir: Path, tracker: Tracker | None = None) -> dict:
    """Writes `<split>.jsonl`, `labels.json`, `summary.json`, `data_report.{md,json}`, `plots/*.png` and
    `metrics.json` into `out_dir`, and `corpus/manifest.json` (the corpus files, their codecs, sizes
    and hashes, the held-out rule) when pretraining is enabled: pretrain reads the files themselves.
    With `data.checks.on_violation: fail`, a check the data does not pass stops the stage here,
    before anything is written."""
    tracker = tracker or NullTracker()
    started = time.perf_counter()

    # -- inputs: every bad row, unlearnable train split, failed data check (on_violation: fail) or bad
    # corpus file fails here, before a tokenizer loads or anything is written; `nlpstd validate` runs the same
    checked = prep.check_data(std)
    prepared, corpus = checked.prepared, checked.corpus

    # -- the data report, which records the checks' figures and warnings
    tokenizer, note = report_tokenizer(std)
    named = describe(std.data.label_map) if std.data.label_map else None
    report = data_report.build(prepared, tokenizer, note, std.data.max_length, std.name, std.data.stride, std.data.word_unit, named)
    warnings = data_report.check(report, std.data.checks, prepared.sources)

    # -- outputs
    metrics = {f"{split}_examples": len(records) for split, records in prepared.splits.items()}
    metrics["num_labels"] = len(prepared.labels)
    metrics.update(report_metrics(report))
    if corpus is not None:
        metrics["corpus_train_documents"] = corpus.documents["train"]
        metrics["corpus_heldout_documents"] = corpus.documents["held_out"]
        metrics["corpus_bytes"] = sum(described["bytes"] for described in corpus.files)
        fallbacks = corpus_mod.fallbacks(corpus)
        metrics["corpus_latin1_fallbacks"] = len(fallbacks)
        for path in fallbacks:
            log.info(f"data-prep: {path} is not valid UTF-8; read it as Latin-1 (encoding: auto)")
    metrics["stage_seconds"] = round(time.perf_counter() - started, 2)
    with staged(out_dir) as tmp:
        prep.save(prepared, tmp)
        data_report.write(report, tmp)
        if corpus is not None:
            corpus_mod.save(corpus, tmp / "corpus")
        identity.write(tmp, "data-prep", std, prepared.fingerprint)
        write_metrics(tmp, metrics)
    track(out_dir, tracker)
    log.info(f"data-prep: {', '.join(f'{k} {v}' for k, v in metrics.items())}; fingerprint {prepared.fingerprint[:12]}")
    for message in warnings:
        log.warning(f"data-prep: warning: {message} (see {Path(out_dir) / data_report.REPORT_MD})")
    return metrics


def report_tokenizer(std: Standard) -> tuple[PreTrainedTokenizerFast | None, str]:
    """The tokenizer fine-tuning will use, when data-prep can know it, and a note saying which.

    A vocabulary trained in pretrain (`tokenizer.train`) does not exist yet, so sub-word figures
    are left out rather than measured with another tokenizer; pretrain and finetune print what
    truncation costs with the real one."""
    from nlpstd.models.build import load_tokenizer, resolve_base

    if std.tokenizer.train is not None:
        return None, ("not measured: this standard trains its own WordPiece vocabulary in pretrain, after data-prep "
                      "(finetune reports truncation with it)")
    try:
        return load_tokenizer(resolve_base(std.model.base)), f"the tokenizer of model.base {std.model.base}"
    except (OSError, ValueError, NlpstdError) as exc:
        return None, f"not measured: the tokenizer of model.base {std.model.base} did not load ({str(exc).splitlines()[0]})"


def report_metrics(report: dict) -> dict[str, float]:
    """The report's headline figures per split, as flat numbers for the tracker."""
    figures: dict[str, float] = {}
    for split, stats in report["splits"].items():
        figures[f"{split}_duplicates"] = stats["duplicates"]
        figures[f"{split}_empty"] = stats["empty"]
        if "truncated" in stats:
            figures[f"{split}_truncated_share"] = stats["truncated_share"]
    for split, found in report["overlap"].items():
        figures[f"{split}_overlap_exact"] = found["exact"]
        figures[f"{split}_overlap_normalized"] = found["normalized"]
        figures[f"{split}_overlap_share"] = found["normalized_share"]
    figures["data_check_warnings"] = len(report["checks"].get("violations", []))
    return figures


def track(out_dir: Path, tracker: Tracker) -> None:
    """Log a data-prep output folder: its fingerprints, counts and summaries. Separate from `run`, so
    a prepared folder served from a pipeline's cache is logged in the run that reuses it."""
    out_dir, summary = Path(out_dir), read_json(Path(out_dir) / "summary.json")
    tracker.set_tags({"nlpstd.data_fingerprint": summary["fingerprint"]})
    for split, source in summary.get("sources", {}).items():  # the run's inputs, as MLflow datasets
        tracker.log_dataset(split, source, digest=summary["fingerprint"][:16], context=split)
    tracker.log_metrics(read_json(out_dir / "metrics.json"))
    tracker.log_artifact(out_dir / "summary.json")
    tracker.log_artifact(out_dir / data_report.REPORT_MD)
    tracker.log_artifact(out_dir / data_report.REPORT_JSON)
    tracker.log_artifact(out_dir / "plots", "plots")
    manifest = out_dir / "corpus" / corpus_mod.MANIFEST
    if manifest.is_file():
        tracker.set_tags({"nlpstd.corpus_fingerprint": read_json(manifest)["fingerprint"]})
        tracker.log_artifact(manifest)
