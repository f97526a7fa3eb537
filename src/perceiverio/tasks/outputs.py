"""What the task models return, and the label value that means "not labelled"."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IGNORE_INDEX = -100
"""A label equal to this is ignored by every loss (unmasked MLM positions, unlabelled examples or tasks)."""


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


@dataclass
class MultimodalLoss:
    loss: torch.Tensor  # weighted sum
    terms: dict[str, torch.Tensor]  # unweighted per-modality losses


@dataclass
class SetOutput:
    embeddings: torch.Tensor  # [B, M, F]: one output per input element


# pytree nodes, so that torch.export / torch.compile see through the outputs to their tensors
for _output in (MaskedLMOutput, ClassifierOutput, MultimodalLoss, SetOutput):
    torch.export.register_dataclass(_output, serialized_type_name=f"perceiverio.{_output.__name__}")
