"""Perceiver AR (Hawthorne et al., ICML 2022): a causal byte language model on the Perceiver core.

Shapes in the paper's letters: B examples, M inputs (the prefix window, at most ``max_context``), N latents (the last
N positions of the window), C input width, D latent width, V vocabulary.

    e = Embed(ids)                                   # [B, M, C]
    z = Linear(e[:, M-N:])                           # [B, N, D]: latent i starts from the token at M - N + i
    z = CrossAttn(z, e, right-aligned causal mask)   # latent i reads inputs 0 .. M - N + i
    z = CausalSelfAttn(z) × L                        # latent i reads latents 0 .. i
    logits = Linear(LN(z))                           # [B, N, V]: latent i predicts the token after its position

Positions are rotary, on the first ``rotary_fraction`` of every head's q/k channels, in the cross-attention and in
every self-attention, as in the official code. Generation with a key/value cache is in
:mod:`perceiverio.tasks.sampling`; the details and what follows the official code are in docs/generation.md.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.blocks import LAYER_NORM_EPS
from ..core.causal import right_aligned_causal_mask
from ..core.causal_blocks import CausalCrossAttentionBlock, CausalSelfAttentionBlock, KeyValueCache, KeyValues
from ..core.checks import check_mask, check_range, check_token_ids
from ..core.config import Activation, check_choice, check_positive
from ..tokenizer import VOCAB_SIZE
from . import sampling
from .outputs import IGNORE_INDEX


@dataclass(frozen=True)
class CausalLanguageModelConfig:
    """Perceiver AR sizes. Defaults: the official repository's base experiment config (``experiment.py``
    ``get_config``: context 1,024, 1,024 latents, 1,024 channels, 16 heads, 12 layers, widening 4, squared ReLU,
    dropout 0.1, rotary on half of each head's channels with ``max_wavelength`` = the context), over bytes."""

    vocab_size: int = VOCAB_SIZE
    max_context: int = 1024  # M at most: longer prefixes keep their most recent max_context tokens
    num_latents: int = 1024  # N: the last N positions are latents (and predict their next token)
    num_input_channels: int = 1024  # C
    num_latent_channels: int = 1024  # D
    num_cross_attention_heads: int = 16
    num_self_attention_heads: int = 16
    num_self_attention_layers: int = 12
    cross_attention_widening_factor: int = 4
    self_attention_widening_factor: int = 4
    activation: Activation = "sq_relu"
    dropout: float = 0.1
    cross_attend_dropout: float = 0.0  # training only: each prefix position hidden from the latents with this prob
    rotary_fraction: float = 0.5  # of each head's q/k channels (official fraction_to_rotate)
    max_wavelength: float | None = None  # None: max_context (the official default)
    tied_output: bool = False  # logits through the input embedding (needs D == C), else a Linear(D -> V)
    zero_init_output: bool = True  # official final_layer_init_zeros: a fresh model predicts uniform bytes

    def __post_init__(self) -> None:
        check_positive(
            self,
            "vocab_size",
            "max_context",
            "num_latents",
            "num_input_channels",
            "num_latent_channels",
            "num_cross_attention_heads",
            "num_self_attention_heads",
            "cross_attention_widening_factor",
            "self_attention_widening_factor",
        )
        if self.num_self_attention_layers < 0:
            raise ValueError(f"num_self_attention_layers must be >= 0, got {self.num_self_attention_layers}")
        if self.num_latents > self.max_context:
            raise ValueError(f"num_latents ({self.num_latents}) must be <= max_context ({self.max_context})")
        check_choice(self.activation, typing.get_args(Activation), "activation")
        for name in ("dropout", "cross_attend_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.rotary_fraction <= 1.0:
            raise ValueError(f"rotary_fraction must lie in [0, 1], got {self.rotary_fraction}")
        if self.max_wavelength is not None and self.max_wavelength < self.max_context:
            raise ValueError(f"max_wavelength ({self.max_wavelength}) must be >= max_context ({self.max_context})")
        if self.num_input_channels % self.num_cross_attention_heads:
            raise ValueError("num_input_channels must be divisible by num_cross_attention_heads")
        if self.num_latent_channels % self.num_self_attention_heads:
            raise ValueError("num_latent_channels must be divisible by num_self_attention_heads")
        if self.tied_output and self.num_input_channels != self.num_latent_channels:
            raise ValueError("tied_output needs num_input_channels == num_latent_channels")

    @property
    def wavelength(self) -> float:
        return float(self.max_wavelength if self.max_wavelength is not None else self.max_context)

    @classmethod
    def tiny(cls, **overrides) -> CausalLanguageModelConfig:
        """A ~200k-parameter model for tests and CPU demos: context 64, 16 latents, 64 channels, 2 layers."""
        sizes = dict(
            max_context=64,
            num_latents=16,
            num_input_channels=64,
            num_latent_channels=64,
            num_cross_attention_heads=4,
            num_self_attention_heads=4,
            num_self_attention_layers=2,
            dropout=0.0,
        )
        return cls(**{**sizes, **overrides})

    @classmethod
    def official_base(cls, **overrides) -> CausalLanguageModelConfig:
        """google-research/perceiver-ar ``experiment.py`` ``get_config`` (the defaults of this class)."""
        return cls(**overrides)


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # [B, N, V]: next-token logits of the last N positions of the window
    loss: torch.Tensor | None = None


torch.export.register_dataclass(CausalLMOutput, serialized_type_name="perceiverio.CausalLMOutput")


class CausalLanguageModel(nn.Module):
    """Perceiver AR over bytes (see the module docstring). ``forward`` scores a prefix; ``generate`` samples.
    ``save_pretrained(folder)`` / ``CausalLanguageModel.from_pretrained(folder)`` (installed by
    :mod:`perceiverio.weights`) write and read our checkpoint format."""

    @classmethod
    def from_config(cls, config: CausalLanguageModelConfig) -> CausalLanguageModel:
        """``cls(config)`` (the constructor the checkpoint loader calls)."""
        return cls(config)

    def __init__(self, config: CausalLanguageModelConfig) -> None:
        super().__init__()
        if not isinstance(config, CausalLanguageModelConfig):
            raise TypeError(f"config must be a CausalLanguageModelConfig, got {type(config).__name__}")
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.num_input_channels)
        self.to_latents = nn.Linear(c.num_input_channels, c.num_latent_channels)
        rotary = (c.rotary_fraction, c.wavelength)
        self.cross_attention = CausalCrossAttentionBlock(
            c.num_latent_channels,
            c.num_input_channels,
            c.num_cross_attention_heads,
            c.cross_attention_widening_factor,
            c.dropout,
            c.activation,
            *rotary,
        )
        self.self_attention = nn.ModuleList(
            CausalSelfAttentionBlock(
                c.num_latent_channels,
                c.num_self_attention_heads,
                c.self_attention_widening_factor,
                c.dropout,
                c.activation,
                *rotary,
            )
            for _ in range(c.num_self_attention_layers)
        )
        self.norm = nn.LayerNorm(c.num_latent_channels, eps=LAYER_NORM_EPS)
        self.head = None if c.tied_output else nn.Linear(c.num_latent_channels, c.vocab_size)
        self.head_bias = nn.Parameter(torch.zeros(c.vocab_size)) if c.tied_output else None
        if self.head is not None and c.zero_init_output:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, L]
        attention_mask: torch.Tensor | None = None,  # [B, L], 1 = token, 0 = (left) padding
        labels: torch.Tensor | None = None,  # [B, L], usually input_ids; -100 = ignored
    ) -> CausalLMOutput:
        """Logits ``[B, N', V]`` for the last ``N' = min(N, L')`` positions, ``L' = min(L, max_context)`` (a longer
        prefix keeps its last max_context tokens). Logit row i predicts the token after window position
        ``L' - N' + i``; with ``labels`` aligned to ``input_ids`` (``model(ids, labels=ids)``) the loss is the mean
        cross-entropy against ``labels`` shifted by one, over the positions whose next label is known and not -100
        (padding, where ``attention_mask`` is 0, is ignored too). Pad on the left: padded positions are hidden
        from every real position."""
        ids = check_token_ids(input_ids, self.config.vocab_size, None)  # any length: see forward
        mask = check_mask(attention_mask, tuple(ids.shape), "attention_mask", like="input_ids")
        if labels is not None:
            labels = check_labels(labels, tuple(ids.shape))
        m = self.config.max_context
        ids, mask = ids[:, -m:], None if mask is None else mask[:, -m:]
        n = min(self.config.num_latents, ids.shape[1])
        logits, _ = self.encode(ids, n, mask)
        loss = None
        if labels is not None:
            targets = labels[:, -m:]
            if mask is not None:
                targets = targets.masked_fill(~mask, IGNORE_INDEX)
            targets = F.pad(targets[:, ids.shape[1] - n + 1 :], (0, 1), value=IGNORE_INDEX)  # [B, N]: next token
            if mask is not None:  # a padding position predicts nothing (not even the first real token)
                targets = targets.masked_fill(~mask[:, ids.shape[1] - n :], IGNORE_INDEX)
            loss = next_token_loss(logits, targets)
        return CausalLMOutput(logits=logits, loss=loss)

    def encode(
        self, ids: torch.Tensor, num_latents: int, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[KeyValues]]:  # [B, M] -> [B, N, V], caches
        """The whole computation over a window ``ids [B, M]`` (M <= max_context, unchecked) with the last
        ``num_latents`` positions as latents; also returns the keys/values of the cross-attention (all M inputs) and
        of every self-attention layer (the N latents), for :meth:`step`. Window positions are 0 .. M-1."""
        b, m = ids.shape
        x = self.embedding(ids)  # [B, M, C]
        positions = torch.arange(m, device=ids.device)[None]  # [1, M]
        z = self.to_latents(x[:, m - num_latents :])  # [B, N, D]
        latent_positions = positions[:, m - num_latents :]  # [1, N]
        visible = key_mask
        p = self.config.cross_attend_dropout
        if self.training and p > 0:
            kept = torch.rand(b, m, device=ids.device) >= p  # [B, M]: the paper's cross-attend (input) dropout
            visible = kept if visible is None else visible & kept
        cross_mask = right_aligned_causal_mask(num_latents, m, visible, ids.device)  # [B|1, 1, N, M]
        rotation = self.cross_attention.rotation(positions)  # [1, 1, M, r/2] cos, sin: once for every layer
        kv = self.cross_attention.keys_values(x, rotation)
        z = self.cross_attention(z, tuple(t[:, :, m - num_latents :] for t in rotation), kv, cross_mask)
        caches = [kv]
        self_mask = None  # no padding: the fused kernel's causal mask (it skips the masked blocks)
        if key_mask is not None:
            self_mask = right_aligned_causal_mask(num_latents, num_latents, key_mask[:, m - num_latents :], ids.device)
        rotation = self.self_attention[0].rotation(latent_positions) if self.self_attention else None
        for layer in self.self_attention:
            z, layer_kv = layer(z, rotation, None, self_mask, is_causal=self_mask is None)
            caches.append(layer_kv)
        return self.logits(z), caches

    def start_cache(self, caches: list[KeyValues], extra: int) -> list[KeyValueCache]:
        """The keys/values of :meth:`encode` in buffers with room for ``extra`` more positions, for :meth:`step`."""
        return [KeyValueCache(kv, kv[0].shape[2] + extra) for kv in caches]

    def step(
        self, token: torch.Tensor, position: int, caches: list[KeyValueCache]
    ) -> torch.Tensor:  # [B, 1] -> [B, V]; caches one longer
        """One new token at window ``position`` (the caches' length): its embedding joins the cross-attention's
        keys/values, its latent attends to them and to the cached latents of every layer (both caches grow in
        place, see :meth:`start_cache`). Equals the last row of :meth:`encode` over the window with this token
        appended and the cached latents plus this one."""
        x = self.embedding(token)  # [B, 1, C]
        pos = torch.full((1, 1), position, device=token.device)  # [1, 1]
        rotation = self.cross_attention.rotation(pos)
        kv = caches[0].extend(*self.cross_attention.keys_values(x, rotation))  # [B, h, M + 1, d]
        z = self.cross_attention(self.to_latents(x), rotation, kv)  # [B, 1, D]: the newest position sees every input
        rotation = self.self_attention[0].rotation(pos) if self.self_attention else None
        for layer, past in zip(self.self_attention, caches[1:], strict=True):
            z, _ = layer(z, rotation, past)
        return self.logits(z)[:, 0]

    def logits(self, z: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, N, V]
        h = self.norm(z)
        if self.head is None:
            return F.linear(h, self.embedding.weight, self.head_bias)
        return self.head(h)

    def generate(
        self,
        prompt_ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_bytes: bytes | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """``prompt_ids [P]`` or ``[B, P]`` followed by up to ``max_new_tokens`` sampled tokens (same rank).

        ``temperature`` 0: greedy. ``top_k``/``top_p``: keep the k most likely tokens / the smallest set whose
        probability reaches p (nucleus, on the untempered distribution as in the official code), then divide by the
        temperature. ``stop_bytes``: a row ends after emitting any of these bytes (later positions are padding, id
        0); generation ends when every row has. ``seed`` or ``generator``: reproducible sampling. ``use_cache``
        False recomputes the window at every step (the reference the cache is tested against). See
        :func:`perceiverio.tasks.sampling.generate` for the window schedule."""
        return sampling.generate(
            self, prompt_ids, max_new_tokens, temperature, top_k, top_p, stop_bytes, seed, generator, use_cache
        )


def check_labels(labels: object, shape: tuple[int, int]) -> torch.Tensor:
    """Integer labels of ``input_ids``' shape (ids, or -100 to ignore; the range is checked by the loss)."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor of shape {list(shape)}, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (token ids or -100), got dtype {labels.dtype}")
    if tuple(labels.shape) != shape:
        raise ValueError(f"labels must have the shape of input_ids {list(shape)}, got {list(labels.shape)}")
    return labels.long()


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # [B, N, V], [B, N] -> []
    """Mean cross-entropy over the targets that are not -100 (0 when none is); ids must lie in [0, V)."""
    keep = targets != IGNORE_INDEX
    check_range(targets.masked_fill(~keep, 0), 0, logits.shape[-1], "labels (or -100 to ignore a position)")
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return nll / keep.sum().clamp(min=1)
