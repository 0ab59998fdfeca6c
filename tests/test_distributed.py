"""Data-parallel training under torchrun, on the CPU (gloo, two processes): the same steps as one
process, only the main process logs and writes, and a killed run resumes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from conftest import conll_text, killed_at_step, wait_for_checkpoint
from nlpstd.errors import NlpstdError
from nlpstd.runner import run_standard
from nlpstd.spec import LoopRecipe
from nlpstd.tracking import NullTracker
from nlpstd.train.loop import _share, micro_batch


@pytest.fixture(scope="module")
def still_base(tmp_path_factory, tiny_base: Path) -> Path:
    """The tiny base without dropout, so two processes and one draw no different random masks."""
    folder = tmp_path_factory.mktemp("tiny-no-dropout")
    for path in tiny_base.iterdir():
        shutil.copy2(path, folder / path.name)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def standard(folder: Path, base: Path, accumulation: int, finetune: str = "max_steps: 12, checkpoint_every: 4, eval_every: 6",
             loader_workers: int = 0) -> Path:
    (folder / "train.txt").write_text(conll_text(96))
    (folder / "dev.txt").write_text(conll_text(24, offset=500))
    path = folder / "standard.yaml"
    path.write_text(textwrap.dedent(f"""
        name: tiny-ner-ddp
        task: token-classification
        data: {{format: conll, train: train.txt, validation: dev.txt, max_length: 32}}
        model: {{base: {base}}}
        finetune: {{{finetune}, lr: 3.0e-3, batch_size: 8, grad_accumulation: {accumulation}, warmup_ratio: 0.1}}
        evaluate: {{metrics: [f1], gate: {{metric: f1, min: 0.0}}}}
        runtime: {{threads: 1, loader_workers: {loader_workers}}}
    """))
    return path


def weights(out: Path) -> dict:
    return load_file(out / "finetune" / "model" / "model.safetensors")


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("loader_workers", [0, 1], ids=["collated-in-the-loop", "collated-by-a-worker-per-process"])
def test_two_processes_take_the_same_steps_as_one_accumulating_process(still_base: Path, tmp_path: Path, loader_workers: int):
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    one = standard(tmp_path / "one", still_base, accumulation=2)
    two = standard(tmp_path / "two", still_base, accumulation=1, loader_workers=loader_workers)
    run_standard(one, tmp_path / "one" / "out", stages=["data-prep", "finetune"], tracking=False)
    summary = run_standard(two, tmp_path / "two" / "out", stages=["data-prep", "finetune"], tracking=False, nproc=2)
    metrics = summary["stages"]["finetune"]["metrics"]
    assert metrics["steps"] == 12 and metrics["device"] == "cpu"
    assert max_difference(weights(tmp_path / "one" / "out"), weights(tmp_path / "two" / "out")) < 1e-5


def test_a_killed_two_process_run_resumes_and_matches_an_uninterrupted_one(still_base: Path, tmp_path: Path):
    long = "epochs: 20, checkpoint_every: 25"
    (tmp_path / "killed").mkdir(), (tmp_path / "straight").mkdir()
    killed = standard(tmp_path / "killed", still_base, accumulation=1, finetune=long)
    out = tmp_path / "killed" / "out"
    command = [sys.executable, "-m", "nlpstd.cli", "run", str(killed), "--out", str(out), "--no-tracking", "--nproc", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    # -- start, wait for the second checkpoint, kill the launcher, torchrun and both workers without warning
    #    (torchrun starts its workers in sessions of their own: the whole tree goes, as when a node is lost)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".finetune.partial" / "checkpoints" / "last" / "state.json"
    wait_for_checkpoint(process, state, 50, timeout=300)
    launcher = psutil.Process(process.pid)
    workers = launcher.children(recursive=True)
    for member in (launcher, *workers):
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(workers, timeout=10)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run was killed, not finished"
    killed_at = killed_at_step(state)

    # -- rerun: it resumes from that checkpoint and finishes
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (finished.stdout + finished.stderr).count(f"resuming from the checkpoint at step {killed_at}") == 1, "said once, by the main process"
    metrics = json.loads((out / "finetune" / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == killed_at and metrics["steps"] == metrics["total_steps"]

    # -- and equals two processes that were never interrupted
    straight = standard(tmp_path / "straight", still_base, accumulation=1, finetune=long)
    run_standard(straight, tmp_path / "straight" / "out", stages=["data-prep", "finetune"], tracking=False, nproc=2)
    assert max_difference(weights(out), weights(tmp_path / "straight" / "out")) < 1e-6


def test_only_the_main_process_opens_a_tracking_run(ner_standard: Path, monkeypatch: pytest.MonkeyPatch):
    from nlpstd.stages.task import stage_task

    monkeypatch.setenv("RANK", "1")
    with stage_task(ner_standard.read_text(), "finetune", "a-parent-run-id", source=ner_standard) as (_, tracker):
        assert isinstance(tracker, NullTracker)


def test_each_process_takes_every_nth_micro_batch_of_a_step():
    assert _share(4, rank=0, world=2) == [0, 2] and _share(4, rank=1, world=2) == [1, 3]
    assert _share(1, rank=1, world=2) == [0], "a short last step still gives every process a micro-batch"


def test_a_batch_that_does_not_split_over_the_processes_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert micro_batch(LoopRecipe(batch_size=8, grad_accumulation=2), "finetune") == 2
    with pytest.raises(NlpstdError, match=r"finetune.batch_size 6 is not a multiple of grad_accumulation × processes \(2 × 2\)"):
        micro_batch(LoopRecipe(batch_size=6, grad_accumulation=2), "finetune")


def test_pretraining_and_fine_tuning_both_run_in_two_processes(pretrain_standard: Path, tmp_path: Path):
    summary = run_standard(pretrain_standard, tmp_path / "out", stages=["data-prep", "pretrain", "finetune"], tracking=False, nproc=2)
    pretrain, finetune = summary["stages"]["pretrain"]["metrics"], summary["stages"]["finetune"]["metrics"]
    assert pretrain["steps"] == 40 and pretrain["heldout_perplexity"] < pretrain["initial_heldout_perplexity"]
    assert finetune["steps"] == finetune["total_steps"]
    assert (tmp_path / "out" / "pretrain" / "model" / "model.safetensors").is_file()


# -- compiling the step


def test_compiling_is_on_for_gpus_only_unless_asked():
    import torch

    from nlpstd.runtime import should_compile
    from nlpstd.spec import RuntimeSpec

    assert should_compile(RuntimeSpec(), torch.device("cuda")) and not should_compile(RuntimeSpec(), torch.device("cpu"))
    assert should_compile(RuntimeSpec(compile="on"), torch.device("cpu"))
    assert not should_compile(RuntimeSpec(compile="off"), torch.device("cuda"))


def test_a_step_that_fails_to_compile_trains_eager_and_says_so(ner_standard: Path, tmp_path: Path, monkeypatch, capsys):
    import torch

    def broken_compile(module, *args, **kwargs):
        def fail(*inputs, **named):
            raise RuntimeError("no backend for this operator")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    ner_standard.write_text(ner_standard.read_text().replace("runtime: {threads: 1}", "runtime: {threads: 1, compile: \"on\"}"))
    summary = run_standard(ner_standard, tmp_path / "out", stages=["data-prep", "finetune"], tracking=False)
    metrics = summary["stages"]["finetune"]["metrics"]
    assert metrics["steps"] == metrics["total_steps"]
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("torch.compile failed (RuntimeError: no backend for this operator)") == 1
