"""The training loop both stages share: AdamW, warm-up then linear or cosine decay, gradient
accumulation, clipping, evaluation, early stopping, best-model keeping, and checkpoints that a
rerun resumes from (also after `kill -9`). What is trained on, and how a batch becomes a loss,
comes from an `Objective` (fine-tuning: `batching.Supervised`; pretraining: `mlm.MaskedLM`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from nlpstd.runtime import autocast
from nlpstd.spec import LoopRecipe
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train import checkpoint


class Objective(Protocol):
    """What to train on and how a batch becomes a loss."""

    def batches(self, epoch: int) -> list[list[int]]:
        """The micro-batches (example indices) of an epoch; the same epoch always gives the same list."""

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        """Tensors for one micro-batch; `position` is its index in the epoch (for seeded randomness)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean loss of the micro-batch."""


@dataclass
class LoopState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    identity: str  # spec hash + data fingerprint: a checkpoint of another recipe is never resumed
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already trained
    best_score: float | None = None
    best_step: int | None = None
    evals_without_gain: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)  # {"step", "loss", "lr"} and {"step", "eval_<metric>", ...}


@dataclass
class TrainResult:
    state: LoopState
    total_steps: int
    resumed_from: int | None


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(
    model: torch.nn.Module,
    objective: Objective,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    recipe: LoopRecipe,
    *,
    select: str,
    maximize: bool = True,
    work_dir: Path,
    identity: str,
    seed: int,
    device: torch.device,
    precision: str = "fp32",
    tracker: Tracker | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train `model` in place and leave it holding the best weights by `evaluate(model)[select]`."""
    tracker = tracker or NullTracker()
    work_dir = Path(work_dir)
    last_dir, best_dir = work_dir / "checkpoints" / "last", work_dir / "checkpoints" / "best"

    # -- schedule: epochs or max_steps; an optimizer step is `grad_accumulation` micro-batches
    accumulate = recipe.grad_accumulation
    steps_per_epoch = math.ceil(len(objective.batches(0)) / accumulate)
    total_steps = recipe.max_steps or recipe.epochs * steps_per_epoch
    eval_every = recipe.eval_every or steps_per_epoch
    log_every = recipe.log_every

    model.to(device)
    optimizer = torch.optim.AdamW(
        param_groups(model, recipe.weight_decay), lr=recipe.lr, fused=device.type == "cuda"
    )
    scheduler = get_scheduler(recipe.schedule, optimizer, round(recipe.warmup_ratio * total_steps), total_steps)

    # -- resume from the last complete checkpoint of the same recipe and data
    state, resumed_from = LoopState(identity=identity), None
    saved = checkpoint.read_state(last_dir)
    if saved and saved.get("identity") == identity:
        state = LoopState(**checkpoint.load_checkpoint(last_dir, model, optimizer, scheduler))
        resumed_from = state.step
        tqdm.write(f"resuming from the checkpoint at step {state.step} (epoch {state.epoch + 1})")

    def save_last() -> None:
        checkpoint.save_checkpoint(last_dir, model, optimizer, scheduler, asdict(state))

    def run_eval() -> bool:
        """Evaluate, keep the best weights, and say whether patience ran out."""
        scores = evaluate(model)
        model.train()
        score = scores[select]
        state.history.append({"step": state.step, **{f"eval_{k}": v for k, v in scores.items()}})
        tracker.log_metrics({f"eval_{k}": v for k, v in scores.items()}, step=state.step)
        if state.best_score is None or (score > state.best_score if maximize else score < state.best_score):
            state.best_score, state.best_step, state.evals_without_gain = score, state.step, 0
            checkpoint.save_weights(best_dir, model)
        else:
            state.evals_without_gain += 1
        return recipe.early_stopping is not None and state.evals_without_gain >= recipe.early_stopping

    # -- the loop
    model.train()
    progress = tqdm(total=total_steps, initial=state.step, desc=desc, unit="step", dynamic_ncols=True)
    window_loss, window_seconds, window_samples, window_tokens = 0.0, 0.0, 0, 0
    done = state.step >= total_steps or state.stopped_early
    while not done:
        batches = objective.batches(state.epoch)
        for start in range(state.batch_in_epoch, len(batches), accumulate):
            step_start = time.perf_counter()
            group = batches[start : start + accumulate]
            step_loss = torch.zeros((), device=device)
            for position, indices in enumerate(group, start):
                batch = {k: v.to(device, non_blocking=True) for k, v in objective.collate(indices, state.epoch, position).items()}
                with autocast(device, precision):
                    loss = objective.loss(model, batch) / len(group)
                loss.backward()
                step_loss += loss.detach()
                window_samples += len(indices)
                window_tokens += int(batch["attention_mask"].sum())
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip or float("inf"))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_in_epoch = start + len(group)

            # one host sync per step (reading the loss) is cheap next to a CPU step
            window_loss += step_loss.item()
            seconds = time.perf_counter() - step_start
            state.train_seconds += seconds
            window_seconds += seconds
            if state.step % log_every == 0 or state.step == total_steps:
                n = state.step % log_every or log_every
                point = {"loss": window_loss / n, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                         "samples_per_s": window_samples / window_seconds, "tokens_per_s": window_tokens / window_seconds}
                state.history.append({"step": state.step, "loss": point["loss"], "lr": point["lr"]})
                tracker.log_metrics(point, step=state.step)
                progress.set_postfix(loss=f"{point['loss']:.4f}", lr=f"{point['lr']:.2e}", samples_s=f"{point['samples_per_s']:.1f}")
                window_loss, window_seconds, window_samples, window_tokens = 0.0, 0.0, 0, 0
            progress.update(1)

            if state.step % eval_every == 0 or state.step == total_steps:
                state.stopped_early = run_eval()
            if state.step % recipe.checkpoint_every == 0 or state.step == total_steps or state.stopped_early:
                save_last()
            if state.step >= total_steps or state.stopped_early:
                done = True
                break
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
    progress.close()

    if state.best_step is not None:
        checkpoint.load_weights(best_dir, model)
    return TrainResult(state=state, total_steps=total_steps, resumed_from=resumed_from)
