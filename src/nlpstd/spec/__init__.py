"""The standard: one YAML file that pins everything that decides a model.

- `schema`: the sections and their fields, each typed, bounded, described, and saying what it is
  for (recipe or speed; for runtime settings, applied locally or on a cluster only). No I/O.
- `loading`: YAML with the line of every key, `${VAR:-default}`, errors as `file:line: key: message`.
- `rules`: settings valid alone that cannot combine, checked once at load time.
- `base_config`: the base model's config.json, read at load time (its positions against max_length).
- `files`: the checks that read files before a run (data files, the export destination).
- `reference`: the key reference in README, generated from the schema.
"""

from nlpstd.spec.files import check_files
from nlpstd.spec.loading import MAX_ALIASES, MAX_DEPTH, MAX_NODES, MAX_STANDARD_BYTES, load_standard, load_standard_text, with_changes
from nlpstd.spec.rules import budget_widths
from nlpstd.spec.schema import (
    CLUSTER,
    FORMATS_FOR_TASK,
    LOCAL,
    MAX_BATCH,
    MAX_COUNT,
    MAX_NAME,
    MAX_SEED,
    NOT_RECIPE,
    RECIPE,
    SIZES,
    SPEED,
    TASK_METRICS,
    CarvedSplits,
    ConllLayout,
    CorpusFile,
    CorpusSpec,
    DataChecks,
    DataFile,
    DataSpec,
    EvaluateSpec,
    ExportFormat,
    ExportSpec,
    FinetuneSpec,
    GateSpec,
    GpuSpec,
    LabelMap,
    LoopRecipe,
    LoraSpec,
    ModelSpec,
    ParitySpec,
    PretrainSpec,
    PruningSpec,
    Resources,
    RuntimeSpec,
    ScheduleSpec,
    SearchRange,
    ServingSpec,
    Standard,
    SweepObjective,
    SweepSpec,
    Task,
    TokenBudget,
    TokenizerSpec,
    Toleration,
    field_role,
    not_recipe,
    runtime_fields,
    set_dotted,
)

__all__ = [
    "CLUSTER", "FORMATS_FOR_TASK", "LOCAL", "MAX_ALIASES", "MAX_BATCH", "MAX_COUNT", "MAX_DEPTH", "MAX_NAME",
    "MAX_NODES", "MAX_SEED", "MAX_STANDARD_BYTES", "NOT_RECIPE", "RECIPE", "SIZES", "SPEED", "TASK_METRICS",
    "CarvedSplits", "ConllLayout", "CorpusFile", "CorpusSpec", "DataChecks", "DataFile", "DataSpec", "EvaluateSpec", "ExportFormat", "ExportSpec",
    "FinetuneSpec", "GateSpec", "GpuSpec", "LabelMap", "LoopRecipe", "LoraSpec", "ModelSpec", "ParitySpec", "PretrainSpec",
    "PruningSpec", "Resources", "RuntimeSpec", "ScheduleSpec", "SearchRange", "ServingSpec", "Standard",
    "SweepObjective", "SweepSpec", "Task", "TokenBudget", "TokenizerSpec", "Toleration", "budget_widths",
    "check_files", "field_role", "load_standard", "load_standard_text", "not_recipe", "runtime_fields", "set_dotted",
    "with_changes",
]
