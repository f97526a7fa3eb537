"""The generic Perceiver IO: input adapter → encoder → output queries → decoder → output adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .checks import check_features, check_mask
from .config import Activation, DecoderConfig, EncoderConfig, Masking, check_choice
from .decoder import PerceiverDecoder
from .encoder import PerceiverEncoder
from .position import TrainablePositionEncoding


@dataclass(frozen=True)
class PerceiverIOConfig:
    """A Perceiver IO over pre-embedded inputs ``[B, M, C]`` with ``num_output_queries`` learned queries.

    Task models build their own adapters and queries; this config is the plain architecture of the paper's Fig. 1.
    """

    num_input_channels: int  # C
    num_output_queries: int  # O
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(num_query_channels=1280))
    activation: Activation = "gelu_tanh"
    masking: Masking = "official"

    def __post_init__(self) -> None:
        check_choice(self.activation, ("gelu_tanh", "gelu"), "activation")
        check_choice(self.masking, ("official", "transformers"), "masking")
        if self.num_input_channels <= 0 or self.num_output_queries <= 0:
            raise ValueError("num_input_channels and num_output_queries must be positive")


class PerceiverIO(nn.Module):
    """Reads any ``[B, M, C]`` array into N latents and writes one output per query.

    ``input_adapter`` (default: identity on ``[B, M, C]`` features) maps raw inputs to features;
    ``output_queries`` (default: ``num_output_queries`` learned queries) is called as
    ``output_queries(batch_size, index=query_index)``; ``output_adapter`` maps ``[B, O, out]`` to the task output.
    """

    def __init__(self, config: PerceiverIOConfig, input_adapter: nn.Module | None = None,
                 output_queries: nn.Module | None = None, output_adapter: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.input_adapter = input_adapter
        self.encoder = PerceiverEncoder(config.encoder, config.num_input_channels, config.activation, config.masking)
        self.output_queries = output_queries or TrainablePositionEncoding(
            config.num_output_queries, config.decoder.num_query_channels)
        self.decoder = PerceiverDecoder(config.decoder, config.encoder.num_latent_channels, config.activation,
                                        config.masking)
        self.output_adapter = output_adapter

    @classmethod
    def from_haiku(cls, source, config: PerceiverIOConfig, **overrides) -> PerceiverIO:
        """Build from DeepMind's Haiku params of a ``PerceiverEncoder`` + ``BasicDecoder`` (trainable queries).

        ``config`` is required (head counts are not visible in the arrays); ``source`` is read as in
        :meth:`perceiverio.tasks.base.TaskModel.from_haiku`.
        """
        from ..io.haiku import load_from_haiku

        return load_from_haiku(cls, source, config, **overrides)

    def encode(self, inputs: torch.Tensor, input_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Raw inputs -> latents ``[B, N, D]``."""
        x = self.input_adapter(inputs) if self.input_adapter is not None else inputs
        x = check_features(x, self.config.num_input_channels)  # [B, M, C]
        return self.encoder(x, check_mask(input_mask, tuple(x.shape[:2]), "input_mask"))

    def decode(self, latents: torch.Tensor, queries: torch.Tensor, query_mask: torch.Tensor | None = None,
               chunk_size: int | None = None) -> torch.Tensor:
        """Latents ``[B, N, D]`` and queries ``[B, O, E]`` -> outputs (through the output adapter)."""
        query_mask = check_mask(query_mask, tuple(queries.shape[:2]), "query_mask")
        out = self.decoder(queries, latents, query_mask, chunk_size)
        return self.output_adapter(out) if self.output_adapter is not None else out

    def forward(self, inputs: torch.Tensor, input_mask: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None, query_index: torch.Tensor | None = None,
                chunk_size: int | None = None) -> torch.Tensor:
        """``query_index`` (``[K]`` or ``[B, K]``) decodes only those queries; rows equal the full decoding's."""
        z = self.encode(inputs, input_mask)  # [B, N, D]
        q = self.output_queries(z.shape[0], index=query_index)  # [B, O, E]
        return self.decode(z, q, query_mask, chunk_size)
