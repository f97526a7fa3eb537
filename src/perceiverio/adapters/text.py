"""Bytes/text adapters: byte embedding + learned positions in, tied-embedding logits out."""

from __future__ import annotations

import torch
from torch import nn

from ..core.checks import check_token_ids
from ..core.init import trunc_normal_
from ..core.position import TrainablePositionEncoding


class TextInputAdapter(nn.Module):
    """Token ids ``[B, L]`` -> ``Embed(ids) + P[:L]``: ``[B, L, C]`` (positions added, as in the released model).

    The ids are validated here (integer ``[B, L]``, ``L <= max_seq_len``, ids in ``[0, vocab_size)``).

    ``embedding_init_scale`` is the std of the truncated-normal embedding init (Haiku ``hk.Embed``: 1.0).
    """

    def __init__(self, vocab_size: int, max_seq_len: int, num_channels: int, embedding_init_scale: float = 1.0) -> None:
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
        ids = check_token_ids(input_ids, self.token_embedding.num_embeddings, self.max_seq_len)
        positions = self.position_embedding.embeddings[: ids.shape[1]]  # [L, C]
        return self.token_embedding(ids) + positions


class TiedTokenOutputAdapter(nn.Module):
    """Decoder output ``[B, O, C]`` -> logits ``h · Eᵀ + b``: ``[B, O, V]`` with the input embedding E.

    The embedding belongs to the input adapter; it is referenced here, not registered a second time, so the state
    dict holds it once (as ``input_adapter.token_embedding.weight``) and only the bias is this module's own.
    """

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.__dict__["embedding"] = embedding  # tied: not a submodule
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, O, C] -> [B, O, V]
        return torch.matmul(h, self.embedding.weight.T) + self.bias
