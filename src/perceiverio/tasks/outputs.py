"""What the task models return, and the label value that means "not labelled".

``encoder_attention`` ``[B, h, N, M]`` and ``decoder_attention`` ``[B, h, O, N]`` are the cross-attention
probabilities (float32, see :class:`perceiverio.core.AttentionMaps`), set only by ``forward(...,
return_attention=True)``; otherwise None and never computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.checks import check_range

IGNORE_INDEX = -100
"""A label equal to this is ignored by every loss (unmasked MLM positions, unlabelled examples or tasks)."""


def class_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, K]`` over the examples whose class id in ``labels [B]`` is not
    :data:`IGNORE_INDEX`, 0 when none is. Ids must lie in ``[0, K)`` (a value-reading check); nothing else reads
    tensor values."""
    keep = labels != IGNORE_INDEX
    check_range(labels.masked_fill(~keep, 0), 0, logits.shape[-1], f"labels (or {IGNORE_INDEX} to ignore an example)")
    nll = F.cross_entropy(
        logits.float(), labels.long(), ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing
    )
    return nll / keep.sum().clamp(min=1)


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor  # [B, L, V], or [B, K, V] at ``positions``
    loss: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # [B, K] decoded positions when a subset was decoded
    encoder_attention: torch.Tensor | None = None  # [B, h, N, L]
    decoder_attention: torch.Tensor | None = None  # [B, h, L or K, N]


@dataclass
class ClassifierOutput:
    logits: torch.Tensor | dict[str, torch.Tensor]  # [B, K] (per task for the multitask model)
    loss: torch.Tensor | None = None
    task_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    encoder_attention: torch.Tensor | None = None  # [B, h, N, M]
    decoder_attention: torch.Tensor | None = None  # [B, h, 1 (or T tasks), N]


@dataclass
class MultimodalLoss:
    loss: torch.Tensor  # weighted sum
    terms: dict[str, torch.Tensor]  # unweighted per-modality losses


@dataclass
class SetOutput:
    embeddings: torch.Tensor  # [B, M, F]: one output per input element
    encoder_attention: torch.Tensor | None = None  # [B, h, N, M]
    decoder_attention: torch.Tensor | None = None  # [B, h, M, N]


# pytree nodes, so that torch.export / torch.compile see through the outputs to their tensors
for _output in (MaskedLMOutput, ClassifierOutput, MultimodalLoss, SetOutput):
    torch.export.register_dataclass(_output, serialized_type_name=f"perceiverio.{_output.__name__}")
