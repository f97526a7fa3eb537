"""Byte-level language models (paper §4.1): masked LM, sequence classification, multitask classification.

All three read UTF-8 bytes through the same adapter (byte embedding + learned positions) and encoder; they differ
only in their output queries: one learned query per position (MLM, logits through the tied embedding), one learned
query (classification), or one learned query per task (the paper's "multitask query" GLUE variant).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters.text import TextInputAdapter, TiedTokenOutputAdapter
from ..core.checks import check_mask, check_token_ids
from ..core.config import Activation, DecoderConfig, EncoderConfig, Masking, check_choice
from ..core.decoder import PerceiverDecoder
from ..core.encoder import PerceiverEncoder
from ..core.position import TrainablePositionEncoding
from ..tokenizer import VOCAB_SIZE
from .base import TaskModel
from .locality import local_routing_init_

IGNORE_INDEX = -100

_LANGUAGE_ENCODER = EncoderConfig(
    num_latents=256, num_latent_channels=1280, num_cross_attention_heads=8, num_self_attention_heads=8,
    num_self_attends_per_block=26, num_blocks=1, qk_channels=256, v_channels=1280,
)


@dataclass(frozen=True)
class TextConfig:
    """Fields shared by the byte-level models: the input adapter, the encoder and numerics."""

    vocab_size: int = VOCAB_SIZE
    max_seq_len: int = 2048
    num_input_channels: int = 768  # C: byte embedding width
    encoder: EncoderConfig = _LANGUAGE_ENCODER
    activation: Activation = "gelu_tanh"
    masking: Masking = "official"
    embedding_init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.activation, ("gelu_tanh", "gelu"), "activation")
        check_choice(self.masking, ("official", "transformers"), "masking")
        for name in ("vocab_size", "max_seq_len", "num_input_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be positive")


@dataclass(frozen=True)
class MaskedLanguageModelConfig(TextConfig):
    """Byte MLM. The decoder's queries are one learned E-dim vector per position (E = C for the tied output)."""

    decoder: DecoderConfig = DecoderConfig(
        num_query_channels=768, num_heads=8, qk_channels=256, v_channels=768, use_query_residual=False)
    # "random": the paper's initialisation. "local": a locality prior for small models on small compute budgets
    # (see perceiverio.tasks.locality); needs qk_channels >= num_input_channels <= num_latent_channels.
    routing_init: str = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.routing_init, ("random", "local"), "routing_init")
        if self.routing_init == "local":
            c = self.num_input_channels
            widths = {"encoder.qk_channels": self.encoder.qk_channels or c,  # defaults: the key/value width
                      "decoder.qk_channels": self.decoder.qk_channels or self.encoder.num_latent_channels,
                      "encoder.num_latent_channels": self.encoder.num_latent_channels}
            narrow = {k: v for k, v in widths.items() if v < c}
            if narrow:
                raise ValueError(f"routing_init='local' needs these widths >= num_input_channels ({c}): {narrow}")
        if self.decoder.num_query_channels != self.num_input_channels:
            raise ValueError("MLM decoder.num_query_channels must equal num_input_channels (tied output embedding)")
        if self.decoder.num_output_channels is not None:
            raise ValueError("MLM decoder has no final projection (num_output_channels=None): logits come from "
                             "the tied embedding")

    @classmethod
    def language_perceiver(cls, **overrides) -> MaskedLanguageModelConfig:
        """The released 201M byte MLM (deepmind/language-perceiver): 2048 bytes, 256 × 1280 latents, 26 layers."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> MaskedLanguageModelConfig:
        """A few-hundred-thousand-parameter model for tests and CPU demos."""
        fields = dict(
            max_seq_len=256, num_input_channels=64,
            encoder=EncoderConfig(num_latents=32, num_latent_channels=128, num_cross_attention_heads=4,
                                  num_self_attention_heads=4, num_self_attends_per_block=4, qk_channels=64,
                                  v_channels=128),
            decoder=DecoderConfig(num_query_channels=64, num_heads=4, qk_channels=64, v_channels=64),
        )
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class SequenceClassifierConfig(TextConfig):
    """Byte sequence classifier: one learned D-dim query, query residual, Linear(E -> num_classes).

    ``num_classes == 1`` makes it a regressor (MSE loss), as in transformers.
    """

    num_classes: int = 2
    decoder: DecoderConfig = DecoderConfig(num_query_channels=1280, num_heads=1, use_query_residual=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")

    @classmethod
    def language_perceiver(cls, num_classes: int = 2, **overrides) -> SequenceClassifierConfig:
        """The released encoder with the transformers classification head."""
        return cls(num_classes=num_classes, **overrides)

    @classmethod
    def tiny(cls, num_classes: int = 2, **overrides) -> SequenceClassifierConfig:
        fields = dict(
            max_seq_len=256, num_input_channels=64, num_classes=num_classes,
            encoder=EncoderConfig(num_latents=32, num_latent_channels=128, num_cross_attention_heads=4,
                                  num_self_attention_heads=4, num_self_attends_per_block=4, qk_channels=64,
                                  v_channels=128),
            decoder=DecoderConfig(num_query_channels=128, num_heads=1, use_query_residual=True),
        )
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class MultitaskClassifierConfig(TextConfig):
    """One learned query per task, one shared decoder cross-attention, one Linear head per task.

    ``tasks``: ``{name: num_classes}`` (a mapping or a tuple of pairs; order is kept).
    """

    tasks: tuple[tuple[str, int], ...] = (("sst2", 2),)
    decoder: DecoderConfig = DecoderConfig(num_query_channels=1280, num_heads=1, use_query_residual=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        tasks = tuple(self.tasks.items()) if isinstance(self.tasks, Mapping) else tuple(tuple(t) for t in self.tasks)
        object.__setattr__(self, "tasks", tasks)
        names = [n for n, _ in tasks]
        if not tasks or len(set(names)) != len(names):
            raise ValueError(f"tasks must be a non-empty mapping of distinct names to class counts, got {tasks}")
        if any((not isinstance(k, int)) or k <= 0 for _, k in tasks):
            raise ValueError(f"every task needs a positive class count, got {tasks}")

    @classmethod
    def glue(cls, **overrides) -> MultitaskClassifierConfig:
        """The eight GLUE tasks of the paper's multitask-query variant (STS-B is a regression: 1 output)."""
        tasks = (("cola", 2), ("sst2", 2), ("mrpc", 2), ("stsb", 1), ("qqp", 2), ("mnli", 3), ("qnli", 2),
                 ("rte", 2))
        return cls(tasks=tasks, **overrides)

    @classmethod
    def tiny(cls, tasks=(("a", 2), ("b", 3)), **overrides) -> MultitaskClassifierConfig:
        fields = dict(
            max_seq_len=256, num_input_channels=64, tasks=tasks,
            encoder=EncoderConfig(num_latents=32, num_latent_channels=128, num_cross_attention_heads=4,
                                  num_self_attention_heads=4, num_self_attends_per_block=4, qk_channels=64,
                                  v_channels=128),
            decoder=DecoderConfig(num_query_channels=128, num_heads=1, use_query_residual=True),
        )
        return cls(**{**fields, **overrides})


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor  # [B, L, V], or [B, K, V] at ``positions``
    loss: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # [B, K] decoded positions when a subset was decoded


@dataclass
class ClassifierOutput:
    logits: torch.Tensor | dict[str, torch.Tensor]  # [B, K] (per task for the multitask model)
    loss: torch.Tensor | None = None
    task_losses: dict[str, torch.Tensor] = field(default_factory=dict)


class _TextPerceiver(TaskModel):
    """Byte adapter + encoder, shared by the language task models."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.input_adapter = TextInputAdapter(config.vocab_size, config.max_seq_len, config.num_input_channels,
                                              config.embedding_init_scale)
        self.encoder = PerceiverEncoder(config.encoder, config.num_input_channels, config.activation, config.masking)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Ids ``[B, L]`` (+ mask) -> latents ``[B, N, D]`` and the validated bool mask."""
        ids = check_token_ids(input_ids, self.config.vocab_size, self.config.max_seq_len)
        mask = check_mask(attention_mask, tuple(ids.shape))
        return self.encoder(self.input_adapter(ids), mask), mask


class MaskedLanguageModel(_TextPerceiver):
    """Byte-level masked language model; output length equals input length.

    ``forward(input_ids, attention_mask, labels)`` returns logits ``[B, L, 262]`` and, with labels (-100 =
    ignored), the mean cross-entropy. ``positions`` (``[B, K]`` or ``[K]``) decodes only those positions, and
    ``decode_labeled_only=True`` decodes only where ``labels != -100`` (same loss, far cheaper training).
    """

    def __init__(self, config: MaskedLanguageModelConfig) -> None:
        super().__init__(config)
        self.queries = TrainablePositionEncoding(config.max_seq_len, config.decoder.num_query_channels)
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels, config.activation,
                                        config.masking)
        self.output_adapter = TiedTokenOutputAdapter(config.vocab_size)
        if config.routing_init == "local":
            local_routing_init_(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                decode_labeled_only: bool = False, chunk_size: int | None = None) -> MaskedLMOutput:
        z, mask = self.encode(input_ids, attention_mask)  # [B, N, D], [B, L]
        b, length = input_ids.shape
        if labels is not None and tuple(labels.shape) != (b, length):
            raise ValueError(f"labels must have shape {[b, length]} like input_ids, got {list(labels.shape)}")
        if decode_labeled_only:
            if labels is None:
                raise ValueError("decode_labeled_only=True needs labels")
            positions, valid = labeled_positions(labels)  # [B, K]
        elif positions is not None:
            positions = _check_positions(positions, b, length)
            valid = None

        if positions is None:
            queries = self.queries(b, index=torch.arange(length, device=z.device))  # [B, L, E]
            query_mask = mask
            targets = labels
        else:
            queries = self.queries(b, index=positions)  # [B, K, E]
            query_mask = None if mask is None else mask.gather(1, positions)
            targets = None if labels is None else labels.gather(1, positions)
            if targets is not None and valid is not None:
                targets = targets.masked_fill(~valid, IGNORE_INDEX)
        h = self.decoder(queries, z, query_mask, chunk_size)  # [B, O, C]
        logits = self.output_adapter(h, self.input_adapter.token_embedding.weight)  # [B, O, V]
        loss = None
        if targets is not None:
            # mean over labelled positions; a batch without any (no word masked) gives 0, not NaN
            nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                                  reduction="sum")
            loss = nll / (targets != IGNORE_INDEX).sum().clamp(min=1)
        return MaskedLMOutput(logits=logits, loss=loss, positions=positions)


def labeled_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of labelled tokens, left-aligned per row: ``([B, K] long, [B, K] valid)``, K = max count."""
    labeled = labels != IGNORE_INDEX  # [B, L]
    k = max(int(labeled.sum(dim=1).max()), 1)
    # stable sort puts labelled positions first, in order
    order = torch.sort((~labeled).to(torch.int8), dim=1, stable=True).indices[:, :k]  # [B, K]
    return order, labeled.gather(1, order)


def _check_positions(positions: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    if not isinstance(positions, torch.Tensor) or positions.dtype.is_floating_point or positions.dim() not in (1, 2):
        raise ValueError("positions must be an integer tensor of shape [K] or [B, K]")
    if positions.dim() == 1:
        positions = positions.unsqueeze(0).expand(batch, -1)
    if positions.shape[0] != batch:
        raise ValueError(f"positions must have batch size {batch}, got {positions.shape[0]}")
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= length):
        raise ValueError(f"positions must lie in [0, {length})")
    return positions.long()


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if num_classes == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    if labels.dtype.is_floating_point:
        raise ValueError(f"classification labels must be integer class ids, got dtype {labels.dtype}")
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_INDEX)


class SequenceClassifier(_TextPerceiver):
    """Byte sequence classifier: ``forward(input_ids, attention_mask, labels)`` -> logits ``[B, num_classes]``."""

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__(config)
        self.query = TrainablePositionEncoding(1, config.decoder.num_query_channels)
        decoder_config = dataclasses.replace(config.decoder, num_output_channels=config.num_classes)
        self.decoder = PerceiverDecoder(decoder_config, config.encoder.num_latent_channels, config.activation,
                                        config.masking)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ClassifierOutput:
        z, _ = self.encode(input_ids, attention_mask)
        logits = self.decoder(self.query(z.shape[0]), z)[:, 0]  # [B, K]
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"labels must have shape [{logits.shape[0]}], got {list(labels.shape)}")
            loss = _classification_loss(logits, labels, self.config.num_classes)
        return ClassifierOutput(logits=logits, loss=loss)


class MultitaskClassifier(_TextPerceiver):
    """Multitask-query classifier: T learned queries decoded by one cross-attention, one Linear head per task.

    ``forward(input_ids, attention_mask, labels={task: [B]})`` -> ``logits = {task: [B, K_task]}``; label -100
    (or a task missing from ``labels``) means "not labelled for this task". The loss is the mean of the per-task
    losses over tasks with at least one label.
    """

    def __init__(self, config: MultitaskClassifierConfig) -> None:
        super().__init__(config)
        self.task_names = [name for name, _ in config.tasks]
        self.queries = TrainablePositionEncoding(len(config.tasks), config.decoder.num_query_channels)
        self.decoder = PerceiverDecoder(dataclasses.replace(config.decoder, num_output_channels=None),
                                        config.encoder.num_latent_channels, config.activation, config.masking)
        e = config.decoder.num_query_channels
        self.heads = nn.ModuleDict({name: nn.Linear(e, k) for name, k in config.tasks})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: Mapping[str, torch.Tensor] | None = None) -> ClassifierOutput:
        z, _ = self.encode(input_ids, attention_mask)
        h = self.decoder(self.queries(z.shape[0]), z)  # [B, T, E]
        logits = {name: self.heads[name](h[:, t]) for t, name in enumerate(self.task_names)}
        task_losses: dict[str, torch.Tensor] = {}
        for name, y in (labels or {}).items():
            if name not in logits:
                raise ValueError(f"unknown task {name!r}; this model has tasks {self.task_names}")
            if not isinstance(y, torch.Tensor) or tuple(y.shape) != (z.shape[0],):
                raise ValueError(f"labels[{name!r}] must be a tensor of shape [{z.shape[0]}], got "
                                 f"{list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
            keep = y != IGNORE_INDEX
            if bool(keep.any()):
                k = dict(self.config.tasks)[name]
                task_losses[name] = _classification_loss(logits[name][keep], y[keep], k)
        loss = torch.stack(list(task_losses.values())).mean() if task_losses else None
        return ClassifierOutput(logits=logits, loss=loss, task_losses=task_losses)
