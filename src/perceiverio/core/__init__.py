"""The Perceiver IO core: attention, blocks, encoder, decoder and position encodings."""

from .attention import MultiHeadAttention
from .blocks import MLP, CrossAttentionBlock, SelfAttentionBlock
from .config import DecoderConfig, EncoderConfig
from .decoder import PerceiverDecoder
from .encoder import PerceiverEncoder
from .perceiver import PerceiverIO, PerceiverIOConfig
from .position import (
    FourierPositionEncoding,
    TrainablePositionEncoding,
    fourier_features,
    linear_positions,
    positions_from_indices,
)

__all__ = [
    "MLP", "CrossAttentionBlock", "DecoderConfig", "EncoderConfig", "FourierPositionEncoding", "MultiHeadAttention",
    "PerceiverDecoder", "PerceiverEncoder", "PerceiverIO", "PerceiverIOConfig", "SelfAttentionBlock",
    "TrainablePositionEncoding", "fourier_features", "linear_positions", "positions_from_indices",
]
