"""Set models (paper §4.4, StarCraft II): a set of M entity vectors in, one output per entity out.

The entities are both the encoder input and the decoder queries, so the model is permutation-equivariant: no
position encoding is used, and permuting the entities permutes the outputs. Cost is O(M·N) instead of the O(M²)
of the Transformer entity encoder it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.checks import check_features, check_mask
from ..core.config import Activation, DecoderConfig, EncoderConfig, Masking, check_choice
from ..core.decoder import PerceiverDecoder
from ..core.encoder import PerceiverEncoder
from .base import TaskModel


@dataclass(frozen=True)
class SetModelConfig:
    """Entity set encoder. ``decoder.num_query_channels`` must equal ``num_entity_channels`` (queries are the
    entities); ``decoder.num_output_channels`` adds a final Linear (default: outputs have the entity width)."""

    num_entity_channels: int = 128  # C
    encoder: EncoderConfig = EncoderConfig(num_latents=32, num_latent_channels=128, num_cross_attention_heads=1,
                                           num_self_attention_heads=4, num_self_attends_per_block=3)
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(num_query_channels=128, num_heads=1, use_query_residual=True))
    activation: Activation = "gelu_tanh"
    masking: Masking = "official"

    def __post_init__(self) -> None:
        check_choice(self.activation, ("gelu_tanh", "gelu"), "activation")
        check_choice(self.masking, ("official", "transformers"), "masking")
        if self.decoder.num_query_channels != self.num_entity_channels:
            raise ValueError(f"decoder.num_query_channels ({self.decoder.num_query_channels}) must equal "
                             f"num_entity_channels ({self.num_entity_channels}): the queries are the entities")

    @classmethod
    def starcraft(cls, **overrides) -> SetModelConfig:
        """The paper's StarCraft II entity encoder: up to 512 entities × 128 channels, 32 latents, 3 layers.

        The paper gives no head counts; we use 4 self-attention heads (32 channels each) and single-head cross
        attention, and a query residual so each output refines its entity's embedding.
        """
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> SetModelConfig:
        fields = dict(num_entity_channels=16,
                      encoder=EncoderConfig(num_latents=4, num_latent_channels=32, num_self_attention_heads=2,
                                            num_self_attends_per_block=2),
                      decoder=DecoderConfig(num_query_channels=16, num_heads=2, use_query_residual=True))
        return cls(**{**fields, **overrides})


@dataclass
class SetOutput:
    embeddings: torch.Tensor  # [B, M, out]; rows of padded entities are 0


class SetModel(TaskModel):
    """``forward(entities [B, M, C], mask [B, M])`` -> one embedding per entity (``mask``: True = real entity)."""

    def __init__(self, config: SetModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = PerceiverEncoder(config.encoder, config.num_entity_channels, config.activation, config.masking)
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels, config.activation,
                                        config.masking)

    def forward(self, entities: torch.Tensor, mask: torch.Tensor | None = None,
                chunk_size: int | None = None) -> SetOutput:
        x = check_features(entities, self.config.num_entity_channels, "entities")  # [B, M, C]
        mask = check_mask(mask, tuple(x.shape[:2]), "mask")
        z = self.encoder(x, mask)  # [B, N, D]
        out = self.decoder(x, z, mask, chunk_size)  # [B, M, out]
        if mask is not None:
            out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return SetOutput(embeddings=out)
