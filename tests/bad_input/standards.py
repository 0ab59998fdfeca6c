"""Bad standards: keys, values, YAML, the environment, and the files a standard names."""

from __future__ import annotations

from tests.bad_input.case import CLASS, CONLL, CONLL_FILES, TOKEN, TSV, TSV_FILES, Case, edited, run_standard

UNSET_VAR = "NLPSTD_BAD_INPUT_NEVER_SET"


def case(id: str, standard: str, files: dict, file: str, line: int | None, field: str | None, message: str) -> Case:
    return Case(id, **run_standard(standard, files, file=file, line=line, field=field, message=message))


CASES = [
    case("spec-unknown-key", edited(CONLL, "  epochs: 1", "  epoch: 1"), CONLL_FILES,
         "standard.yaml", 10, "finetune.epoch", "did you mean 'epochs'?"),
    case("spec-negative-lr", edited(CONLL, "lr: 1.0e-4", "lr: -1.0e-4"), CONLL_FILES,
         "standard.yaml", 11, "finetune.lr", "must be > 0"),
    case("spec-wrong-type", edited(CONLL, "epochs: 1", 'epochs: "three"'), CONLL_FILES,
         "standard.yaml", 10, "finetune.epochs", "'three'"),
    case("spec-negative-loader-workers", CONLL + "runtime:\n  loader_workers: -2\n", CONLL_FILES,
         "standard.yaml", 16, "runtime.loader_workers", "must be >= 0, got -2"),
    case("spec-loader-workers-neither-count-nor-auto", CONLL + "runtime:\n  loader_workers: many\n", CONLL_FILES,
         "standard.yaml", 16, "runtime.loader_workers", "should be 'auto', got 'many'"),
    case("spec-missing-task", edited(CONLL, f"task: {TOKEN}\n", ""), CONLL_FILES,
         "standard.yaml", 1, "task", "required key is missing"),
    case("spec-unknown-encoding", edited(CONLL, "  validation: dev.txt", "  validation: {path: dev.txt, encoding: latin-9x}"), CONLL_FILES,
         "standard.yaml", 6, "data.validation.encoding", "unknown text encoding 'latin-9x'"),
    case("spec-missing-nested-key", edited(CONLL, "  validation: dev.txt\n", ""), CONLL_FILES,
         "standard.yaml", 3, "data.validation", "required key is missing"),
    case("spec-bad-task", edited(CONLL, f"task: {TOKEN}", "task: ner"), CONLL_FILES,
         "standard.yaml", 2, "task", "'ner'"),
    case("spec-invalid-yaml", edited(CONLL, "format: conll", "format: conll: tsv"), CONLL_FILES,
         "standard.yaml", 4, "invalid YAML", "mapping values are not allowed"),
    case("spec-unset-env-var", edited(CONLL, "train: train.txt", f"train: ${{{UNSET_VAR}}}/train.txt"), CONLL_FILES,
         "standard.yaml", 5, "data.train", UNSET_VAR),
    case("spec-data-file-missing", edited(CONLL, "train: train.txt", "train: missing.txt"), CONLL_FILES,
         "standard.yaml", 5, "data.train", "missing.txt"),
    case("spec-gate-metric-unknown", edited(CONLL, "metric: f1", "metric: bleu"), CONLL_FILES,
         "standard.yaml", 14, "evaluate.gate.metric", "'bleu'"),
    case("spec-format-not-for-task", edited(TSV, f"task: {CLASS}", f"task: {TOKEN}"), TSV_FILES,
         "standard.yaml", 4, "data.format", "'tsv'"),
]
