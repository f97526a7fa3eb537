"""What an exported model reads and writes: one :class:`ExportSignature` per task model, derived from its config.

An exported graph takes and returns plain tensors (no dataclasses, no ``None``), so every task has a fixed list of
named inputs and outputs, the axes that stay dynamic in the graph, and example inputs built from its config (image
size, ``max_seq_len``, modalities) at any batch size and length. :func:`signature` finds the one of a model (by the
most specific class of its MRO in :data:`SIGNATURES`); :class:`ExportModule` wraps a model to that signature.

===========================  ==========================================  =====================================
model                        inputs (dynamic axes)                       outputs
===========================  ==========================================  =====================================
MaskedLanguageModel          input_ids, attention_mask [B, L] int64      logits [B, L, V]
SequenceClassifier           input_ids, attention_mask [B, L] int64      logits [B, K]
MultitaskClassifier          input_ids, attention_mask [B, L] int64      logits_<task> [B, K_task] per task
ImageClassifier              images [B, C, H, W] float32                 logits [B, K]
OpticalFlow                  frames [B, 2, 3, H, W] float32 in [-1, 1]   flow [B, 2, H, W]
MultimodalAutoencoder        one input per modality [B, ...]             output_<modality> [B, ...] each
SetModel                     entities [B, M, C] float32, mask [B, M]     embeddings [B, M, F]
PerceiverIO (plain)          inputs [B, M, C] float32                    outputs [B, O, F]
===========================  ==========================================  =====================================

B is dynamic everywhere; L (text, at most ``max_seq_len``) and M (sets, plain inputs) are dynamic too; image, frame
and modality sizes are the configured ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..adapters.audio import AudioAdapterConfig
from ..adapters.image import ImageAdapterConfig
from ..core.perceiver import PerceiverIO
from ..tasks.flow import OpticalFlow
from ..tasks.image import ImageClassifier
from ..tasks.language import MaskedLanguageModel, MultitaskClassifier, SequenceClassifier
from ..tasks.multimodal import MultimodalAutoencoder
from ..tasks.sets import SetModel

BATCH, LENGTH = "batch", "length"  # the names of the dynamic axes
EXAMPLE_BATCH = 2  # batch size of the example inputs (torch.export specialises sizes 0 and 1)
PLAIN_LENGTH = 32  # example M of models without a configured input length (sets, plain PerceiverIO)


@dataclasses.dataclass(frozen=True)
class ExportSignature:
    """The exported graph's interface for one model.

    inputs/outputs: their names, in order. dynamic: ``{input: {axis: BATCH or LENGTH}}``. max_length: the largest
    L a graph accepts (None: unbounded or no length axis). example: ``example(batch, length)`` -> input tensors
    (``length`` None: the example length). call: ``call(model, *inputs)`` -> output tensors.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]
    example: Callable[[int, int | None], tuple[torch.Tensor, ...]]
    call: Callable[..., tuple[torch.Tensor, ...]]
    max_length: int | None = None
    example_length: int | None = None

    @property
    def has_length(self) -> bool:
        return any(LENGTH in axes.values() for axes in self.dynamic.values())


class ExportModule(nn.Module):
    """``model`` seen through ``signature``: positional tensors in, a tuple of tensors out."""

    def __init__(self, model: nn.Module, signature: ExportSignature) -> None:
        super().__init__()
        self.model, self.signature = model, signature

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.signature.call(self.model, *inputs)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _text_signature(model: nn.Module, outputs: tuple[str, ...], call: Callable) -> ExportSignature:
    cfg = model.config
    max_len, example_len = cfg.max_seq_len, cfg.max_seq_len

    def example(batch: int, length: int | None) -> tuple[torch.Tensor, ...]:
        length = example_len if length is None else length
        g = _generator(batch * 7919 + length)
        ids = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)  # [B, L]
        mask = torch.ones(batch, length, dtype=torch.long)  # [B, L]
        mask[0, max(1, length // 2) :] = 0  # one padded example, so that masking is part of the check
        return ids, mask

    axes = {0: BATCH, 1: LENGTH}
    return ExportSignature(
        ("input_ids", "attention_mask"), outputs, {"input_ids": axes, "attention_mask": axes}, example, call,
        max_length=max_len, example_length=example_len,
    )  # fmt: skip


def _mlm(model: MaskedLanguageModel) -> ExportSignature:
    return _text_signature(model, ("logits",), lambda m, ids, mask: (m(ids, mask).logits,))


def _sequence(model: SequenceClassifier) -> ExportSignature:
    return _text_signature(model, ("logits",), lambda m, ids, mask: (m(ids, mask).logits,))


def _multitask(model: MultitaskClassifier) -> ExportSignature:
    names = tuple(model.task_names)

    def call(m: MultitaskClassifier, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = m(ids, mask).logits
        return tuple(logits[n] for n in names)

    return _text_signature(model, tuple(f"logits_{n}" for n in names), call)


def _image(model: ImageClassifier) -> ExportSignature:
    adapter = model.config.adapter
    shape = (adapter.num_image_channels, *adapter.image_shape)  # (C, H, W)

    def example(batch: int, length: int | None = None) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, *shape, generator=_generator(batch)),)  # [B, C, H, W]

    return ExportSignature(("images",), ("logits",), {"images": {0: BATCH}}, example, lambda m, x: (m(x).logits,))


def _flow(model: OpticalFlow) -> ExportSignature:
    h, w = model.config.train_size

    def example(batch: int, length: int | None = None) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, 2, 3, h, w, generator=_generator(batch)) * 2 - 1,)  # [B, 2, 3, H, W] in [-1, 1]

    return ExportSignature(("frames",), ("flow",), {"frames": {0: BATCH}}, example, lambda m, x: (m(x),))


def _modality_shape(cfg: Any) -> tuple[int, ...]:
    """The per-example input shape of one modality (after the batch axis)."""
    if isinstance(cfg, AudioAdapterConfig):
        return (cfg.num_samples, 1)  # [S, 1]
    if isinstance(cfg, ImageAdapterConfig):
        if len(cfg.image_shape) == 3:  # video [T, C, H, W]
            t, h, w = cfg.image_shape
            return (t, cfg.num_image_channels, h, w)
        return (cfg.num_image_channels, *cfg.image_shape)  # [C, H, W]
    return (cfg.num_classes,)  # a label: one-hot [K]


def _multimodal(model: MultimodalAutoencoder) -> ExportSignature:
    names = tuple(n for n, _ in model.config.modalities)
    shapes = {n: _modality_shape(c) for n, c in model.config.modalities}

    def example(batch: int, length: int | None = None) -> tuple[torch.Tensor, ...]:
        g = _generator(batch)
        return tuple(torch.randn(batch, *shapes[n], generator=g) for n in names)

    def call(m: MultimodalAutoencoder, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = m(dict(zip(names, tensors)))
        return tuple(out[n] for n in names)

    outputs = tuple(f"output_{n}" for n in names)  # ONNX names must differ from the inputs'
    return ExportSignature(names, outputs, {n: {0: BATCH} for n in names}, example, call)


def _set(model: SetModel) -> ExportSignature:
    c = model.config.num_entity_channels

    def example(batch: int, length: int | None) -> tuple[torch.Tensor, ...]:
        length = PLAIN_LENGTH if length is None else length
        entities = torch.randn(batch, length, c, generator=_generator(batch * 31 + length))  # [B, M, C]
        mask = torch.ones(batch, length, dtype=torch.long)  # [B, M]
        mask[0, max(1, length // 2) :] = 0
        return entities, mask

    axes = {0: BATCH, 1: LENGTH}
    return ExportSignature(
        ("entities", "mask"), ("embeddings",), {"entities": axes, "mask": axes}, example,
        lambda m, x, mask: (m(x, mask).embeddings,), example_length=PLAIN_LENGTH,
    )  # fmt: skip


def _plain(model: PerceiverIO) -> ExportSignature:
    if model.input_adapter is not None or model.output_adapter is not None:
        raise ValueError(
            f"{type(model).__name__} has no export signature: a PerceiverIO with adapters of its own needs an entry "
            "in perceiverio.weights.export_inputs.SIGNATURES"
        )
    c = model.encoder.num_input_channels

    def example(batch: int, length: int | None) -> tuple[torch.Tensor, ...]:
        length = PLAIN_LENGTH if length is None else length
        return (torch.randn(batch, length, c, generator=_generator(batch * 31 + length)),)  # [B, M, C]

    return ExportSignature(
        ("inputs",), ("outputs",), {"inputs": {0: BATCH, 1: LENGTH}}, example, lambda m, x: (m(x),),
        example_length=PLAIN_LENGTH,
    )  # fmt: skip


# the most specific class of a model's MRO named here gives its signature
SIGNATURES: dict[type, Callable[[Any], ExportSignature]] = {
    MaskedLanguageModel: _mlm,
    SequenceClassifier: _sequence,
    MultitaskClassifier: _multitask,
    ImageClassifier: _image,
    OpticalFlow: _flow,
    MultimodalAutoencoder: _multimodal,
    SetModel: _set,
    PerceiverIO: _plain,
}


def signature(model: nn.Module) -> ExportSignature:
    """The export signature of ``model`` (TypeError for anything but a PerceiverIO)."""
    if not isinstance(model, PerceiverIO):
        raise TypeError(f"model must be a perceiverio PerceiverIO model, got {type(model).__name__}")
    for klass in type(model).__mro__:
        if klass in SIGNATURES:
            return SIGNATURES[klass](model)
    raise ValueError(f"{type(model).__name__} has no export signature")  # unreachable: PerceiverIO is in the table
