"""Adversarial training on the word embeddings (`finetune.adversarial`): each micro-batch is also
trained with its word embeddings pushed, within an L2 ball of radius epsilon per example, the way
that raises its loss most (FGM: one step along the gradient; PGD: `steps` steps of epsilon / steps,
each projected back into the ball). The model learns to keep its predictions when its inputs move
a little in embedding space, which tends to help robustness and small training sets.

Why it is built this way:
- The perturbation `delta` is added to the OUTPUT of the word-embedding layer by a forward hook,
  not to its weight matrix as the classic FGM does. So it works when the embeddings are frozen
  (LoRA), moves each example only at its own tokens, and leaves every weight as it was.
- The direction is `torch.autograd.grad(clean_loss, delta)` for a zero leaf `delta`, which fills no
  parameter's `.grad`: DDP's reducer hooks fire on parameter gradients only, so they fire in the
  loop's one backward of the returned clean + adversarial loss, which therefore composes with
  gradient accumulation, loss scaling, DDP (one DDP forward per micro-batch) and LoRA.
- Cost: FGM runs the model twice and PGD steps + 1 times, plus a backward to the embeddings for
  each direction (one for FGM, `steps` for PGD). The clean graph is kept for the loop's backward
  while the adversarial one is built, so activation memory is about twice a plain step's.
- Under `runtime.compile` the adversarial loss runs eager (`torch.compiler.disable`): a compiled
  graph's backward frees its saved tensors as it goes, and the direction's backward must keep the
  clean graph for the loop's. Compiling it would fail on the first step and fall back anyway.
- Every forward draws its own dropout masks from the seeded generator: a run, and a resumed run,
  stays as reproducible as one without adversarial training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nlpstd.spec.schema import AdversarialSpec
    from nlpstd.train.loop import Objective

# The direction is the gradient of the loss times this power of two: exact in fp32 and bf16 (the
# normalised direction is bit for bit the same), and under fp16 autocast small input gradients
# no longer flush to zero, the underflow the loop's loss scaler guards its own backward against.
_DIRECTION_SCALE = 2.0**10


def adversarial(objective: Objective, spec: AdversarialSpec | None) -> Objective:
    """`objective` trained adversarially as `spec` says; `objective` itself when `spec` is None (off)."""
    if spec is None:
        return objective
    return Adversarial(objective, spec.method, spec.epsilon, spec.steps)


class Adversarial:
    """An objective whose loss is the wrapped objective's clean loss plus its loss on word embeddings
    perturbed uphill (so the loop logs about twice a plain run's loss); its micro-batches are the
    wrapped objective's."""

    def __init__(self, objective: Objective, method: str = "fgm", epsilon: float = 0.1, steps: int = 3):
        """`steps` counts for pgd only (fgm takes one step of epsilon)."""
        if method not in ("fgm", "pgd"):
            raise ValueError(f"adversarial method {method!r}: expected fgm or pgd")
        self.objective, self.epsilon = objective, epsilon
        self.steps = steps if method == "pgd" else 1

    def batches(self, epoch: int) -> list[list[int]]:
        return self.objective.batches(epoch)

    def collate(self, indices: list[int], epoch: int, position: int) -> dict[str, torch.Tensor]:
        return self.objective.collate(indices, epoch, position)

    @torch.compiler.disable  # eager inside a compiled step too (see the module's docstring)
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The clean loss plus the loss at the final perturbation, both differentiable in the weights;
        no parameter's `.grad` is touched before the caller's backward."""
        mask = batch.get("attention_mask")  # (B, T); absent when no row is padded
        shift = _Shift()
        hook = model.get_input_embeddings().register_forward_hook(shift)
        try:
            clean = loss = self.objective.loss(model, batch)  # delta = 0: the usual loss, and a graph to delta
            for step in range(1, self.steps + 1):
                # the clean graph stays for the caller's backward; a PGD step's graph is spent here
                (grad,) = torch.autograd.grad(loss * _DIRECTION_SCALE, shift.delta, retain_graph=step == 1)
                delta = _into_ball(shift.delta.detach() + self.epsilon / self.steps * _unit(grad, mask), self.epsilon)
                shift.delta = delta.requires_grad_(step < self.steps)  # the last one is a constant
                loss = self.objective.loss(model, batch)
            return clean + loss
        finally:
            hook.remove()


class _Shift:
    """The forward hook that adds `delta` to the word embeddings' output (B, T, H); on the first
    forward `delta` becomes a zero leaf of that shape that requires grad."""

    def __init__(self) -> None:
        self.delta: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.delta is None:
            self.delta = torch.zeros_like(output, requires_grad=True)
        return output + self.delta


def _unit(grad: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`grad` (B, T, H) scaled to L2 norm 1 per example over its positions and hidden dimensions.
    Padding takes no part (it gets no gradient anyway; the mask makes that exact), and an example
    whose gradient is zero or not finite gets no perturbation. No host sync."""
    if mask is not None:
        grad = grad * mask[:, :, None].to(grad.dtype)
    norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)[:, None, None]  # (B, 1, 1)
    usable = norm.isfinite() & (norm > 0)
    return torch.where(usable, grad / torch.where(usable, norm, 1.0), 0.0)


def _into_ball(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """`delta` (B, T, H) with each example's L2 norm brought down to at most `epsilon`."""
    norm = torch.linalg.vector_norm(delta.flatten(1), dim=1)[:, None, None]  # (B, 1, 1)
    return delta * (epsilon / norm.clamp_min(epsilon))
