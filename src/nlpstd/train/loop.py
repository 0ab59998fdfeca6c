"""The training loop both stages share: AdamW, warm-up then linear or cosine decay, gradient
accumulation, clipping, evaluation, early stopping, best-model keeping, and checkpoints that a
rerun resumes from (also after `kill -9`). What is trained on, and how a batch becomes a loss,
comes from an `Objective` (fine-tuning: `batching.Supervised`; pretraining: `mlm.MaskedLM`); its
settings are the dataclasses of `train.config`, which each stage builds once from its standard.

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
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from nlpstd import runtime
from nlpstd.errors import TrainingDiverged
from nlpstd.runtime import autocast
from nlpstd.tracking import NullTracker, Tracker
from nlpstd.train import checkpoint
from nlpstd.train.batching import without_full_mask
from nlpstd.train.config import EngineConfig, LoopConfig, Selection
from nlpstd.train.dropout import using_bit_dropout
from nlpstd.train.loader import micro_batches
from nlpstd.train.meter import Meter, device_peak_flops


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
    window_loss: float = 0.0  # the sum of the step losses since the last log line, when the checkpoint was written
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


def micro_batch(loop: LoopConfig, section: str) -> int:
    """Examples per forward pass: the step's batch split over accumulation and processes."""
    world = runtime.world_size()
    parts = loop.grad_accumulation * world
    if loop.batch_size % parts:
        from nlpstd.errors import NlpstdError

        raise NlpstdError(f"{section}.batch_size {loop.batch_size} is not a multiple of grad_accumulation × processes "
                          f"({loop.grad_accumulation} × {world}): choose a batch size divisible by {parts}")
    return loop.batch_size // parts


def train(
    model: torch.nn.Module,
    objective: Objective,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    loop: LoopConfig,
    engine: EngineConfig,
    selection: Selection,
    *,
    work_dir: Path,
    identity: str,
    tracker: Tracker | None = None,
    desc: str = "train",
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `model` in place and leave it holding the best weights by `evaluate(model)[selection.metric]`.
    Under torchrun, the objective's micro-batches must already be sized for `world_size()` processes.
    `identity` names the recipe and data: only a checkpoint of the same identity is resumed.
    `on_evaluation(n, scores)` hears the n-th evaluation's scores; what it raises stops training
    (a sweep prunes a trial that way), leaving the last checkpoint. `desc` names the progress bar
    and, in error messages, the standard's section."""
    run = _Run(model, objective, loop, engine, Path(work_dir), desc)  # plan: schedule, step, optimizer, scaler
    resumed_from = run.resume(identity)  # from the last checkpoint of the same identity, if any
    run.start(tracker)
    state = run.state
    # the bar ends its line whatever stops the loop, so an error prints on a line of its own
    with run.progress, using_bit_dropout(model) if run.bit_dropout else contextlib.nullcontext():
        while not run.finished():
            for end, count, batches in run.epoch():  # the rest of the epoch, one optimizer step at a time
                grad_norm = run.step(batches, count)
                state.batch_in_epoch = end
                if run.due(loop.log_every):
                    run.log(grad_norm)
                run.progress.update(1)

                evaluating, saving = run.due(run.eval_every), run.due(loop.checkpoint_every)
                if evaluating or saving:  # not training time
                    state.train_seconds += run.clock.pause()
                    run.check_finite()  # nothing evaluates or saves weights that diverged
                    if evaluating:
                        state.stopped_early = run.evaluate(evaluate, selection, on_evaluation)
                    if saving or state.stopped_early:
                        run.save()
                    run.clock.resume()
                if run.finished():
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
    return run.finish(resumed_from)


class _Run:
    """One call of `train`: its plan and parts, built in dependency order, and the steps of the loop."""

    def __init__(self, model: torch.nn.Module, objective: Objective, loop: LoopConfig, engine: EngineConfig,
                 work_dir: Path, desc: str):
        self.world, self.rank, self.main = runtime.world_size(), runtime.rank(), runtime.is_main()
        self.model, self.objective, self.loop, self.engine, self.desc = model, objective, loop, engine, desc
        self.device, self.precision = engine.device, engine.precision
        self.last_dir, self.best_dir = work_dir / "checkpoints" / "last", work_dir / "checkpoints" / "best"

        # -- plan: epochs or max_steps; an optimizer step is `grad_accumulation` micro-batches per process
        self.accumulate = loop.grad_accumulation * self.world
        steps_per_epoch = math.ceil(len(objective.batches(0)) / self.accumulate)
        self.total_steps = loop.max_steps or loop.epochs * steps_per_epoch
        self.eval_every = loop.eval_every or steps_per_epoch

        # -- the step (data-parallel, compiled), the optimizer and its schedule, the loss scaler
        model.to(self.device)
        self.ddp = _data_parallel(model, objective, self.device) if self.world > 1 else None
        step = self.ddp or _Loss(model, objective)
        mode = compile_mode(engine.compile, engine.cuda_graphs, self.device, self.world)
        self.forward = _EagerOnFailure(step, mode) if mode else step
        # on a CPU, dropout masks from random bits (`train.dropout`), unless the compiler draws its own
        self.bit_dropout = self.device.type == "cpu" and mode is None
        self.optimizer = adamw(param_groups(model, loop.weight_decay), loop.lr)
        self.scheduler = get_scheduler(loop.schedule, self.optimizer, round(loop.warmup_ratio * self.total_steps), self.total_steps)
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        # (step, lr, loss) of each step since the loss was last read; the loss stays on the device till then
        self.window: list[tuple[int, float, torch.Tensor]] = []

    def resume(self, identity: str) -> int | None:
        """Continue from the last complete checkpoint of the same recipe and data; the step resumed from."""
        self.state = LoopState(identity=identity)
        with runtime.main_first():  # the main process repairs a half-renamed checkpoint before the others read it
            saved = checkpoint.read_state(self.last_dir)
        if not saved or saved.get("identity") != identity:
            return None
        self.state = LoopState(**checkpoint.load_checkpoint(self.last_dir, self.model, self.optimizer, self.scheduler, self.scaler))
        if self.main:
            tqdm.write(f"resuming from the checkpoint at step {self.state.step} (epoch {self.state.epoch + 1})")
        return self.state.step

    def start(self, tracker: Tracker | None) -> None:
        """Training mode, and what watches the run: tracker (main process only), meter, progress bar, clock."""
        self.model.train()
        if self.device.type == "cpu":
            runtime.keep_freed_memory()  # the large gradients made each step reuse their memory
        self.tracker = tracker if tracker is not None and self.main else NullTracker()
        self.meter = Meter(self.model.config, self.engine.peak_flops or device_peak_flops(self.device, self.precision))
        self.progress = tqdm(total=self.total_steps, initial=self.state.step, desc=self.desc, unit="step",
                             dynamic_ncols=True, disable=not self.main)
        # a run resumed between two log lines carries on the sum it had, so its next line is the true mean
        self.window_loss, self.clock = torch.tensor(self.state.window_loss, device=self.device), _Stopwatch(self.device)

    def finished(self) -> bool:
        return self.state.step >= self.total_steps or self.state.stopped_early

    def due(self, every: int) -> bool:
        """Whether the step just taken is one of every `every`, or the last."""
        return self.state.step % every == 0 or self.state.step == self.total_steps

    def epoch(self) -> Iterator[tuple[int, int, Iterator[dict[str, torch.Tensor]]]]:
        """The rest of the epoch, step by step: the epoch's micro-batches done after the step, how many
        of the step's this process trains, and those (collated ahead by loader workers, or when needed)."""
        state, accumulate = self.state, self.accumulate
        batches = self.objective.batches(state.epoch)
        steps = [(start, batches[start : start + accumulate]) for start in range(state.batch_in_epoch, len(batches), accumulate)]
        shares = [_share(len(group), self.rank, self.world) for _, group in steps]
        loaded = micro_batches(self.objective, [(group[offset], state.epoch, start + offset)
                                                for (start, group), mine in zip(steps, shares) for offset in mine],
                               self.engine.loader_workers, pin=self.device.type == "cuda")
        for (start, group), mine in zip(steps, shares):
            yield start + len(group), len(mine), itertools.islice(loaded, len(mine))

    def step(self, batches: Iterator[dict[str, torch.Tensor]], count: int) -> torch.Tensor:
        """Forward and backward over this process's `count` micro-batches, then one optimizer step;
        the gradient norm before clipping (on the device)."""
        device, scaler, optimizer, scheduler = self.device, self.scaler, self.optimizer, self.scheduler
        step_loss = torch.zeros((), device=device)
        for k, host_batch in enumerate(batches):
            self.meter.add(host_batch)  # counted on the host: no device sync
            batch = {key: value.to(device, non_blocking=True) for key, value in without_full_mask(host_batch).items()}
            last = k == count - 1  # DDP averages gradients across processes after the last one only
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                with autocast(device, self.precision):
                    loss = self.forward(batch) / count
                scaler.scale(loss).backward()
            step_loss += loss.detach()
        scaler.unscale_(optimizer)  # clip the true gradients
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.loop.grad_clip or float("inf"))
        lr = scheduler.get_last_lr()[0]  # this step's (a host number: no sync)
        scaler.step(optimizer)  # skipped when an fp16 gradient overflowed; the scale then backs off
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

        # the loss stays on the device; it is read (one host sync) only at a log line
        self.window_loss += step_loss
        self.window.append((self.state.step, lr, step_loss))
        return grad_norm

    def log(self, grad_norm: torch.Tensor) -> None:
        """The mean loss since the last log line (all processes), learning rate and throughput."""
        state, world = self.state, self.world
        n = state.step % self.loop.log_every or self.loop.log_every
        state.train_seconds += self.clock.pause()
        state.train_flops += self.meter.flops * world
        losses = torch.stack([self.window_loss, *(loss for _, _, loss in self.window)]).tolist()  # the one host sync
        mean = _mean_over_processes(losses[0], world, self.device) / n
        if not math.isfinite(mean):  # the mean of all processes: every one stops here
            lr = self.window[-1][1]
            raise self._first_non_finite(losses[1:]) or self._diverged(state.step, lr, f"the mean loss of the last {n} steps is {mean}")
        self.window.clear()
        point = {"loss": mean, "lr": self.scheduler.get_last_lr()[0],
                 "grad_norm": float(grad_norm), **self.meter.read(self.clock.take_window(), world)}
        state.history.append({"step": state.step, "loss": point["loss"], "lr": point["lr"]})
        self.tracker.log_metrics(point, step=state.step)
        self.progress.set_postfix(_postfix(point))
        self.window_loss.zero_()
        self.clock.resume()

    def check_finite(self) -> None:
        """Before an evaluation or a checkpoint: every loss since the last log line and every weight
        finite, read in one host sync (saving syncs anyway); all processes take the same decision."""
        lr = self.scheduler.get_last_lr()[0]
        losses = [loss for _, _, loss in self.window]
        values = torch.stack([*losses, _all_finite(self.model.parameters()).float()]).tolist()
        local = self._first_non_finite(values[:-1]) or (None if values[-1] else
                                                         self._diverged(self.state.step, lr, "a weight is not finite"))
        if _any_over_processes(local is not None, self.world, self.device):
            raise local or self._diverged(self.state.step, lr, "the loss of another process is not finite")

    def evaluate(self, evaluate: Callable[[torch.nn.Module], dict[str, float]], selection: Selection,
                 on_evaluation: Callable[[int, dict[str, float]], None] | None) -> bool:
        """Evaluate (on the main process; the others receive its scores), keep the best weights,
        and say whether patience ran out: every process takes the same decision."""
        state, metric = self.state, selection.metric
        scores = _from_main(evaluate(self.model) if self.main else None, self.world)
        self.model.train()
        score = scores[metric]
        state.history.append({"step": state.step, **{f"eval_{k}": v for k, v in scores.items()}})
        self.tracker.log_metrics({f"eval_{k}": v for k, v in scores.items()}, step=state.step)
        if not math.isfinite(score):  # every process has the main process's scores: all stop together
            raise self._diverged(state.step, self.scheduler.get_last_lr()[0], f"the held-out {metric} is {score}")
        if on_evaluation is not None:
            on_evaluation(sum(1 for point in state.history if f"eval_{metric}" in point), scores)
        if selection.improves(score, state.best_score):
            state.best_score, state.best_step, state.evals_without_gain = score, state.step, 0
            if self.main:
                checkpoint.save_weights(self.best_dir, self.model)
        else:
            state.evals_without_gain += 1
        return self.loop.early_stopping is not None and state.evals_without_gain >= self.loop.early_stopping

    def save(self) -> None:
        """The resumable checkpoint (the main process writes it)."""
        if self.main:
            self.state.window_loss = self.window_loss.item()  # float32 to float and back is exact
            checkpoint.save_checkpoint(self.last_dir, self.model, self.optimizer, self.scheduler, asdict(self.state), self.scaler)

    def finish(self, resumed_from: int | None) -> TrainResult:
        """Count the steps after the last log line (early stopping), and load the best weights."""
        self.state.train_flops += self.meter.flops * self.world
        runtime.barrier()  # the main process has written the best weights
        if self.state.best_step is not None:
            checkpoint.load_weights(self.best_dir, self.model)
        return TrainResult(state=self.state, total_steps=self.total_steps, resumed_from=resumed_from)

    def _diverged(self, step: int, lr: float, what: str) -> TrainingDiverged:
        advice = f"lower {self.desc}.lr, check the training data for broken examples"
        if self.precision == "fp16":
            advice += ", or set runtime.precision: bf16 on a GPU that has it (bf16 has fp32's range; fp16 overflows past 65504)"
        return TrainingDiverged(f"{self.desc} diverged at step {step}: {what} (lr {lr:.3g}); {advice}. "
                                "No checkpoint holds the diverged weights")

    def _first_non_finite(self, losses: list[float]) -> TrainingDiverged | None:
        """The window's first step whose loss is not a finite number, as the error to raise."""
        for (step, lr, _), loss in zip(self.window, losses):
            if not math.isfinite(loss):
                return self._diverged(step, lr, f"the loss is {loss}")
        return None


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



