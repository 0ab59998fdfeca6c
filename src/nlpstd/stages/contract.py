"""The stage contract: each stage declared once, where its folders are, and the one call that runs it.

Every way of running a stage goes through `run_stage`: the in-process runner (`nlpstd run`), a
pipeline task (`nlpstd.stages.task`, which the KFP components call), `nlpstd stage` and the
processes torchrun starts. So a new stage, or a change to what one reads, is made here and in the
stage's own module, nowhere else. This module imports neither torch nor MLflow: the pipeline
definition and the command line read the table without loading either.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpstd.errors import NlpstdError

if TYPE_CHECKING:
    from nlpstd.spec import Standard
    from nlpstd.tracking import Tracker

MODEL = "model"  # the Hugging Face folder inside a training stage's output
KEPT_EXPORT = "export-candidate"  # beside `export/`: the export of a model that did not take the champion alias


@dataclass(frozen=True)
class Stage:
    """One stage: what it is called, whether it trains (a GPU task with checkpoints, run data-parallel
    under torchrun), the stages whose output folders it reads, and the parts of the standard its own
    output depends on (dotted keys: its identity, see `nlpstd.stages.identity`)."""

    name: str
    trains: bool
    inputs: tuple[str, ...]
    sections: tuple[str, ...]


STAGES: tuple[Stage, ...] = (
    Stage("data-prep", trains=False, inputs=(),
          sections=("task", "seed", "data", "pretrain.enabled", "pretrain.corpus")),
    Stage("pretrain", trains=True, inputs=("data-prep",),
          sections=("tokenizer", "model", "pretrain", "runtime.precision")),
    Stage("finetune", trains=True, inputs=("data-prep", "pretrain"),
          sections=("task", "seed", "data", "tokenizer", "model", "finetune", "runtime", "evaluate.gate.metric",
                    "evaluate.iob_repair")),
    Stage("evaluate", trains=False, inputs=("data-prep", "finetune"),
          sections=("name", "evaluate", "export.register_as")),
    Stage("export", trains=False, inputs=("data-prep", "finetune", "evaluate"),
          sections=("name", "description", "export")),
)
NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
TRAINING: tuple[str, ...] = tuple(stage.name for stage in STAGES if stage.trains)
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str) -> Stage:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise NlpstdError(f"unknown stage {name!r} (stages: {', '.join(NAMES)})") from None


def active(std: Standard) -> list[str]:
    """The stages this standard runs, in order: pretrain only when enabled."""
    return [name for name in NAMES if name != "pretrain" or std.pretrain.enabled]


def inputs_of(name: str, std: Standard) -> tuple[str, ...]:
    """The stages whose folders `name` reads under this standard."""
    return tuple(s for s in stage(name).inputs if s != "pretrain" or std.pretrain.enabled)


@dataclass(frozen=True)
class Layout:
    """Where each stage's output folder is, and the only place that knows what lies inside one.

    `Layout.under(OUT)` is the in-process runner's `OUT/<stage>/`; a pipeline task or `nlpstd
    stage` knows only the folders it was handed (`Layout(folders={...})`). `work` keeps a
    training stage's checkpoints across runs (a pipeline's volume); without it they sit beside
    the stage's folder. `kept_export` takes an export that did not become the champion."""

    folders: Mapping[str, Path] = field(default_factory=dict)
    work: Path | None = None
    kept_export: Path | None = None

    @classmethod
    def under(cls, out: str | Path) -> Layout:
        out = Path(out)
        return cls({name: out / name for name in NAMES}, kept_export=out / KEPT_EXPORT)

    def folder(self, name: str) -> Path:
        """Stage `name`'s output folder; a clear error when the caller did not say where it is."""
        if name not in self.folders:
            raise NlpstdError(f"the output folder of stage {name} is required (--{FLAGS[name]})")
        return Path(self.folders[name])

    def model(self, name: str = "finetune") -> Path:
        """The Hugging Face folder a training stage wrote."""
        return self.folder(name) / MODEL


# How `nlpstd stage` names each stage's folder when another stage reads it; a stage's own folder is --out.
FLAGS = {"data-prep": "data", "pretrain": "pretrain", "finetune": "model", "evaluate": "evaluation", "export": "out"}


def run_stage(name: str, std: Standard, layout: Layout, tracker: Tracker | None = None, *,
              allow_other_inputs: bool = False, standard_file: str | None = None) -> dict[str, Any]:
    """Run stage `name` of `std` into `layout.folder(name)`, reading its inputs' folders from `layout`;
    returns its metrics. A stage refuses an input folder made by another recipe unless
    `allow_other_inputs`. `standard_file` names the standard in the exported model's card."""
    stage(name)  # an unknown name fails before anything loads
    module = importlib.import_module(f"nlpstd.stages.{name.replace('-', '_')}")
    other = {"allow_other_inputs": allow_other_inputs}
    if name == "data-prep":
        return module.run(std, layout.folder(name), tracker)
    if name == "pretrain":
        return module.run(std, layout.folder("data-prep"), layout.folder(name), tracker, work_dir=layout.work, **other)
    if name == "finetune":
        base = layout.model("pretrain") if std.pretrain.enabled else None
        return module.run(std, layout.folder("data-prep"), layout.folder(name), tracker, base=base, work_dir=layout.work, **other)
    if name == "evaluate":
        return module.run(std, layout.folder("data-prep"), layout.model(), layout.folder(name), tracker, **other)
    return module.run(std, layout.folder("data-prep"), layout.model(), layout.folder("evaluate"), layout.folder(name), tracker,
                      standard_file or f"{std.name}.yaml", kept_dir=layout.kept_export, **other)
