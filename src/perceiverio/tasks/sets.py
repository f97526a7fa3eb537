"""Set models (paper §4.4, StarCraft II): a set of M entity vectors in, one output per entity out.

The entities are both the encoder input and the decoder queries, so the model is permutation-equivariant: no
position encoding is used, and permuting the entities permutes the outputs. Cost is O(M·N) instead of the O(M²)
of the Transformer entity encoder it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.checks import check_features, check_mask
from ..core.config import DecoderConfig, EncoderConfig, PerceiverConfig
from ..core.perceiver import PerceiverIO, build_decoder, build_encoder
from ..core.queries import InputQueries
from .outputs import SetOutput


@dataclass(frozen=True)
class SetModelConfig(PerceiverConfig):
    """Entity set encoder. ``decoder.num_query_channels`` must equal ``num_entity_channels`` (queries are the
    entities); ``decoder.num_output_channels`` adds a final Linear (default: outputs have the entity width)."""

    num_entity_channels: int = 128  # C
    encoder: EncoderConfig = EncoderConfig(
        num_latents=32, num_latent_channels=128, num_self_attention_heads=4, num_self_attends_per_block=3
    )
    decoder: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(num_query_channels=128, use_query_residual=True)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder.num_query_channels != self.num_entity_channels:
            raise ValueError(
                f"decoder.num_query_channels ({self.decoder.num_query_channels}) must equal "
                f"num_entity_channels ({self.num_entity_channels}): the queries are the entities"
            )

    @classmethod
    def starcraft(cls, **overrides) -> SetModelConfig:
        """The paper's StarCraft II entity encoder: up to 512 entities × 128 channels, 32 latents, 3 layers.

        The paper gives no head counts; we use 4 self-attention heads (32 channels each) and single-head cross
        attention, and a query residual so each output refines its entity's embedding.
        """
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> SetModelConfig:
        fields = dict(
            num_entity_channels=16,
            encoder=EncoderConfig(
                num_latents=4, num_latent_channels=32, num_self_attention_heads=2, num_self_attends_per_block=2
            ),
            decoder=DecoderConfig(num_query_channels=16, num_heads=2, use_query_residual=True),
        )
        return cls(**{**fields, **overrides})


class SetModel(PerceiverIO):
    """``forward(entities [B, M, C], mask [B, M])`` -> one embedding per entity (``mask``: True = real entity).

    entities → encoder → the entities again as queries → decoder → one output per entity (padded rows zeroed).
    """

    def __init__(self, config: SetModelConfig) -> None:
        super().__init__(
            input_adapter=None,
            encoder=build_encoder(config, config.num_entity_channels),
            output_queries=InputQueries(),
            decoder=build_decoder(config),
            config=config,
        )

    def forward(
        self,
        entities: torch.Tensor,
        mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> SetOutput:
        """``return_attention=True`` also fills ``encoder_attention [B, h, N, M]`` and ``decoder_attention
        [B, h, M, N]``; embeddings unchanged."""
        x = check_features(entities, self.config.num_entity_channels, "entities")  # [B, M, C]
        mask = check_mask(mask, tuple(x.shape[:2]), "mask", like="entities")
        out = super().forward(
            x.to(self.encoder.latents.dtype),
            mask,
            query_mask=mask,
            chunk_size=chunk_size,
            return_attention=return_attention,
        )
        out, maps = out if return_attention else (out, None)
        if mask is not None:
            out = out.masked_fill(~mask.unsqueeze(-1), 0.0)  # [B, M, out]
        if maps is None:
            return SetOutput(embeddings=out)
        return SetOutput(embeddings=out, encoder_attention=maps.encoder, decoder_attention=maps.decoder)
