"""The Perceiver IO core: the generic PerceiverIO, attention, blocks, encoder, decoder, queries and positions."""

from .attention import MultiHeadAttention
from .blocks import MLP, CrossAttentionBlock, SelfAttentionBlock
from .checks import set_value_checks
from .config import DecoderConfig, EncoderConfig, PerceiverConfig
from .decoder import PerceiverDecoder
from .encoder import PerceiverEncoder
from .perceiver import AttentionMaps, PerceiverIO, PerceiverIOConfig, build_decoder, build_encoder
from .position import (
    FourierPositionEncoding,
    TrainablePositionEncoding,
    fourier_features,
    linear_positions,
    positions_from_indices,
)
from .queries import InputQueries, LearnedQueries

__all__ = [
    "MLP",
    "AttentionMaps",
    "CrossAttentionBlock",
    "DecoderConfig",
    "EncoderConfig",
    "FourierPositionEncoding",
    "InputQueries",
    "LearnedQueries",
    "MultiHeadAttention",
    "PerceiverConfig",
    "PerceiverDecoder",
    "PerceiverEncoder",
    "PerceiverIO",
    "PerceiverIOConfig",
    "SelfAttentionBlock",
    "TrainablePositionEncoding",
    "build_decoder",
    "build_encoder",
    "fourier_features",
    "linear_positions",
    "positions_from_indices",
    "set_value_checks",
]
