"""Bytes/text adapters: byte embedding + learned positions in, tied-embedding logits out."""

from __future__ import annotations

import torch
from torch import nn

from ..core.init import trunc_normal_
from ..core.position import TrainablePositionEncoding


class TextInputAdapter(nn.Module):
    """Token ids ``[B, L]`` -> ``Embed(ids) + P[:L]``: ``[B, L, C]`` (positions added, as in the released model).

    ``embedding_init_scale`` is the std of the truncated-normal embedding init (Haiku ``hk.Embed``: 1.0).
    """

    def __init__(self, vocab_size: int, max_seq_len: int, num_channels: int,
                 embedding_init_scale: float = 1.0) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, num_channels)
        self.position_embedding = TrainablePositionEncoding(max_seq_len, num_channels)
        with torch.no_grad():
            trunc_normal_(self.token_embedding.weight, embedding_init_scale)

    @property
    def num_input_channels(self) -> int:
        return self.token_embedding.embedding_dim

    @property
    def max_seq_len(self) -> int:
        return self.position_embedding.num_positions

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, L, C]
        positions = self.position_embedding.embeddings[: input_ids.shape[1]]  # [L, C]
        return self.token_embedding(input_ids) + positions


class TiedTokenOutputAdapter(nn.Module):
    """Decoder output ``[B, O, C]`` -> logits ``h · Eᵀ + b``: ``[B, O, V]`` with the input embedding E."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return torch.matmul(h, embedding.T) + self.bias
