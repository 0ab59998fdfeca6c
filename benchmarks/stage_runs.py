"""Stages of a standard run one at a time, each in its own process, for the benchmarks that compare
variants of one standard on the same prepared data and pretrained encoder (trust_options.py,
compression.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml


def prepare(standard: Path, base: dict, out: Path) -> dict[str, Path]:
    """data-prep, and pretrain when the standard has it, once, with the standard as given."""
    folders = {"data": out / "data-prep"}
    stage("data-prep", standard, folders["data"], [])
    if base.get("pretrain", {}).get("enabled"):
        folders["pretrain"] = out / "pretrain"
        stage("pretrain", standard, folders["pretrain"], ["--data", str(folders["data"])])
    return folders


def finetune_and_evaluate(spec: dict, standard: str, prefix: str, prepared: dict[str, Path], folder: Path) -> float:
    """`spec` (a variant of `standard`, written beside it while it runs, so its relative paths still
    resolve) fine-tuned and evaluated into `folder` on the prepared data and, when `spec` pretrains,
    the pretrained encoder; the finetune stage's wall seconds."""
    path = Path(standard).with_name(f".{prefix}-{folder.name}-{Path(standard).name}")
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    try:
        inputs = ["--data", str(prepared["data"]), "--allow-other-inputs"]
        if "pretrain" in prepared and spec.get("pretrain", {}).get("enabled"):
            inputs += ["--pretrain", str(prepared["pretrain"])]
        started = time.perf_counter()
        stage("finetune", path, folder / "finetune", inputs)
        seconds = time.perf_counter() - started
        stage("evaluate", path, folder / "evaluate", ["--data", str(prepared["data"]), "--model", str(folder / "finetune"),
                                                      "--allow-other-inputs"])
    finally:
        path.unlink(missing_ok=True)
    return seconds


def stage(name: str, standard: Path, out: Path, extra: list[str]) -> None:
    """One stage in its own process (not tracked: no --mlflow-run-id); a finished stage folder is kept."""
    if (out / "stage.json").exists():
        print(f"{name}: {out} exists, kept", flush=True)
        return
    command([sys.executable, "-m", "nlpstd.cli", "stage", name, str(standard), "--out", str(out), *extra])


def command(argv: list[str]) -> None:
    """Run `argv`, echoed first; a failure stops the benchmark."""
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)
