"""Resumable checkpoints that describe themselves, written atomically.

A checkpoint folder holds the weights (safetensors), optimizer and scheduler state
(`torch.save` of plain tensors and numbers, loaded with `weights_only=True`), the fp16 loss
scale when there is one, the torch RNG state and `state.json` (step, epoch, best score, and the
identity of the recipe and data).
It is written to a temporary folder, flushed to disk and renamed into place, so a kill at any
moment, or a machine that stops (a node lost, the power cut), leaves either the previous
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from nlpstd.fsutil import replace_dir


def _fresh_tmp(folder: Path) -> Path:
    """An empty `<folder>.tmp` beside the target, to be renamed into place by `replace_dir`."""
    tmp = Path(folder).with_name(Path(folder).name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer, scheduler, state: dict[str, Any],
                    scaler: torch.amp.GradScaler | None = None) -> None:
    tmp = _fresh_tmp(folder)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None and scaler.is_enabled():
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    replace_dir(tmp, Path(folder))


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer, scheduler,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """Restore everything in place; returns the loop state."""
    folder = Path(folder)
    load_model(model, str(folder / "model.safetensors"))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    if scaler is not None and scaler.is_enabled() and (folder / "scaler.pt").is_file():
        scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True))
    torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True)["torch"])
    return json.loads((folder / "state.json").read_text())


def read_state(folder: Path) -> dict[str, Any] | None:
    """The state of a complete checkpoint, or None if there is none.

    A kill between the two renames of `replace_dir` leaves only `<folder>.old`: put it back.
    """
    folder, old = Path(folder), Path(folder).with_name(Path(folder).name + ".old")
    if not folder.exists() and (old / "state.json").is_file():
        old.rename(folder)
    path = folder / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def save_weights(folder: Path, model: torch.nn.Module) -> None:
    """Weights only (the best model so far), atomically."""
    tmp = _fresh_tmp(folder)
    save_model(model, str(tmp / "model.safetensors"))
    replace_dir(tmp, Path(folder))


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    load_model(model, str(Path(folder) / "model.safetensors"))
