"""The generic Perceiver IO (paper Fig. 2): input adapter → encoder → output queries → decoder → output adapter.

    x = input_adapter(inputs)        # [B, M, C]   bytes, pixels, patches, ... as an array of M elements
    z = encoder(x, input_mask)       # [B, N, D]   cross-attend the latents to x, then the latent blocks
    q = output_queries(x, index)     # [B, O, E]   one query per output element (learned, or built from x)
    y = decoder(q, z)                # [B, O, F]   every query cross-attends the latents independently
    out = output_adapter(y)          #             logits, flow, pixels, ...

Every task model of this library *is* a :class:`PerceiverIO` built from its own adapters and queries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .attention import check_flag
from .checks import check_features, check_mask
from .config import DecoderConfig, PerceiverConfig, check_positive
from .decoder import PerceiverDecoder
from .encoder import PerceiverEncoder
from .latents import check_num_latents, resize_latent_array
from .queries import LearnedQueries


@dataclass(frozen=True, kw_only=True)
class PerceiverIOConfig(PerceiverConfig):
    """The plain architecture of the paper's Fig. 1 over pre-embedded inputs ``[B, M, C]`` with
    ``num_output_queries`` learned queries (build it with :meth:`PerceiverIO.from_config`)."""

    num_input_channels: int  # C
    num_output_queries: int  # O

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "num_input_channels", "num_output_queries")


@dataclass
class AttentionMaps:
    """The two cross-attentions of one forward pass, as probabilities in float32 (heads not averaged).

    ``encoder``: the latents over the inputs ``[B, h_enc, N, M]`` (each row sums to 1 over M; masked inputs 0).
    ``decoder``: the output queries over the latents ``[B, h_dec, O, N]`` (each row sums to 1 over N).
    Rows that official masking zeroes (an example without any real input, a masked query) are all 0.
    """

    encoder: torch.Tensor  # [B, h, N, M]
    decoder: torch.Tensor  # [B, h, O, N]


torch.export.register_dataclass(AttentionMaps, serialized_type_name="perceiverio.AttentionMaps")


def build_encoder(config: PerceiverConfig, num_input_channels: int) -> PerceiverEncoder:
    """The encoder of ``config`` reading ``num_input_channels``-wide inputs (C)."""
    return PerceiverEncoder(config.encoder, num_input_channels, config.activation, config.masking)


def build_decoder(config: PerceiverConfig, decoder: DecoderConfig | None = None) -> PerceiverDecoder:
    """The decoder of ``config`` (or of ``decoder``, a variant of ``config.decoder``) reading the latents."""
    return PerceiverDecoder(
        decoder or config.decoder, config.encoder.num_latent_channels, config.activation, config.masking
    )


class PerceiverIO(nn.Module):
    """Reads any array into N latents and writes one output per query (see the module docstring).

    Args:
        input_adapter: raw inputs -> ``[B, M, C]`` (None: the inputs already are ``[B, M, C]`` features).
        encoder: the latent array, its input cross-attention and the latent self-attention blocks.
        output_queries: called as ``output_queries(x, index)`` -> ``[B, O, E]`` (see :mod:`.queries`).
        decoder: the query cross-attention (and the optional final Linear).
        output_adapter: ``[B, O, F]`` -> the task's output (None: returned as is).
        config: the model's frozen config (saved with the weights).
    """

    def __init__(
        self,
        input_adapter: nn.Module | None,
        encoder: PerceiverEncoder,
        output_queries: nn.Module,
        decoder: PerceiverDecoder,
        output_adapter: nn.Module | None = None,
        config: object = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.input_adapter = input_adapter
        self.encoder = encoder
        self.output_queries = output_queries
        self.decoder = decoder
        self.output_adapter = output_adapter

    @classmethod
    def from_config(cls, config: object) -> PerceiverIO:
        """The model of ``config``: for a :class:`PerceiverIOConfig`, the plain Fig. 1 model (identity input
        adapter, learned queries, no output adapter); for a task model class, ``cls(config)``."""
        if cls is not PerceiverIO:
            return cls(config)
        if not isinstance(config, PerceiverIOConfig):
            raise ValueError(f"PerceiverIO.from_config needs a PerceiverIOConfig, got {type(config).__name__}")
        return cls(
            input_adapter=None,
            encoder=build_encoder(config, config.num_input_channels),
            output_queries=LearnedQueries(config.num_output_queries, config.decoder.num_query_channels),
            decoder=build_decoder(config),
            config=config,
        )

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def resize_latents(self, n: int) -> PerceiverIO:
        """Give the encoder ``n`` latents (the paper's N), initialised from the trained ones (interpolated along N
        when growing, neighbours averaged when shrinking: :mod:`perceiverio.core.latents`), then fine-tune. Every
        other weight is kept bitwise, the outputs keep their shapes (the queries do not depend on N), and the
        config (``config.encoder.num_latents``) is updated so that ``save_pretrained``/``from_pretrained``
        round-trip. In place; returns the model. ``n`` must be a positive int (ValueError)."""
        n = check_num_latents(n, "resize_latents(n)")
        old = self.encoder.latents  # [N, D]
        self.encoder.latents = nn.Parameter(resize_latent_array(old, n), requires_grad=old.requires_grad)  # [n, D]
        self.encoder.config = dataclasses.replace(self.encoder.config, num_latents=n)
        config = self.config
        if dataclasses.is_dataclass(config) and isinstance(getattr(config, "encoder", None), type(self.encoder.config)):
            self.config = dataclasses.replace(config, encoder=self.encoder.config)
        return self

    def adapt(self, inputs: object) -> torch.Tensor:
        """Raw inputs -> the input array ``[B, M, C]``."""
        x = self.input_adapter(inputs) if self.input_adapter is not None else inputs
        return check_features(x, self.encoder.num_input_channels).to(self.encoder.latents.dtype)  # any float dtype

    def encode(self, inputs: object, input_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Raw inputs -> latents ``[B, N, D]``."""
        x = self.adapt(inputs)  # [B, M, C]
        return self.encoder(x, check_mask(input_mask, tuple(x.shape[:2]), "input_mask"))

    def decode(
        self,
        latents: torch.Tensor,
        queries: torch.Tensor,
        query_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> object:
        """Latents ``[B, N, D]`` and queries ``[B, O, E]`` -> the output adapter's output; with
        ``return_attention=True``, ``(output, decoder attention [B, h, O, N])``."""
        if check_flag(return_attention):
            y, attention = self.decoder(queries, latents, query_mask, chunk_size, return_attention=True)
            return (self.output_adapter(y) if self.output_adapter is not None else y), attention
        y = self.decoder(queries, latents, query_mask, chunk_size)  # [B, O, F]
        return self.output_adapter(y) if self.output_adapter is not None else y

    def forward(
        self,
        inputs: object,
        input_mask: torch.Tensor | None = None,
        query_index: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        return_attention: bool = False,
    ) -> object:
        """``query_index`` (``[K]`` or ``[B, K]``) decodes only those queries: rows equal the full decoding's.
        ``chunk_size`` decodes that many queries at a time (same result, bounded memory).
        ``return_attention=True`` returns ``(output, AttentionMaps)``: the output is the same, the maps are
        computed only then (they hold ``B·h·N·M`` and ``B·h·O·N`` floats)."""
        return_attention = check_flag(return_attention)
        x = self.adapt(inputs)  # [B, M, C]
        mask = check_mask(input_mask, tuple(x.shape[:2]), "input_mask")
        z = self.encoder(x, mask, return_attention)  # [B, N, D] (, [B, h, N, M])
        if return_attention:
            z, encoder_attention = z
        q = self.output_queries(x, query_index)  # [B, O, E]
        if query_mask is not None:
            query_mask = check_mask(query_mask, tuple(q.shape[:2]), "query_mask")
        if not return_attention:
            return self.decode(z, q, query_mask, chunk_size)
        out, decoder_attention = self.decode(z, q, query_mask, chunk_size, return_attention=True)
        return out, AttentionMaps(encoder=encoder_attention, decoder=decoder_attention)
