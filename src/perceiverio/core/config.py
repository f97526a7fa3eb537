"""Typed, frozen configuration of the Perceiver IO core (encoder and decoder).

Names follow the paper: M input elements with C channels, N latents with D channels, O output queries with E
channels. Defaults reproduce DeepMind's official code; task configs compose these and add the adapters.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Literal

Activation = Literal["gelu_tanh", "gelu"]
"""``gelu_tanh``: the official ``jax.nn.gelu`` (tanh approximation). ``gelu``: exact erf GELU (transformers)."""

Masking = Literal["official", "transformers"]
"""How padding masks behave.

``official``: masked logits are excluded; a query row whose keys are all masked (a fully padded example in the
encoder, or a masked query in the decoder) gets a zero weighted sum before the output projection, so its attention
output equals the projection bias. ``transformers``: masked keys get ``finfo.min`` added, fully masked rows attend
uniformly, and decoder query masks are ignored, as Hugging Face's port does."""


@dataclass(frozen=True)
class EncoderConfig:
    """Latent array, input cross-attention and latent self-attention stack.

    ``num_self_attends_per_block`` distinct layers are applied ``num_blocks`` times with shared weights.
    ``qk_channels``/``v_channels`` are passed to the cross-attention and to every self-attention (official
    semantics): the cross-attention's qk defaults to the input channels C, self-attention's to D; v defaults to qk,
    and a given ``v_channels`` must equal D (the self-attention output projection maps v -> v).
    """

    num_latents: int = 256  # N
    num_latent_channels: int = 1280  # D
    num_cross_attention_heads: int = 1
    num_self_attention_heads: int = 8
    num_self_attends_per_block: int = 6
    num_blocks: int = 1
    qk_channels: int | None = None
    v_channels: int | None = None
    cross_attention_widening_factor: int = 1
    self_attention_widening_factor: int = 1
    use_query_residual: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive(
            self,
            "num_latents",
            "num_latent_channels",
            "num_cross_attention_heads",
            "num_self_attention_heads",
            "num_self_attends_per_block",
            "num_blocks",
            "cross_attention_widening_factor",
            "self_attention_widening_factor",
        )
        v = self.v_channels if self.v_channels is not None else self.qk_channels
        if v is not None and v != self.num_latent_channels:
            raise ValueError(
                f"EncoderConfig: the value channels ({v}; v_channels defaults to qk_channels) must equal "
                f"num_latent_channels ({self.num_latent_channels}): the latent residual adds the attention output "
                "to the latents. Set v_channels explicitly."
            )


@dataclass(frozen=True)
class DecoderConfig:
    """Output queries cross-attend the latents; an optional Linear maps E to the output channels.

    ``qk_channels`` defaults to the latent channels D (official ``shape_for_attn='kv'``), ``v_channels`` to qk;
    the attention output is always projected back to the query width E. The decoder MLP uses ``widening_factor``
    (1 in every released model).
    """

    num_query_channels: int  # E
    num_output_channels: int | None = None  # None: no final projection
    num_heads: int = 1
    qk_channels: int | None = None
    v_channels: int | None = None
    widening_factor: int = 1
    use_query_residual: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive(self, "num_query_channels", "num_heads", "widening_factor")
        if self.num_output_channels is not None and self.num_output_channels <= 0:
            raise ValueError(f"DecoderConfig.num_output_channels must be positive, got {self.num_output_channels}")


@dataclass(frozen=True)
class PerceiverConfig:
    """What every Perceiver IO model has: an encoder, a decoder, the MLP activation and the masking semantics.

    Task configs derive from this and add their adapters' fields; ``__post_init__`` validates every ``Literal``
    field (here and in subclasses) once, against the values its annotation lists.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(num_query_channels=1280))
    activation: Activation = "gelu_tanh"
    masking: Masking = "official"

    def __post_init__(self) -> None:
        check_literals(self)
        for name, expected in (("encoder", EncoderConfig), ("decoder", DecoderConfig)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"{type(self).__name__}.{name} must be a {expected.__name__}, got {value!r}")


def check_literals(config: object) -> None:
    """ValueError naming the field for every dataclass field annotated ``Literal[...]`` whose value is not one of
    the listed values (the choices come from the annotation: ``typing.get_args``)."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is Literal:
            check_choice(getattr(config, f.name), typing.get_args(hint), f"{type(config).__name__}.{f.name}")


def check_positive(config: object, *names: str) -> None:
    """ValueError unless each named field of ``config`` is a positive int (the message names class and field)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value
