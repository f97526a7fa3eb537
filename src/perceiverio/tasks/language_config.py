"""Configurations of the byte-level language models (paper §4.1): the shared text settings, the masked LM,
sequence and multitask classifiers, with presets matching the released models. The models are in
:mod:`perceiverio.tasks.language`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..core.config import DecoderConfig, EncoderConfig, PerceiverConfig, check_positive
from ..tokenizer import VOCAB_SIZE

# the released 201M model: 256 × 1280 latents and 8 self-attention heads (EncoderConfig defaults), 8 cross-attention
# heads, 26 layers, qk 256
_LANGUAGE_ENCODER = EncoderConfig(
    num_cross_attention_heads=8, num_self_attends_per_block=26, qk_channels=256, v_channels=1280
)
# the small models of the tests and CPU demos: 256 bytes, 32 × 128 latents, 4 layers
_TINY_TEXT = dict(
    max_seq_len=256,
    num_input_channels=64,
    encoder=EncoderConfig(
        num_latents=32,
        num_latent_channels=128,
        num_cross_attention_heads=4,
        num_self_attention_heads=4,
        num_self_attends_per_block=4,
        qk_channels=64,
        v_channels=128,
    ),
)
_CLASS_QUERY = DecoderConfig(num_query_channels=1280, use_query_residual=True)
_TINY_CLASS_QUERY = DecoderConfig(num_query_channels=128, use_query_residual=True)


@dataclass(frozen=True)
class TextConfig(PerceiverConfig):
    """Fields shared by the byte-level models: the input adapter (byte embedding + learned positions)."""

    encoder: EncoderConfig = _LANGUAGE_ENCODER
    vocab_size: int = VOCAB_SIZE
    max_seq_len: int = 2048
    num_input_channels: int = 768  # C: byte embedding width
    embedding_init_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vocab_size", "max_seq_len", "num_input_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be positive")


@dataclass(frozen=True)
class MaskedLanguageModelConfig(TextConfig):
    """Byte MLM. The decoder's queries are one learned E-dim vector per position (E = C for the tied output)."""

    decoder: DecoderConfig = DecoderConfig(num_query_channels=768, num_heads=8, qk_channels=256, v_channels=768)
    # "random": the paper's initialisation. "local": a locality prior for small models on small compute budgets
    # (see perceiverio.tasks.locality); needs qk_channels >= num_input_channels <= num_latent_channels.
    routing_init: Literal["random", "local"] = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.routing_init == "local":
            c = self.num_input_channels
            widths = {
                "encoder.qk_channels": self.encoder.qk_channels or c,  # defaults: the key/value width
                "decoder.qk_channels": self.decoder.qk_channels or self.encoder.num_latent_channels,
                "encoder.num_latent_channels": self.encoder.num_latent_channels,
            }
            narrow = {k: v for k, v in widths.items() if v < c}
            if narrow:
                raise ValueError(f"routing_init='local' needs these widths >= num_input_channels ({c}): {narrow}")
        if self.decoder.num_query_channels != self.num_input_channels:
            raise ValueError("MLM decoder.num_query_channels must equal num_input_channels (tied output embedding)")
        if self.decoder.num_output_channels is not None:
            raise ValueError(
                "MLM decoder has no final projection (num_output_channels=None): logits come from the tied embedding"
            )

    @classmethod
    def language_perceiver(cls, **overrides) -> MaskedLanguageModelConfig:
        """The released 201M byte MLM (deepmind/language-perceiver): 2048 bytes, 256 × 1280 latents, 26 layers."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> MaskedLanguageModelConfig:
        """A few-hundred-thousand-parameter model for tests and CPU demos."""
        decoder = DecoderConfig(num_query_channels=64, num_heads=4, qk_channels=64, v_channels=64)
        return cls(**{**_TINY_TEXT, "decoder": decoder, **overrides})


@dataclass(frozen=True)
class SequenceClassifierConfig(TextConfig):
    """Byte sequence classifier: one learned D-dim query, query residual, Linear(E -> num_classes).

    ``num_classes == 1`` makes it a regressor (MSE loss), as in transformers.
    """

    num_classes: int = 2
    decoder: DecoderConfig = _CLASS_QUERY

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "num_classes")

    @classmethod
    def language_perceiver(cls, num_classes: int = 2, **overrides) -> SequenceClassifierConfig:
        """The released encoder with the transformers classification head."""
        return cls(num_classes=num_classes, **overrides)

    @classmethod
    def tiny(cls, num_classes: int = 2, **overrides) -> SequenceClassifierConfig:
        return cls(**{**_TINY_TEXT, "decoder": _TINY_CLASS_QUERY, "num_classes": num_classes, **overrides})


@dataclass(frozen=True)
class MultitaskClassifierConfig(TextConfig):
    """One learned query per task, one shared decoder cross-attention, one Linear head per task.

    ``tasks``: ``{name: num_classes}`` (a mapping or a tuple of pairs; order is kept).
    """

    tasks: tuple[tuple[str, int], ...] = (("sst2", 2),)
    decoder: DecoderConfig = _CLASS_QUERY

    def __post_init__(self) -> None:
        super().__post_init__()
        tasks = tuple(self.tasks.items()) if isinstance(self.tasks, Mapping) else tuple(tuple(t) for t in self.tasks)
        object.__setattr__(self, "tasks", tasks)
        names = [n for n, _ in tasks]
        if not tasks or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"tasks must be a non-empty mapping of distinct names to class counts, got {tasks}")
        if any((not isinstance(k, int)) or k <= 0 for _, k in tasks):
            raise ValueError(f"every task needs a positive class count, got {tasks}")

    @classmethod
    def glue(cls, **overrides) -> MultitaskClassifierConfig:
        """The eight GLUE tasks of the paper's multitask-query variant (STS-B is a regression: 1 output)."""
        tasks = (("cola", 2), ("sst2", 2), ("mrpc", 2), ("stsb", 1), ("qqp", 2), ("mnli", 3), ("qnli", 2), ("rte", 2))
        return cls(tasks=tasks, **overrides)

    @classmethod
    def tiny(cls, tasks=(("a", 2), ("b", 3)), **overrides) -> MultitaskClassifierConfig:
        return cls(**{**_TINY_TEXT, "decoder": _TINY_CLASS_QUERY, "tasks": tasks, **overrides})
