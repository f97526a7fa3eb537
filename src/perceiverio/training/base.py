"""The Lightning base module of every task: flat model options, optimiser recipe, schedule, switches and export.

:class:`PerceiverTask` holds a task model (``self.model``, e.g. a :class:`~perceiverio.MaskedLanguageModel`) and
gives it the paper's optimiser (LAMB or AdamW over :func:`~perceiverio.training.optim.param_groups`: decoupled weight
decay, none on biases and norms) with a per-step schedule (:class:`~perceiverio.training.optim.LRSchedule`, over the
steps or the ``max_time`` budget). The task modules (:mod:`perceiverio.training.language`, ``.image``, ``.flow``,
``.multimodal``, on :class:`~perceiverio.training.evaluation.EvaluatedTask`) add the losses and metrics.

**Flat options.** A task module takes the fields of its model's config dataclass directly, next to its training
options: ``MaskedLanguageModelTask(max_seq_len=128, encoder=EncoderConfig(...), optimizer=...)``, in YAML
``model: {class_path: ..., init_args: {max_seq_len: 128, encoder: {num_latents: 64}, optimizer: {lr: 1e-3}}}`` and
on the command line ``--model.encoder.num_latents 64``. Fields not given keep the values of the class's
``default_config()`` (the model's small ``tiny()`` preset); a whole config may be passed as the first argument
instead (``MaskedLanguageModelTask(MaskedLanguageModelConfig.language_perceiver())``), fields given beside it
replacing its values. The signature that LightningCLI/jsonargparse read lists every config field with its default
(:func:`flat_signature`), so ``--print_config`` and ``--help`` show them.

Hyper-parameters (``self.hparams``) are those flat arguments as plain data (dataclasses as dicts, tuples as
lists: :func:`to_plain`), so a Lightning checkpoint loads with ``torch.load(weights_only=True)``,
``Task.load_from_checkpoint(path)`` rebuilds the module without arguments (:func:`from_plain` reads the types back
from the dataclass fields), and ``perceiverio validate --ckpt_path`` parses them like a config file.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ..core.checks import set_value_checks
from ..core.decoder import PerceiverDecoder
from ..core.encoder import PerceiverEncoder
from ..weights.checkpoint import config_from_dict
from .callbacks import time_budget
from .optim import LRSchedule, StepInBackward, build_optimizer, param_shapes
from .resume import RandomStates
from .warm_start import warm_start

OPTIMIZERS = ("lamb", "adamw")
SCHEDULES = ("warmup_cosine", "constant_cosine", "constant")


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and learning-rate schedule (stepped every optimiser step).

    name: ``"lamb"`` (the paper's) or ``"adamw"``; both decay weights decoupled, never biases and norms.
    lr: peak learning rate. weight_decay: decoupled decay of the weights (matrices and embeddings).
    betas, eps: Adam moments and epsilon (the paper's LAMB: 0.9, 0.999, 1e-6).
    schedule: ``"warmup_cosine"`` (linear warm-up over ``warmup_steps``, then cosine to 0: MLM, flow),
        ``"constant_cosine"`` (flat for ``constant_fraction`` of training, then cosine to 0: ImageNet) or
        ``"constant"``. The total is the trainer's ``estimated_stepping_batches`` (``max_steps`` or
        epochs × batches / accumulation); with ``trainer.max_time`` the schedule runs over the wall-time budget
        too (whichever limit comes first), so a run stopped by its time cap ends with the rate annealed to 0.
    step_in_backward: update each parameter during backward as soon as its gradient is complete, and free that
        gradient (:class:`~perceiverio.training.optim.StepInBackward`): the same updates with one copy of the
        parameters less in memory (0.75 GiB for the 201M MLM). Incompatible with ``accumulate_grad_batches > 1``,
        ``gradient_clip_val``, ``16-mixed`` precision and more than one process, which are refused.
    """

    name: str = "lamb"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    constant_fraction: float = 0.5
    step_in_backward: bool = False

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas}")
        if self.lr < 0 or self.weight_decay < 0 or self.eps < 0:
            raise ValueError(
                f"optimizer lr, weight_decay and eps must be >= 0, got {self.lr}, {self.weight_decay}, {self.eps}"
            )
        if self.warmup_steps < 0 or not 0.0 <= self.constant_fraction <= 1.0:
            raise ValueError(
                f"optimizer.warmup_steps must be >= 0 and constant_fraction in [0, 1], got "
                f"{self.warmup_steps}, {self.constant_fraction}"
            )


def to_plain(value: Any) -> Any:
    """Config values as plain data (how hyper-parameters are stored): dataclasses -> dicts of their fields,
    tuples -> lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def from_plain(value: Any, hint: Any) -> Any:
    """The inverse of :func:`to_plain` for a value of type ``hint``: dicts become the dataclass the type names (for a
    union of dataclasses, the one whose fields hold every key), lists become tuples; the tagged dicts of
    :func:`~perceiverio.weights.checkpoint.config_to_dict` are read too."""
    if isinstance(value, Mapping) and "__class__" in value:
        return config_from_dict(dict(value))
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        hints = typing.get_type_hints(hint)
        return hint(**{k: from_plain(v, hints.get(k, Any)) for k, v in value.items()})
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if isinstance(value, Mapping):
            for arg in args:
                names = {f.name for f in dataclasses.fields(arg)} if dataclasses.is_dataclass(arg) else set()
                if set(value) <= names:
                    return from_plain(value, arg)
        return value
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)):
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(from_plain(v, a) for v, a in zip(value, items, strict=False))
    return value


def as_config(value: Any, cls: type, name: str) -> Any:
    """``value`` as a ``cls`` instance: the instance itself, or its plain (or tagged) dict from a checkpoint's
    hyper-parameters."""
    if isinstance(value, Mapping):
        value = from_plain(value, cls)
    if isinstance(value, cls):
        return value
    raise TypeError(f"{name} must be a {cls.__name__} (or its dict from a checkpoint), got {value!r}")


def option_parameters(init: Callable, inherited: Sequence[inspect.Parameter] = ()) -> tuple[inspect.Parameter, ...]:
    """The options of a task module's ``__init__(self, config=None, *, <its options>, **kwargs)``: its parameters
    but ``self``, ``config``, ``*args`` and ``**kwargs`` (as keyword-only ones), then, when it takes ``**kwargs``
    (which it passes on to its base class), the ``inherited`` options of the base that it does not declare again.
    Annotations are resolved to types where they can be (in the module of ``init``), so that the options keep their
    types in the signature of a subclass defined in another module."""
    params = list(inspect.signature(init).parameters.values())[1:]
    try:
        hints = typing.get_type_hints(init)
    except NameError:  # a name imported only for type checkers: the annotations stay as written
        hints = {}
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
        for p in params
        if p.name != "config" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return tuple(own)
    names = {p.name for p in own}
    return (*own, *(p for p in inherited if p.name not in names))


def flat_signature(
    init: Callable, config_class: type, default: Any, options: Sequence[inspect.Parameter]
) -> inspect.Signature:
    """The signature LightningCLI/jsonargparse (and ``inspect``) see for a task module's ``__init__``: ``self``, one
    keyword parameter per field of ``config_class`` (its type; default: its value in ``default``), then the
    ``options`` (those of :func:`option_parameters`); ``config`` and ``**kwargs`` are left out."""
    own = inspect.signature(init)
    hints = typing.get_type_hints(config_class)
    clash = sorted({f.name for f in dataclasses.fields(config_class)} & {p.name for p in options})
    if clash:
        raise TypeError(f"options {clash} of {init.__qualname__} have the names of {config_class.__name__} fields")
    fields = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(default, f.name), annotation=hints.get(f.name, Any)
        )
        for f in dataclasses.fields(config_class)
        if f.init
    ]
    self_parameter = next(iter(own.parameters.values()))
    return own.replace(parameters=[self_parameter, *fields, *options])


class PerceiverTask(L.LightningModule):
    """Base of the task modules: ``self.model`` (built by the subclass from flat config fields) + optimiser,
    schedule and switches.

    Args:
        config: a whole model config (default: ``default_config()``); the other keyword arguments that are fields of
            ``config_class`` replace its values.
        optimizer: :class:`OptimizerConfig` (LAMB, warm-up then cosine by default).
        gradient_checkpointing: recompute the encoder's cross-attention, each latent self-attention layer and
            the decoder's cross-attention in backward instead of storing their activations (the
            ``gradient_checkpointing`` switch of every encoder and decoder in the model): less memory, about a third
            more compute.
        compile: run the model through ``torch.compile`` (compiled lazily at the first forward). Off by default:
            on CPU, compiling costs tens of seconds to minutes (it needs a C++ compiler; about 2 minutes for the
            tiny MLM on 2 cores) and gains little for small models; turn it on for long GPU runs. The models' input
            checks that read tensor values are off while compiling; MLM's ``decode_labeled_only`` has
            data-dependent shapes (recompiles).
        init_from: start ``fit`` from the weights of another trained model (an exported folder or a Hub id):
            every tensor whose name and shape match is copied (:func:`~perceiverio.training.warm_start.warm_start`),
            e.g. an MLM's input adapter and encoder into a sequence classifier. A source with another
            ``encoder.num_latents`` has its latents resized to this model's (:meth:`PerceiverIO.resize_latents`).
            Not applied when resuming from a checkpoint (``--ckpt_path``), whose weights win.

    A subclass sets ``config_class`` (its model's config dataclass) and ``default_config`` (a callable returning the
    default config, e.g. ``MaskedLanguageModelConfig.tiny``). Its ``__init__`` declares only its own options,
    ``(self, config=None, *, <its options>, **kwargs)``, calls ``super().__init__(config, <its options>=...,
    **kwargs)`` (its options are passed on to be stored in the hyper-parameters; ``kwargs`` holds the config fields
    and the options of this base class) and then :meth:`_setup_model` with a model built from
    ``self.model_config``. At class creation its ``__init__`` gets the flat signature of :func:`flat_signature`: the
    config fields, its options, then those of its base classes (:func:`option_parameters`).
    """

    config_class: ClassVar[type | None] = None
    default_config: ClassVar[Callable[[], Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.init_options = option_parameters(cls.__init__, cls.init_options)
            if cls.config_class is not None:
                cls.__init__.__signature__ = flat_signature(
                    cls.__init__, cls.config_class, cls.default_config(), cls.init_options
                )

    def __init__(
        self,
        config: Any = None,
        *,
        optimizer: OptimizerConfig = OptimizerConfig(),
        gradient_checkpointing: bool = False,
        compile: bool = False,
        init_from: str | None = None,
        **kwargs: Any,
    ) -> None:  # noqa: A002 (named like torch.compile)
        super().__init__()
        options = {p.name: kwargs.pop(p.name) for p in type(self).init_options if p.name in kwargs}
        self.model_config = self._model_config(config, kwargs)  # the other keyword arguments: config fields
        self.optimizer_config = as_config(optimizer, OptimizerConfig, "optimizer")
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.compile_model = bool(compile)
        if init_from is not None and not isinstance(init_from, (str, os.PathLike)):
            raise ValueError(f"init_from must be a model folder or Hub id, got {type(init_from).__name__}")
        self.init_from = None if init_from is None else str(init_from)
        self._compiled = None  # set lazily; not a registered submodule (no duplicate weights in state_dict)
        self._step_in_backward: StepInBackward | None = None  # hooks while fitting with step_in_backward
        hparams = (
            {f.name: getattr(self.model_config, f.name) for f in dataclasses.fields(self.model_config) if f.init}
            if self.model_config is not None
            else {}
        )
        hparams.update(
            options,
            optimizer=self.optimizer_config,
            gradient_checkpointing=self.gradient_checkpointing,
            compile=self.compile_model,
            init_from=self.init_from,
        )
        self._store_hparams({k: to_plain(v) for k, v in hparams.items()})

    #: the keyword options of ``__init__`` (a subclass's own first, then its base classes')
    init_options: ClassVar[tuple[inspect.Parameter, ...]] = option_parameters(__init__)

    def _model_config(self, config: Any, fields: dict[str, Any]) -> Any:
        """The model config: ``config`` (default: ``default_config()``) with ``fields`` replaced. Values may be the
        plain dicts of a checkpoint's hyper-parameters."""
        cls = type(self).config_class
        if cls is None:
            if config is not None or fields:
                raise TypeError(f"{type(self).__name__} has no config_class to build a model config from")
            return None
        config = type(self).default_config() if config is None else as_config(config, cls, "config")
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls) if f.init})
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments {unknown}: neither its options nor "
                f"fields of {cls.__name__}"
            )
        hints = typing.get_type_hints(cls)
        return (
            dataclasses.replace(config, **{k: from_plain(v, hints[k]) for k, v in fields.items()}) if fields else config
        )

    def _store_hparams(self, hparams: dict[str, Any]) -> None:
        """Set ``self.hparams`` (saved in checkpoints, logged) as Lightning's ``save_hyperparameters`` does. That
        method cannot be used here: it reads the arguments back from the callers' frames by the names of their
        ``__init__`` signatures, and the flat config fields of the generated signature are not local variables."""
        self._set_hparams(hparams)
        self._hparams_initial = copy.deepcopy(self._hparams)
        self._hparams_name = "kwargs"

    def _setup_model(self, model: nn.Module) -> None:
        self.model = model
        self._param_shapes = param_shapes(model)  # weight decay by the original shapes, also when FSDP shards them
        if self.gradient_checkpointing:
            parts = [m for m in model.modules() if isinstance(m, (PerceiverEncoder, PerceiverDecoder))]
            if not parts:
                raise ValueError(
                    f"{type(model).__name__} has no Perceiver encoder or decoder: gradient "
                    "checkpointing is not available"
                )
            for m in parts:
                m.gradient_checkpointing = True

    def setup(self, stage: str) -> None:
        """Before ``fit`` (not a resume): copy the ``init_from`` model's matching weights."""
        super().setup(stage)
        if stage == "fit" and self.init_from and not self.trainer.ckpt_path:
            rank_zero_info(f"init_from {self.init_from}: {warm_start(self.model, self.init_from).summary()}")

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The task model's forward (through ``torch.compile`` when ``compile=True``). On a GPU it runs without the
        checks that read tensor values (token ids, labels in range: each would make the host wait for the device);
        the data modules check those once, at setup."""
        if self.device.type != "cuda":
            return self._model_forward(*args, **kwargs)
        previous = set_value_checks(False)
        try:
            return self._model_forward(*args, **kwargs)
        finally:
            set_value_checks(previous)

    def _model_forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compile_model:
            return self.model(*args, **kwargs)
        if self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.model))
        return self._compiled(*args, **kwargs)

    # ----------------------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        c = self.optimizer_config
        optimizer = build_optimizer(self.model, c.name, c.lr, c.weight_decay, c.betas, c.eps, self._param_shapes)
        total, timed = self.trainer.estimated_stepping_batches, time_budget(self.trainer) is not None
        if not math.isfinite(total) and not timed and c.schedule != "constant":
            raise ValueError(
                f"the {c.schedule!r} schedule needs a finite training length: set trainer max_steps, max_epochs "
                "or max_time (or use optimizer.schedule=constant)"
            )
        self._lr_schedule = LRSchedule(total, c.schedule, c.warmup_steps, c.constant_fraction, timed=timed)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_schedule)
        if c.step_in_backward:
            self._check_step_in_backward()
            self._remove_step_in_backward()
            self._step_in_backward = StepInBackward(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Tell a time-budgeted learning-rate schedule how much of ``max_time`` has passed: the time after this
        step's backward, which sets the rate of the next step (Lightning steps the scheduler after the optimiser)."""
        schedule = getattr(self, "_lr_schedule", None)
        timer = time_budget(self.trainer) if schedule is not None and schedule.timed else None
        if timer is not None:
            elapsed = timer.time_elapsed()
            schedule.time_fraction = min(elapsed / max(elapsed + timer.time_remaining(), 1e-9), 1.0)

    def _check_step_in_backward(self) -> None:
        t = self.trainer
        clash = []
        if t.accumulate_grad_batches != 1:
            clash.append(f"accumulate_grad_batches={t.accumulate_grad_batches} (needs 1)")
        if t.gradient_clip_val:
            clash.append(
                f"gradient_clip_val={t.gradient_clip_val} (needs none: clipping by global norm needs "
                "every gradient before the update)"
            )
        if str(t.precision) == "16-mixed":
            clash.append("precision=16-mixed (loss scaling needs every gradient before the update; use bf16-mixed)")
        if t.world_size > 1:
            clash.append(f"{t.world_size} processes (gradients are updated before data-parallel reduction)")
        if clash:
            raise ValueError("optimizer.step_in_backward=true cannot be combined with " + "; ".join(clash))

    def _remove_step_in_backward(self) -> None:
        if self._step_in_backward is not None:
            self._step_in_backward.remove()
            self._step_in_backward = None

    def on_fit_end(self) -> None:
        self._remove_step_in_backward()

    def configure_callbacks(self) -> list[L.Callback]:
        """:class:`~perceiverio.training.resume.RandomStates`: checkpoints carry the random generators' states, so
        a resumed run draws what the uninterrupted one would (a subclass adding callbacks extends this list)."""
        return [*super().configure_callbacks(), RandomStates()]

    def log_lr(self) -> None:
        """Log the current learning rate as ``train/lr`` (called by the tasks' training steps)."""
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ------------------------------------------------------------------------------------------------- export
    def export(self, directory: str | os.PathLike) -> Path:
        """Write the task model as ``model.safetensors`` + ``config.json`` (reload with
        ``<ModelClass>.from_pretrained(directory)``, no Lightning needed)."""
        return self.model.save_pretrained(directory)
