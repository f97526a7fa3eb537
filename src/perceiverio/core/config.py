"""Typed, frozen configuration of the Perceiver IO core (encoder and decoder).

Names follow the paper: M input elements with C channels, N latents with D channels, O output queries with E
channels. Defaults reproduce DeepMind's official code; task configs compose these and add the adapters.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Literal

Activation = Literal["gelu_tanh", "gelu", "sq_relu"]  # sq_relu: relu(x)², the Perceiver AR default
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
        check_types(self)
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
        for name in ("num_self_attends_per_block", "num_blocks"):
            if getattr(self, name) > MAX_DEPTH:
                raise ValueError(
                    f"EncoderConfig.{name} must be at most {MAX_DEPTH} (layers are built or applied one by one), "
                    f"got {getattr(self, name)}"
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
        check_types(self)
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
        check_types(self, scalars_only=True)  # task configs normalise their tuple and mapping fields themselves
        for name, expected in (("encoder", EncoderConfig), ("decoder", DecoderConfig)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"{type(self).__name__}.{name} must be a {expected.__name__}, got {value!r}")


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` has the type ``hint`` names (ints for floats too; bools are not ints); hints this does not
    understand match anything (the config's own checks cover them)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
    if isinstance(hint, type) and is_dataclass(hint):
        return isinstance(value, hint)
    return True


_SCALARS = (int, float, bool, str, type(None))


def _scalar(hint: object) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return all(_scalar(a) for a in typing.get_args(hint))
    return hint in _SCALARS


def check_types(config: object, scalars_only: bool = False) -> None:
    """ValueError naming the field for every dataclass field whose value does not have its annotated type (an
    int field given ``True`` or ``"8"``, a float field given NaN, a tuple field given a string). ``scalars_only``:
    only int/float/bool/str fields (and their optional forms), for configs that normalise their other fields."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name)
        if hint is None or typing.get_origin(hint) is Literal or (scalars_only and not _scalar(hint)):
            continue
        if not _matches(value, hint):
            shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ValueError(f"{type(config).__name__}.{f.name} must be {shown}, got {value!r}")


def check_literals(config: object) -> None:
    """ValueError naming the field for every dataclass field annotated ``Literal[...]`` whose value is not one of
    the listed values (the choices come from the annotation: ``typing.get_args``)."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is Literal:
            check_choice(getattr(config, f.name), typing.get_args(hint), f"{type(config).__name__}.{f.name}")


MAX_SIZE = 2**31 - 1  # a tensor dimension beyond this overflows the storage size of any tensor built from it
MAX_DEPTH = 1024  # latent layers or block repeats (the released models use at most 26 and 8)


def check_positive(config: object, *names: str) -> None:
    """ValueError unless each named field of ``config`` is a positive int (the message names class and field)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIZE:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive int (at most 2^31 - 1), got {value!r}")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value
