"""The fine-tuning loop: AdamW, linear warm-up and decay, clipping, evaluation, early stopping,
best-model keeping and checkpoints that a rerun resumes from (also after `kill -9`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from nlpstd.runtime import autocast
from nlpstd.spec import FinetuneSpec
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train import checkpoint
from nlpstd.train.batching import collate, epoch_batches


@dataclass
class LoopState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    identity: str  # spec hash + data fingerprint: a checkpoint of another recipe is never resumed
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already trained
    best_score: float | None = None
    best_step: int | None = None
    evals_without_gain: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    history: list[dict] = field(default_factory=list)  # {"step", "loss", "lr"} and {"step", "eval_<metric>"}


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
    features: list[dict],
    evaluate: Callable[[torch.nn.Module], float],
    recipe: FinetuneSpec,
    *,
    work_dir: Path,
    identity: str,
    seed: int,
    device: torch.device,
    precision: str = "fp32",
    pad_id: int = 0,
    tracker: Tracker | None = None,
    log_every: int = 10,
) -> TrainResult:
    """Train `model` in place and leave it holding the best weights seen by `evaluate` (higher is better)."""
    tracker = tracker or NullTracker()
    work_dir = Path(work_dir)
    last_dir, best_dir = work_dir / "checkpoints" / "last", work_dir / "checkpoints" / "best"

    # -- schedule: epochs or max_steps, warm-up as a share of all steps
    lengths = [len(f["input_ids"]) for f in features]
    steps_per_epoch = math.ceil(len(features) / recipe.batch_size)
    total_steps = recipe.max_steps or recipe.epochs * steps_per_epoch
    eval_every = recipe.eval_every or steps_per_epoch

    model.to(device)
    optimizer = torch.optim.AdamW(
        param_groups(model, recipe.weight_decay), lr=recipe.lr, fused=device.type == "cuda"
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, round(recipe.warmup_ratio * total_steps), total_steps)

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
        score = evaluate(model)
        model.train()
        state.history.append({"step": state.step, "eval_score": score})
        tracker.log_metrics({"eval_score": score}, step=state.step)
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_step, state.evals_without_gain = score, state.step, 0
            checkpoint.save_weights(best_dir, model)
        else:
            state.evals_without_gain += 1
        return recipe.early_stopping is not None and state.evals_without_gain >= recipe.early_stopping

    # -- the loop
    model.train()
    progress = tqdm(total=total_steps, initial=state.step, desc="finetune", unit="step", dynamic_ncols=True)
    window_loss, window_seconds, window_samples, window_tokens = 0.0, 0.0, 0, 0
    done = state.step >= total_steps or state.stopped_early
    while not done:
        batches = epoch_batches(lengths, recipe.batch_size, seed, state.epoch, recipe.group_by_length)
        for indices in batches[state.batch_in_epoch :]:
            step_start = time.perf_counter()
            batch = {k: v.to(device, non_blocking=True) for k, v in collate([features[i] for i in indices], pad_id).items()}
            with autocast(device, precision):
                loss = model(**batch).loss
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip or float("inf"))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_in_epoch += 1

            # one host sync per step (reading the loss) is cheap next to a CPU step
            window_loss += loss.item()
            seconds = time.perf_counter() - step_start
            state.train_seconds += seconds
            window_seconds += seconds
            window_samples += len(indices)
            window_tokens += int(batch["attention_mask"].sum())
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
