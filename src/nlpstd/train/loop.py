"""The training loop both stages share: AdamW, warm-up then linear or cosine decay, gradient
accumulation, clipping, evaluation, early stopping, best-model keeping, and checkpoints that a
rerun resumes from (also after `kill -9`). What is trained on, and how a batch becomes a loss,
comes from an `Objective` (fine-tuning: `batching.Supervised`; pretraining: `mlm.MaskedLM`).

Under torchrun the same loop runs data-parallel (DDP): each optimizer step takes the same
`grad_accumulation × processes` micro-batches a single process would accumulate, each process
computing its share, so the result does not depend on how many processes ran it. Only the main
process logs, evaluates, shows progress and writes checkpoints; all of them resume from the same one.

A run that diverges (a loss, a weight or the held-out score no longer a finite number) stops with
`TrainingDiverged` before anything holding it is saved. The check costs no host sync of its own:
step losses wait on the device until the loop reads them anyway, at a log line, an evaluation or
a checkpoint. Under fp16 an optimizer step the loss scaler skips (its gradients overflowed) is
ordinary loss scaling, not divergence: the loss was finite, and the weights were left untouched."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from nlpstd import runtime
from nlpstd.errors import TrainingDiverged
from nlpstd.runtime import autocast
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train import checkpoint
from nlpstd.train.batching import without_full_mask
from nlpstd.train.loader import micro_batches
from nlpstd.train.meter import Meter, device_peak_flops

if TYPE_CHECKING:  # annotations only, so the training path imports without pydantic
    from nlpstd.spec import LoopRecipe


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
    train_flops: float = 0.0  # model FLOPs of the optimizer steps so far, all processes
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


def adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one kernel for all parameters), on a CPU too: torch's default
    there updates one tensor at a time, about 20x slower for MiniLM-L6 (180 ms a step against 8 ms
    on 2 cores), enough to halve fine-tuning throughput. Devices without the fused kernel take the
    multi-tensor (foreach) update."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, foreach=True)


def micro_batch(recipe: LoopRecipe, section: str) -> int:
    """Examples per forward pass: the step's batch split over accumulation and processes."""
    world = runtime.world_size()
    parts = recipe.grad_accumulation * world
    if recipe.batch_size % parts:
        from nlpstd.errors import NlpstdError

        raise NlpstdError(f"{section}.batch_size {recipe.batch_size} is not a multiple of grad_accumulation × processes "
                          f"({recipe.grad_accumulation} × {world}): choose a batch size divisible by {parts}")
    return recipe.batch_size // parts


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
    peak_flops: float | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
    loader_workers: int = 0,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `model` in place and leave it holding the best weights by `evaluate(model)[select]`.
    Under torchrun, the objective's micro-batches must already be sized for `world_size()` processes.
    `on_evaluation(n, scores)` hears the n-th evaluation's scores; what it raises stops training
    (a sweep prunes a trial that way), leaving the last checkpoint. `loader_workers` processes
    collate micro-batches ahead of the step (none: the loop collates each when it needs it).
    `cuda_graphs` compiles in reduce-overhead mode, where it applies (`compile_mode`)."""
    world, rank, main = runtime.world_size(), runtime.rank(), runtime.is_main()
    tracker = tracker if tracker is not None and main else NullTracker()
    work_dir = Path(work_dir)
    last_dir, best_dir = work_dir / "checkpoints" / "last", work_dir / "checkpoints" / "best"

    # -- schedule: epochs or max_steps; an optimizer step is `grad_accumulation` micro-batches per process
    accumulate = recipe.grad_accumulation * world
    steps_per_epoch = math.ceil(len(objective.batches(0)) / accumulate)
    total_steps = recipe.max_steps or recipe.epochs * steps_per_epoch
    eval_every = recipe.eval_every or steps_per_epoch
    log_every = recipe.log_every

    model.to(device)
    ddp = _data_parallel(model, objective, device) if world > 1 else None
    step = ddp or _Loss(model, objective)
    mode = compile_mode(compile, cuda_graphs, device, world)
    engine = _EagerOnFailure(step, mode) if mode else step
    optimizer = adamw(param_groups(model, recipe.weight_decay), recipe.lr)
    scheduler = get_scheduler(recipe.schedule, optimizer, round(recipe.warmup_ratio * total_steps), total_steps)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    # -- resume from the last complete checkpoint of the same recipe and data
    state, resumed_from = LoopState(identity=identity), None
    with runtime.main_first():  # the main process repairs a half-renamed checkpoint before the others read it
        saved = checkpoint.read_state(last_dir)
    if saved and saved.get("identity") == identity:
        state = LoopState(**checkpoint.load_checkpoint(last_dir, model, optimizer, scheduler, scaler))
        resumed_from = state.step
        if main:
            tqdm.write(f"resuming from the checkpoint at step {state.step} (epoch {state.epoch + 1})")

    def save_last() -> None:
        if main:
            checkpoint.save_checkpoint(last_dir, model, optimizer, scheduler, asdict(state), scaler)

    # (step, lr, loss) of each step since the loss was last read; the loss stays on the device till then
    window: list[tuple[int, float, torch.Tensor]] = []

    def diverged(step: int, lr: float, what: str) -> TrainingDiverged:
        advice = f"lower {desc}.lr, check the training data for broken examples"
        if precision == "fp16":
            advice += ", or set runtime.precision: bf16 on a GPU that has it (bf16 has fp32's range; fp16 overflows past 65504)"
        return TrainingDiverged(f"{desc} diverged at step {step}: {what} (lr {lr:.3g}); {advice}. "
                                "No checkpoint holds the diverged weights")

    def first_non_finite(losses: list[float]) -> TrainingDiverged | None:
        """The window's first step whose loss is not a finite number, as the error to raise."""
        for (step, lr, _), loss in zip(window, losses):
            if not math.isfinite(loss):
                return diverged(step, lr, f"the loss is {loss}")
        return None

    def check_finite() -> None:
        """Before an evaluation or a checkpoint: every loss since the last log line and every weight
        finite, read in one host sync (saving syncs anyway); all processes take the same decision."""
        losses = [loss for _, _, loss in window]
        values = torch.stack([*losses, _all_finite(model.parameters()).float()]).tolist()
        local = first_non_finite(values[:-1]) or (None if values[-1] else
                                                  diverged(state.step, scheduler.get_last_lr()[0], "a weight is not finite"))
        if _any_over_processes(local is not None, world, device):
            raise local or diverged(state.step, scheduler.get_last_lr()[0], "the loss of another process is not finite")

    def run_eval() -> bool:
        """Evaluate (on the main process; the others receive its scores), keep the best weights,
        and say whether patience ran out: every process takes the same decision."""
        scores = _from_main(evaluate(model) if main else None, world)
        model.train()
        score = scores[select]
        state.history.append({"step": state.step, **{f"eval_{k}": v for k, v in scores.items()}})
        tracker.log_metrics({f"eval_{k}": v for k, v in scores.items()}, step=state.step)
        if not math.isfinite(score):  # every process has the main process's scores: all stop together
            raise diverged(state.step, scheduler.get_last_lr()[0], f"the held-out {select} is {score}")
        if on_evaluation is not None:
            on_evaluation(sum(1 for point in state.history if f"eval_{select}" in point), scores)
        if state.best_score is None or (score > state.best_score if maximize else score < state.best_score):
            state.best_score, state.best_step, state.evals_without_gain = score, state.step, 0
            if main:
                checkpoint.save_weights(best_dir, model)
        else:
            state.evals_without_gain += 1
        return recipe.early_stopping is not None and state.evals_without_gain >= recipe.early_stopping

    # -- the loop
    model.train()
    meter = Meter(model.config, peak_flops or device_peak_flops(device, precision))
    progress = tqdm(total=total_steps, initial=state.step, desc=desc, unit="step", dynamic_ncols=True, disable=not main)
    window_loss, clock = torch.zeros((), device=device), _Stopwatch(device)
    done = state.step >= total_steps or state.stopped_early
    try:  # the bar ends its line whatever stops the loop, so an error prints on a line of its own
        while not done:
            # the rest of the epoch: each step's group of micro-batches, and the ones this process trains
            batches = objective.batches(state.epoch)
            steps = [(start, batches[start : start + accumulate]) for start in range(state.batch_in_epoch, len(batches), accumulate)]
            shares = [_share(len(group), rank, world) for _, group in steps]
            loaded = micro_batches(objective, [(group[offset], state.epoch, start + offset)
                                               for (start, group), mine in zip(steps, shares) for offset in mine],
                                   loader_workers, pin=device.type == "cuda")
            for (start, group), mine in zip(steps, shares):
                step_loss = torch.zeros((), device=device)
                for k in range(len(mine)):
                    host_batch = next(loaded)
                    meter.add(host_batch)  # counted on the host: no device sync
                    batch = {key: value.to(device, non_blocking=True) for key, value in without_full_mask(host_batch).items()}
                    last = k == len(mine) - 1  # DDP averages gradients across processes after the last one only
                    with ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext():
                        with autocast(device, precision):
                            loss = engine(batch) / len(mine)
                        scaler.scale(loss).backward()
                    step_loss += loss.detach()
                scaler.unscale_(optimizer)  # clip the true gradients
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip or float("inf"))
                lr = scheduler.get_last_lr()[0]  # this step's (a host number: no sync)
                scaler.step(optimizer)  # skipped when an fp16 gradient overflowed; the scale then backs off
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch_in_epoch = start + len(group)

                # the loss stays on the device; it is read (one host sync) only every `log_every` steps
                window_loss += step_loss
                window.append((state.step, lr, step_loss))
                if state.step % log_every == 0 or state.step == total_steps:
                    n = state.step % log_every or log_every
                    state.train_seconds += clock.pause()
                    state.train_flops += meter.flops * world
                    losses = torch.stack([window_loss, *(loss for _, _, loss in window)]).tolist()  # the one host sync
                    mean = _mean_over_processes(losses[0], world, device) / n
                    if not math.isfinite(mean):  # the mean of all processes: every one stops here
                        raise first_non_finite(losses[1:]) or diverged(state.step, lr, f"the mean loss of the last {n} steps is {mean}")
                    window.clear()
                    point = {"loss": mean, "lr": scheduler.get_last_lr()[0],
                             "grad_norm": float(grad_norm), **meter.read(clock.take_window(), world)}
                    state.history.append({"step": state.step, "loss": point["loss"], "lr": point["lr"]})
                    tracker.log_metrics(point, step=state.step)
                    progress.set_postfix(_postfix(point))
                    window_loss.zero_()
                    clock.resume()
                progress.update(1)

                evaluating = state.step % eval_every == 0 or state.step == total_steps
                saving = state.step % recipe.checkpoint_every == 0 or state.step == total_steps
                if evaluating or saving:  # not training time
                    state.train_seconds += clock.pause()
                    check_finite()  # nothing evaluates or saves weights that diverged
                    if evaluating:
                        state.stopped_early = run_eval()
                    if saving or state.stopped_early:
                        save_last()
                    clock.resume()
                if state.step >= total_steps or state.stopped_early:
                    done = True
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
    finally:
        progress.close()
    state.train_flops += meter.flops * world  # steps after the last log line (early stopping)

    runtime.barrier()  # the main process has written the best weights
    if state.best_step is not None:
        checkpoint.load_weights(best_dir, model)
    return TrainResult(state=state, total_steps=total_steps, resumed_from=resumed_from)


# -- data parallelism (torchrun); each helper is a no-op for a single process


class _Loss(torch.nn.Module):
    """The objective's loss as a module, so DDP sees the forward pass whatever the objective calls."""

    def __init__(self, model: torch.nn.Module, objective: Objective):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.objective.loss(self.model, batch)


def _data_parallel(model: torch.nn.Module, objective: Objective, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(_Loss(model, objective), device_ids=[device.index] if device.type == "cuda" else None)


def compile_mode(compile: bool, cuda_graphs: bool, device: torch.device, world: int) -> str | None:
    """How the step is compiled: not at all (None), "default", or "reduce-overhead", which records
    each batch shape's kernels as a CUDA graph and replays it with one launch. Graphs need a CUDA
    device and one process (DDP's gradient all-reduce runs outside the recorded graph); elsewhere
    the step compiles as usual."""
    if not compile:
        return None
    return "reduce-overhead" if cuda_graphs and device.type == "cuda" and world == 1 else "default"


class _EagerOnFailure(torch.nn.Module):
    """A compiled step that, if compiling fails, says why once and runs eager from then on."""

    def __init__(self, eager: torch.nn.Module, mode: str = "default"):
        super().__init__()
        # after a second batch shape the step recompiles once with dynamic shapes; in reduce-overhead
        # mode each new shape then costs a graph recording, not a compilation
        self.eager, self.compiled = eager, torch.compile(eager, mode=mode)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(batch)
            except Exception as exc:  # an unsupported operator, a missing compiler: training goes on, slower
                tqdm.write(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                           "training eager (set runtime.compile: off to skip compiling)")
                self.compiled = None
        return self.eager(batch)


def _share(group_size: int, rank: int, world: int) -> list[int]:
    """This process's micro-batches of a step: every `world`-th from its rank. A short last group
    (fewer micro-batches than processes) gives a process one already taken, so every process steps."""
    return list(range(rank, group_size, world)) or [rank % group_size]


def _all_finite(parameters) -> torch.Tensor:
    """Whether every parameter is finite, as a device scalar (not read here)."""
    return torch.stack([param.detach().isfinite().all() for param in parameters]).all()


def _any_over_processes(flag: bool, world: int, device: torch.device) -> bool:
    """True on every process when it is true on any."""
    if world == 1:
        return flag
    import torch.distributed as dist

    total = torch.tensor([int(flag)], device=device)
    dist.all_reduce(total)
    return bool(total[0])


def _mean_over_processes(value: float, world: int, device: torch.device) -> float:
    """The window's loss averaged over the processes (once per log line)."""
    if world == 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total[0]) / world


class _Stopwatch:
    """Training time between pauses; pausing waits for the device, so queued work is counted."""

    def __init__(self, device: torch.device):
        self.device, self.started, self.window = device, time.perf_counter(), 0.0

    def pause(self) -> float:
        """Seconds since the last resume (also added to the current window)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self.started
        self.window += elapsed
        self.started = time.perf_counter()
        return elapsed

    def resume(self) -> None:
        self.started = time.perf_counter()

    def take_window(self) -> float:
        """The window's training seconds so far, and a new window."""
        window, self.window = self.window, 0.0
        return window


def _postfix(point: dict[str, float]) -> dict[str, str]:
    shown = {"loss": f"{point['loss']:.4f}", "lr": f"{point['lr']:.2e}", "samples_s": f"{point['samples_per_s']:.1f}",
             "tok_s": f"{point['tokens_per_s']:.0f}", "tflops": f"{point['tflops']:.2f}"}
    if "mfu" in point:
        shown["mfu"] = f"{point['mfu']:.1%}"
    return shown


def _from_main(value, world: int):
    """The main process's value, on every process."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]



