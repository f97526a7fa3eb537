"""Perceiver IO decoder: every output query cross-attends the latents, independently of the other queries.

y = Linear(CrossAttend(q, z))  with q ∈ R^{O×E}.  Because queries do not interact, decoding a subset or a chunk of
the queries gives exactly the same rows as decoding all of them; ``chunk_size`` bounds memory for huge O.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import CrossAttentionBlock, checkpointed
from .checks import check_chunk_size
from .config import Activation, DecoderConfig, Masking
from .init import init_official_


class PerceiverDecoder(nn.Module):
    """Maps queries ``[B, O, E]`` and latents ``[B, N, D]`` to ``[B, O, out]`` (``out`` = E without projection).

    Set ``gradient_checkpointing = True`` to recompute the cross-attention in backward (per chunk with
    ``chunk_size``) instead of storing its activations (training only): with chunks, training on huge O keeps
    only the queries and outputs, not the ``[B, O, ·]`` hidden states.
    """

    def __init__(
        self,
        config: DecoderConfig,
        num_latent_channels: int,
        activation: Activation = "gelu_tanh",
        masking: Masking = "official",
    ) -> None:
        super().__init__()
        self.config = config
        e = config.num_query_channels
        self.cross_attention = CrossAttentionBlock(
            e,
            num_latent_channels,
            config.num_heads,
            config.qk_channels,
            config.v_channels,
            config.widening_factor,
            config.use_query_residual,
            config.dropout,
            activation,
            masking,
        )
        out = config.num_output_channels
        self.projection = nn.Linear(e, out) if out is not None else None
        self.masking = masking
        self.gradient_checkpointing = False
        init_official_(self)

    @property
    def num_output_channels(self) -> int:
        return self.config.num_output_channels or self.config.num_query_channels

    def forward(
        self,
        queries: torch.Tensor,  # [B, O, E]
        latents: torch.Tensor,  # [B, N, D]
        query_mask: torch.Tensor | None = None,  # [B, O] bool; ignored with masking="transformers"
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:  # [B, O, out] (, [B, h, O, N] float32)
        """Outputs; ``return_attention=True`` also returns the probabilities of each query over the latents (rows
        of masked queries all 0 in official masking). With ``chunk_size`` the maps are those of the chunks, joined
        along O: exact, as queries are independent."""
        if self.masking == "transformers":
            query_mask = None
        decode = checkpointed(self, self._decode_attention if return_attention else self._decode)
        o = queries.shape[1]
        chunk_size = check_chunk_size(chunk_size)
        if chunk_size is None or chunk_size >= o:
            return decode(queries, latents, query_mask)
        chunks = []
        for start in range(0, o, chunk_size):
            sl = slice(start, start + chunk_size)
            chunks.append(decode(queries[:, sl], latents, None if query_mask is None else query_mask[:, sl]))
        if return_attention:
            return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=2)
        return torch.cat(chunks, dim=1)

    def _decode(self, q: torch.Tensor, z: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.cross_attention(q, z, query_mask=query_mask)  # [B, O, E]
        return self.projection(h) if self.projection is not None else h

    def _decode_attention(
        self, q: torch.Tensor, z: torch.Tensor, query_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:  # [B, O, out], [B, h, O, N]
        h, attention = self.cross_attention(q, z, query_mask=query_mask, return_attention=True)
        return (self.projection(h) if self.projection is not None else h), attention
