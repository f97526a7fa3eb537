"""Optimisers and schedules of the paper's recipes: LAMB (as ``optax.lamb``), AdamW, decoupled weight decay without
decay on biases and normalisation parameters, constant-then-cosine and warm-up-then-cosine schedules; and
:class:`StepInBackward`, which updates each parameter during backward so that gradients never all coexist."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., 2019) exactly as ``optax.lamb``, which the official Perceiver IO training uses:

        m, v  = Adam moments;  u = m̂ / (√v̂ + eps) + weight_decay · w
        r     = ‖w‖ / ‖u‖   (1 when either norm is 0)
        w    ← w − lr · r · u

    The weight decay is decoupled (added to the update, scaled by the trust ratio), per parameter group.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"invalid LAMB hyper-parameters: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("Lamb does not support sparse gradients")
                # moments and arithmetic in float32 for half-precision weights, else in the weights' dtype
                dtype = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                grad, w = p.grad.to(dtype), p.to(dtype)
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(w, alpha=group["weight_decay"])
                w_norm, u_norm = w.norm(), update.norm()
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_((update * ratio).to(p.dtype), alpha=-group["lr"])
        return loss


class StepInBackward:
    """Update each parameter inside backward, as soon as its gradient is complete, then free that gradient.

    The update is ``optimizer``'s own (same state, same hyper-parameters, same schedule: the wrapped optimiser's
    ``param_groups`` are read at every update), so training is numerically the same as ``backward(); step()``
    while the model's full set of gradients never exists at once: training memory drops by one copy of the
    parameters (201M-parameter MLM: 0.75 GiB of its ~4 GiB). The optimiser's own ``step()`` then finds no
    gradients and does nothing, so a training loop (or Lightning) that still calls it stays correct.

    Not compatible with anything that needs every gradient before the update: gradient accumulation over several
    backward passes, clipping by global norm, loss scaling (fp16 ``GradScaler``) and data-parallel gradient
    reduction (the hooks fire before the reduction). :class:`~perceiverio.training.base.PerceiverTask` refuses
    those combinations. Works with gradient checkpointing (non-reentrant) and with weights shared between layers
    (a parameter's gradient is complete only after all its uses).

    ``remove()`` detaches the hooks (also done when the object is used as a context manager).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._handles = []
        seen: set[int] = set()
        for index, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError("a parameter appears twice in the optimizer's param_groups")
                seen.add(id(p))
                self._handles.append(p.register_post_accumulate_grad_hook(functools.partial(self._update, index)))

    def _update(self, index: int, p: torch.Tensor) -> None:
        groups = self.optimizer.param_groups
        self.optimizer.param_groups = [{**groups[index], "params": [p]}]  # the live group, this parameter only
        try:
            self.optimizer.step()
        finally:
            self.optimizer.param_groups = groups
        p.grad = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> StepInBackward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_name(name: str) -> str:
    """A parameter's name without the segments that FSDP, activation-checkpointing and ``torch.compile`` wrappers
    insert (``encoder._fsdp_wrapped_module.latents`` -> ``encoder.latents``)."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def param_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the trainable parameters, recorded before a sharding wrapper changes them."""
    return {unwrapped_name(n): tuple(p.shape) for n, p in model.named_parameters()}


def param_groups(
    model: nn.Module, weight_decay: float, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> list[dict]:
    """Two groups: weights with ``weight_decay``; biases and normalisation scales/offsets (every parameter with
    fewer than 2 dimensions) without decay, as in the official recipe.

    ``shapes``: the parameters' original shapes by name (:func:`param_shapes` before wrapping). FSDP
    (``use_orig_params=True``, Lightning's default) turns every parameter into a 1-D view of its shard, so its
    current shape no longer tells a weight from a bias."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            shape = p.shape if shapes is None else shapes[unwrapped_name(name)]
            (decay if len(shape) >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def sharded_parameters(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Names of the parameters whose shape differs from ``shapes`` (FSDP's flat 1-D shards)."""
    return [n for n, p in model.named_parameters() if tuple(p.shape) != tuple(shapes.get(unwrapped_name(n), p.shape))]


def build_optimizer(
    model: nn.Module,
    name: str = "lamb",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> torch.optim.Optimizer:
    """``lamb`` or ``adamw`` over :func:`param_groups` (decoupled decay, none on biases and norms). LAMB needs whole
    parameters (its trust ratio is a norm per parameter): it is refused when ``shapes`` shows sharded ones."""
    if name == "lamb" and shapes is not None and sharded_parameters(model, shapes):
        raise ValueError(
            "optimizer.name=lamb needs whole parameters (its trust ratio is the norm of each "
            "parameter), but the strategy shards them (FSDP): use optimizer.name=adamw, or DDP"
        )
    groups = param_groups(model, weight_decay, shapes)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"optimizer must be 'lamb' or 'adamw', got {name!r}")


def lr_factor(
    step: int, total_steps: int, schedule: str = "warmup_cosine", warmup_steps: int = 0, constant_fraction: float = 0.5
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``.

    ``warmup_cosine``: linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps`` (MLM: 1k
    warm-up). ``constant_cosine``: flat for ``constant_fraction`` of training, then cosine to 0 (ImageNet: half).
    ``constant``: always 1.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if schedule == "constant":
        return 1.0
    if schedule == "warmup_cosine":
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        start = warmup_steps
    elif schedule == "constant_cosine":
        start = int(constant_fraction * total_steps)
        if step < start:
            return 1.0
    else:
        raise ValueError(f"schedule must be 'warmup_cosine', 'constant_cosine' or 'constant', got {schedule!r}")
    progress = min(max(step - start, 0) / max(total_steps - start, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def budget_lr_factor(
    step: int,
    progress: float,
    schedule: str = "warmup_cosine",
    warmup_steps: int = 0,
    warmup_progress: float = 0.0,
    constant_fraction: float = 0.5,
) -> float:
    """Multiplier of the base learning rate when training is ``progress`` (0..1) of the way through its budget
    (wall time, steps, or the larger of the two), at optimiser step ``step``.

    ``warmup_cosine``: linear warm-up over the first ``warmup_steps`` steps, then cosine from 1 at
    ``warmup_progress`` (the progress when warm-up ended) to 0 at progress 1. ``constant_cosine``: 1 until
    ``constant_fraction``, then cosine to 0 at 1. ``constant``: 1. With ``progress = step / total_steps`` and
    ``warmup_progress = warmup_steps / total_steps`` this is :func:`lr_factor`'s warm-up-then-cosine.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "warmup_cosine":
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        start = warmup_progress
    elif schedule == "constant_cosine":
        start = constant_fraction
        if progress < start:
            return 1.0
    else:
        raise ValueError(f"schedule must be 'warmup_cosine', 'constant_cosine' or 'constant', got {schedule!r}")
    if start >= 1.0:
        return 0.0
    x = min(max(progress - start, 0.0) / (1.0 - start), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * x))


class LRSchedule:
    """The learning-rate factor of every optimiser step (a ``LambdaLR`` callable; its numbers are checkpointed with
    the scheduler, so a resumed run continues the same curve).

    Without a time budget it is :func:`lr_factor` over ``total_steps``. With one (``trainer.max_time``), the task
    sets :attr:`time_fraction` (elapsed / budget) before each step and the factor follows :func:`budget_lr_factor`
    at ``progress = max(step / total_steps, time_fraction)``: a run capped by wall time ends annealed at its cap,
    whichever of the step and time limits comes first.
    """

    def __init__(
        self,
        total_steps: float,
        schedule: str = "warmup_cosine",
        warmup_steps: int = 0,
        constant_fraction: float = 0.5,
        timed: bool = False,
    ) -> None:
        self.total_steps = float(total_steps)
        self.schedule, self.warmup_steps, self.constant_fraction = schedule, int(warmup_steps), constant_fraction
        self.timed = bool(timed)
        self.time_fraction = 0.0
        self.warmup_progress: float | None = None

    def progress(self, step: int) -> float:
        by_steps = step / self.total_steps if math.isfinite(self.total_steps) and self.total_steps > 0 else 0.0
        return min(max(by_steps, self.time_fraction), 1.0)

    def __call__(self, step: int) -> float:
        if not self.timed:
            total = max(int(self.total_steps), 1) if math.isfinite(self.total_steps) else 1
            return lr_factor(step, total, self.schedule, self.warmup_steps, self.constant_fraction)
        progress = self.progress(step)
        if self.warmup_progress is None and step >= self.warmup_steps:
            self.warmup_progress = progress
        return budget_lr_factor(
            step, progress, self.schedule, self.warmup_steps, self.warmup_progress or 0.0, self.constant_fraction
        )
