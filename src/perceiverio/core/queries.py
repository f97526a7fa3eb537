"""Output queries (paper §2.2): what the decoder asks the latents, one query per output element.

Every query module is called as ``output_queries(x, index)`` with the adapted inputs ``x [B, M, C]`` (for the batch
size, device and dtype, or as the queries themselves) and an optional selection ``index`` (``[K]`` or ``[B, K]``)
of the outputs to decode. Since the decoder treats queries independently, decoding a subset gives exactly the rows
of the full decoding.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_indices, check_range
from .position import TrainablePositionEncoding


class LearnedQueries(TrainablePositionEncoding):
    """``O`` learned queries ``[O, E]`` (std 0.02), the same for every example (official trainable
    ``output_position_encodings``): language positions, one class query, one query per task."""

    def __init__(self, num_queries: int, num_channels: int) -> None:
        super().__init__(num_queries, num_channels)

    @property
    def num_points(self) -> int:
        return self.num_positions

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:  # [B, O or K, E]
        if index is None:
            return self.embeddings.expand(x.shape[0], -1, -1)
        index = check_indices(index, "query_index")  # as int64: a uint8 tensor would index as a mask
        check_range(index, 0, self.num_positions, "query_index")
        rows = self.embeddings[index]  # [K, E] or [B, K, E]
        return rows.expand(x.shape[0], -1, -1) if rows.dim() == 2 else rows


class InputQueries(nn.Module):
    """The adapted inputs are the queries (one output per input element: the optical-flow decoder)."""

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:  # [B, M or K, C]
        if index is None:
            return x
        index = check_indices(index, "query_index")
        check_range(index, 0, x.shape[1], "query_index")
        if index.dim() == 1:
            return x[:, index]
        return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))
