"""Output adapters of classifiers: the decoded class query as logits, one head per task for multitask queries."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ClassificationOutputAdapter(nn.Module):
    """Decoder output ``[B, 1, K]`` (one class query, already projected to K classes) -> logits ``[B, K]``
    (official ``ClassificationDecoder``'s ``[:, 0]``)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, 0]


class MultitaskOutputAdapter(nn.ModuleDict):
    """Decoder output ``[B, T, E]`` (one query per task) -> ``{task: logits [B, K_task]}``, a Linear per task."""

    def __init__(self, num_query_channels: int, tasks: Sequence[tuple[str, int]]) -> None:
        super().__init__({name: nn.Linear(num_query_channels, k) for name, k in tasks})

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(h[:, t]) for t, (name, head) in enumerate(self.items())}
