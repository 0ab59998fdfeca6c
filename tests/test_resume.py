"""Interrupted fine-tuning resumes from its last checkpoint: `kill -9`, rerun, same model as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import killed_at_step, wait_for_checkpoint
from nlpstd.runner import run_standard


def _slow_enough(standard: Path) -> None:
    """Enough steps that the run is still going when it is killed."""
    text = standard.read_text().replace("epochs: 3", "epochs: 40").replace("checkpoint_every: 10", "checkpoint_every: 25")
    standard.write_text(text.replace("evaluate: {", "evaluate: {metrics: [f1], "))


def _with_precision(standard: Path, precision: str) -> None:
    """Explicit, so each case trains in its precision on any CPU (bf16 autocast runs, emulated, without native bf16)."""
    standard.write_text(standard.read_text().replace("runtime: {", f"runtime: {{precision: {precision}, "))


def _losses(out: Path) -> list[tuple[int, float]]:
    """The training loss curve a finished finetune wrote: (step, mean loss) per log line."""
    history = json.loads((out / "finetune" / "history.json").read_text())
    return [(point["step"], point["loss"]) for point in history if "loss" in point]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sigkill_mid_training_then_rerun_resumes_and_matches_an_uninterrupted_run(ner_standard: Path, tmp_path: Path,
                                                                                  precision: str):
    _slow_enough(ner_standard)
    _with_precision(ner_standard, precision)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(ner_standard), "--out", str(out), "--no-tracking"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    # -- start, wait for the second checkpoint, kill without warning
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".finetune.partial" / "checkpoints" / "last" / "state.json"
    wait_for_checkpoint(process, state, 50)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was killed, not finished"
    assert not (out / "finetune").exists(), "a killed stage publishes nothing"
    killed_at = killed_at_step(state)

    # -- rerun the same command: it resumes and finishes
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from the checkpoint at step {killed_at}" in finished.stdout
    metrics = json.loads((out / "finetune" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == killed_at
    assert metrics["steps"] == metrics["total_steps"]
    assert metrics["precision"] == precision

    # -- and the result equals a run that was never interrupted
    reference = tmp_path / "reference"
    run_standard(ner_standard, reference, stages=["data-prep", "finetune"], tracking=False)
    resumed = load_file(out / "finetune" / "model" / "model.safetensors")
    straight = load_file(reference / "finetune" / "model" / "model.safetensors")
    assert all((resumed[k] - straight[k]).abs().max() < 1e-5 for k in straight)
    assert _losses(out) == _losses(reference)  # the same loss curve, step for step, the line the kill split included


def test_checkpoint_of_another_recipe_is_not_resumed(ner_standard: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_standard(ner_standard, out, stages=["data-prep", "finetune"], tracking=False)
    # leave a stale partial folder from a different recipe, as a killed earlier run would
    stale = out / ".finetune.partial" / "checkpoints" / "last"
    stale.mkdir(parents=True)
    (stale / "state.json").write_text(json.dumps({"identity": "another-recipe", "step": 7}))
    summary = run_standard(ner_standard, out, stages=["finetune"], tracking=False)
    assert summary["stages"]["finetune"]["metrics"]["resumed_from_step"] is None


def test_a_new_checkpoint_reaches_the_disk_before_it_replaces_the_old_one(tmp_path: Path, monkeypatch):
    """So a machine that stops (not only a killed process) leaves one whole checkpoint."""
    from nlpstd import fsutil

    new, target = tmp_path / "last.tmp", tmp_path / "last"
    (new / "sub").mkdir(parents=True)
    (new / "model.safetensors").write_text("new weights")
    (new / "sub" / "state.json").write_text("{}")
    target.mkdir()
    (target / "model.safetensors").write_text("old weights")
    flushed: list[tuple[Path, bool]] = []  # (path, whether the new folder was still waiting to be renamed)
    real = fsutil._flush
    monkeypatch.setattr(fsutil, "_flush", lambda path: (flushed.append((path, new.exists())), real(path)))

    fsutil.replace_dir(new, target)

    before = {path for path, waiting in flushed if waiting}
    assert before == {new / "model.safetensors", new / "sub" / "state.json", new / "sub", new}
    assert flushed[-1] == (tmp_path, False)  # the renames themselves, after
    assert (target / "model.safetensors").read_text() == "new weights"
    assert not (tmp_path / "last.old").exists()
