"""Byte-level language models (paper §4.1): masked LM, sequence classification, multitask classification.

All three read UTF-8 bytes through the same adapter (byte embedding + learned positions) and encoder; they differ
only in their output queries: one learned query per position (MLM, logits through the tied embedding), one learned
query (classification), or one learned query per task (the paper's "multitask query" GLUE variant).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ..adapters.classification import ClassificationOutputAdapter, MultitaskOutputAdapter
from ..adapters.text import TextInputAdapter, TiedTokenOutputAdapter
from ..core.attention import check_flag
from ..core.checks import check_class_ids, check_indices, check_mask, check_range
from ..core.perceiver import PerceiverIO, build_decoder, build_encoder
from ..core.queries import LearnedQueries
from .language_config import MaskedLanguageModelConfig, MultitaskClassifierConfig, SequenceClassifierConfig, TextConfig
from .locality import local_routing_init_
from .outputs import IGNORE_INDEX, ClassifierOutput, MaskedLMOutput, class_cross_entropy

__all__ = [
    "MaskedLanguageModel",
    "MaskedLanguageModelConfig",
    "MultitaskClassifier",
    "MultitaskClassifierConfig",
    "SequenceClassifier",
    "SequenceClassifierConfig",
    "TextConfig",
    "classification_loss",
    "labeled_positions",
]


def _text_adapter(config: TextConfig) -> TextInputAdapter:
    return TextInputAdapter(
        config.vocab_size, config.max_seq_len, config.num_input_channels, config.embedding_init_scale
    )


class MaskedLanguageModel(PerceiverIO):
    """Byte-level masked language model; output length equals input length.

    bytes → embedding + positions → encoder → one learned query per position → decoder → tied-embedding logits.

    ``forward(input_ids, attention_mask, labels)`` returns logits ``[B, L, 262]`` and, with labels (-100 =
    ignored), the mean cross-entropy. ``positions`` (``[B, K]`` or ``[K]``) decodes only those positions, and
    ``decode_labeled_only=True`` decodes only where ``labels != -100`` (same loss, far cheaper training).
    """

    def __init__(self, config: MaskedLanguageModelConfig) -> None:
        adapter = _text_adapter(config)
        super().__init__(
            input_adapter=adapter,
            encoder=build_encoder(config, config.num_input_channels),
            output_queries=LearnedQueries(config.max_seq_len, config.decoder.num_query_channels),
            decoder=build_decoder(config),
            output_adapter=TiedTokenOutputAdapter(adapter.token_embedding),
            config=config,
        )
        if config.routing_init == "local":
            local_routing_init_(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        decode_labeled_only: bool = False,
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> MaskedLMOutput:
        """``return_attention=True`` also fills ``encoder_attention [B, h, N, L]`` and ``decoder_attention
        [B, h, O, N]`` (O = L, or K decoded positions); logits and loss unchanged."""
        return_attention = check_flag(return_attention)
        x = self.input_adapter(input_ids)  # [B, L, C] (validates the ids)
        b, length = x.shape[:2]
        mask = check_mask(attention_mask, (b, length), "attention_mask", like="input_ids")  # [B, L]
        if labels is not None:
            labels = _check_token_labels(labels, (b, length), self.config.vocab_size)
        valid = None
        if decode_labeled_only:
            if labels is None:
                raise ValueError("decode_labeled_only=True needs labels")
            positions, valid = labeled_positions(labels)  # [B, K]
        elif positions is not None:
            positions = _check_positions(positions, b, length)
        z, encoder_attention = self.encoder(x, mask, True) if return_attention else (self.encoder(x, mask), None)
        if positions is None:  # every position: O = L
            q = self.output_queries(x)[:, :length]  # [B, L, E]
            query_mask, targets = mask, labels
        else:  # a subset: O = K
            q = self.output_queries(x, positions)  # [B, K, E]
            query_mask = None if mask is None else mask.gather(1, positions)
            targets = None if labels is None else labels.gather(1, positions)
            if targets is not None and valid is not None:
                targets = targets.masked_fill(~valid, IGNORE_INDEX)
        if return_attention:
            logits, decoder_attention = self.decode(z, q, query_mask, chunk_size, return_attention=True)
        else:
            logits, decoder_attention = self.decode(z, q, query_mask, chunk_size), None  # [B, O, V]
        loss = None if targets is None else _token_loss(logits, targets)
        return MaskedLMOutput(
            logits=logits,
            loss=loss,
            positions=positions,
            encoder_attention=encoder_attention,
            decoder_attention=decoder_attention,
        )


def _token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions; a batch without any (no word masked) gives 0, not NaN."""
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return nll / (targets != IGNORE_INDEX).sum().clamp(min=1)


def _check_token_labels(labels: object, shape: tuple[int, int], vocab_size: int) -> torch.Tensor:
    """MLM labels: integer ids ``[B, L]`` like input_ids, each in [0, vocab_size) or -100 (ignored)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a tensor of token ids of shape {list(shape)}, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer token ids (-100 = ignored), got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"labels must have shape {list(shape)} like input_ids, got {list(labels.shape)}")
    check_range(labels.masked_fill(labels == IGNORE_INDEX, 0), 0, vocab_size, f"labels (or {IGNORE_INDEX})")
    return labels.long()


def _check_targets(labels: object, batch: int, name: str = "labels") -> torch.Tensor:
    """Regression targets: a real tensor ``[B]``."""
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_complex or labels.dtype == torch.bool:
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a real tensor of regression targets of shape [{batch}], got {got}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(
            f"{name} must have shape [{batch}] (one target per example of input_ids), got {list(labels.shape)}"
        )
    return labels


def labeled_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of labelled tokens, left-aligned per row: ``([B, K] long, [B, K] valid)``, K = max count.

    K depends on the labels' values (a data-dependent shape): eager training only, not for compiled graphs.
    """
    labeled = labels != IGNORE_INDEX  # [B, L]
    k = max(int(labeled.sum(dim=1).max()), 1)
    # stable sort puts labelled positions first, in order
    order = torch.sort((~labeled).to(torch.int8), dim=1, stable=True).indices[:, :k]  # [B, K]
    return order, labeled.gather(1, order)


def _check_positions(positions: object, batch: int, length: int) -> torch.Tensor:
    positions = check_indices(positions, "positions")
    if positions.dim() == 1:
        positions = positions.unsqueeze(0).expand(batch, -1)
    if positions.shape[0] != batch:
        raise ValueError(f"positions must have batch size {batch}, got {positions.shape[0]}")
    check_range(positions, 0, length, "positions")
    return positions.long()


def _encode_decode(
    model: PerceiverIO, x: torch.Tensor, mask: torch.Tensor | None, return_attention: object
) -> tuple[object, dict[str, torch.Tensor]]:
    """The classifiers' encoder + learned queries + decoder: (output, ``{encoder_attention, decoder_attention}``
    when ``return_attention`` is True, else ``{}``)."""
    if not check_flag(return_attention):
        return model.decode(model.encoder(x, mask), model.output_queries(x)), {}
    z, encoder_attention = model.encoder(x, mask, True)  # [B, N, D], [B, h, N, L]
    out, decoder_attention = model.decode(z, model.output_queries(x), return_attention=True)
    return out, {"encoder_attention": encoder_attention, "decoder_attention": decoder_attention}


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean loss over labelled examples (label != -100), 0 when none is: cross-entropy for classes, MSE for a
    regression (``num_classes == 1``, every label counts). Never reads tensor values (no host sync)."""
    if num_classes == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    if labels.dtype.is_floating_point:
        raise ValueError(f"classification labels must be integer class ids, got dtype {labels.dtype}")
    return class_cross_entropy(logits, labels)


class SequenceClassifier(PerceiverIO):
    """Byte sequence classifier: ``forward(input_ids, attention_mask, labels)`` -> logits ``[B, num_classes]``.

    bytes → embedding + positions → encoder → one learned class query → decoder (+ Linear to K) → logits.
    """

    def __init__(self, config: SequenceClassifierConfig) -> None:
        super().__init__(
            input_adapter=_text_adapter(config),
            encoder=build_encoder(config, config.num_input_channels),
            output_queries=LearnedQueries(1, config.decoder.num_query_channels),
            decoder=build_decoder(config, dataclasses.replace(config.decoder, num_output_channels=config.num_classes)),
            output_adapter=ClassificationOutputAdapter(),
            config=config,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> ClassifierOutput:
        """``return_attention=True`` also fills ``encoder_attention [B, h, N, L]`` and ``decoder_attention
        [B, h, 1, N]``; logits unchanged."""
        x = self.input_adapter(input_ids)  # [B, L, C] (validates the ids)
        mask = check_mask(attention_mask, tuple(x.shape[:2]), "attention_mask", like="input_ids")  # [B, L]
        if labels is not None and self.config.num_classes > 1:
            labels = check_class_ids(labels, x.shape[0])
        elif labels is not None:
            labels = _check_targets(labels, x.shape[0])
        logits, maps = _encode_decode(self, x, mask, return_attention)  # [B, K]
        loss = None if labels is None else classification_loss(logits, labels, self.config.num_classes)
        return ClassifierOutput(logits=logits, loss=loss, **maps)


class MultitaskClassifier(PerceiverIO):
    """Multitask-query classifier: T learned queries decoded by one cross-attention, one Linear head per task.

    ``forward(input_ids, attention_mask, labels={task: [B]})`` -> ``logits = {task: [B, K_task]}``; label -100
    (or a task missing from ``labels``) means "not labelled for this task". The loss is the mean of the per-task
    losses over tasks with at least one label.
    """

    def __init__(self, config: MultitaskClassifierConfig) -> None:
        e = config.decoder.num_query_channels
        super().__init__(
            input_adapter=_text_adapter(config),
            encoder=build_encoder(config, config.num_input_channels),
            output_queries=LearnedQueries(len(config.tasks), e),
            decoder=build_decoder(config, dataclasses.replace(config.decoder, num_output_channels=None)),
            output_adapter=MultitaskOutputAdapter(e, config.tasks),
            config=config,
        )

    @property
    def task_names(self) -> list[str]:
        return [name for name, _ in self.config.tasks]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: Mapping[str, torch.Tensor] | None = None,
        return_attention: bool = False,
    ) -> ClassifierOutput:
        """``return_attention=True`` also fills ``encoder_attention [B, h, N, L]`` and ``decoder_attention
        [B, h, T, N]`` (one row per task, in ``task_names`` order); logits and losses unchanged."""
        x = self.input_adapter(input_ids)  # [B, L, C] (validates the ids)
        mask = check_mask(attention_mask, tuple(x.shape[:2]), "attention_mask", like="input_ids")  # [B, L]
        labels = self._check_labels(labels, x.shape[0])
        logits, maps = _encode_decode(self, x, mask, return_attention)  # {task: [B, K_task]}
        task_losses: dict[str, torch.Tensor] = {}
        labelled: list[torch.Tensor] = []
        for name, y in labels.items():
            k = dict(self.config.tasks)[name]
            keep = y != IGNORE_INDEX  # [B]
            if k == 1:  # regression: mean squared error over the labelled examples
                err = (logits[name].squeeze(-1).float() - y.float()).square() * keep
                task_losses[name] = err.sum() / keep.sum().clamp(min=1)
            else:
                task_losses[name] = classification_loss(logits[name], y, k)
            labelled.append(keep.any())
        loss = None
        if task_losses:  # mean over the tasks with at least one label (computed without reading values)
            has = torch.stack(labelled).float()  # [T']
            loss = (torch.stack(list(task_losses.values())) * has).sum() / has.sum().clamp(min=1)
        return ClassifierOutput(logits=logits, loss=loss, task_losses=task_losses, **maps)

    def _check_labels(self, labels: object, batch: int) -> dict[str, torch.Tensor]:
        if labels is None:
            return {}
        if not isinstance(labels, Mapping):
            raise ValueError(
                f"labels must be a dict {{task: tensor}} over tasks {self.task_names}, got {type(labels).__name__}"
            )
        checked = {}
        for name, y in labels.items():
            if name not in self.task_names:
                raise ValueError(f"labels names an unknown task {name!r}; this model has tasks {self.task_names}")
            if dict(self.config.tasks)[name] == 1:
                checked[name] = _check_targets(y, batch, f"labels[{name!r}]")
            else:
                checked[name] = check_class_ids(y, batch, f"labels[{name!r}]")
        return checked
