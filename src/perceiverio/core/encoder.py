"""Perceiver IO encoder: a learned latent array reads the input once, then a latent Transformer refines it.

z0 ∈ R^{N×D} (learned) ; z = CrossAttend(z0, x) ; repeat num_blocks times: z = SelfAttend_1..L(z)  (shared weights)
Cost is O(M·N) for the read and O(L·N²) for the stack, independent of M.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import CrossAttentionBlock, SelfAttentionBlock, checkpointed
from .config import Activation, EncoderConfig, Masking
from .init import init_official_, trunc_normal_


class PerceiverEncoder(nn.Module):
    """Maps inputs ``x: [B, M, C]`` (with an optional key mask ``[B, M]``, True = real) to latents ``[B, N, D]``.

    Set ``gradient_checkpointing = True`` to recompute the cross-attention and each latent layer in backward
    instead of storing their activations (training only): what stays between forward and backward is the input,
    the input of each layer and the latents, no ``[B, M, ·]`` projection of the input.
    """

    def __init__(
        self,
        config: EncoderConfig,
        num_input_channels: int,
        activation: Activation = "gelu_tanh",
        masking: Masking = "official",
    ) -> None:
        super().__init__()
        self.config = config
        self.num_input_channels = num_input_channels
        d = config.num_latent_channels
        self.latents = nn.Parameter(torch.empty(config.num_latents, d))  # [N, D]
        shared = dict(
            num_qk_channels=config.qk_channels,
            num_v_channels=config.v_channels,
            dropout=config.dropout,
            activation=activation,
            masking=masking,
        )  # the official code gives both attentions these
        self.cross_attention = CrossAttentionBlock(
            d,
            num_input_channels,
            config.num_cross_attention_heads,
            widening_factor=config.cross_attention_widening_factor,
            use_query_residual=config.use_query_residual,
            **shared,
        )
        self.self_attention = nn.ModuleList(  # L distinct layers, applied num_blocks times
            SelfAttentionBlock(
                d, config.num_self_attention_heads, widening_factor=config.self_attention_widening_factor, **shared
            )
            for _ in range(config.num_self_attends_per_block)
        )
        self.gradient_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init_official_(self)
        trunc_normal_(self.latents, 0.02)

    def forward(
        self, x: torch.Tensor, input_mask: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:  # [B, N, D] (, [B, h, N, M] float32)
        """Latents; ``return_attention=True`` also returns the cross-attention probabilities of the latents over
        the inputs (each row sums to 1 over M; see :func:`perceiverio.core.attention.attention_probabilities`)."""
        z = self.latents.expand(x.shape[0], -1, -1)  # [B, N, D]
        read = checkpointed(self, self.cross_attention)
        attention = None
        if return_attention:
            z, attention = read(z, x, key_mask=input_mask, return_attention=True)  # [B, N, D], [B, h, N, M]
        else:
            z = read(z, x, key_mask=input_mask)  # [B, N, D]
        for _ in range(self.config.num_blocks):
            for layer in self.self_attention:  # same weights on every pass
                z = checkpointed(self, layer)(z)
        return (z, attention) if return_attention else z
