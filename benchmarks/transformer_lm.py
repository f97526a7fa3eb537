"""The decoder-only Transformer that Perceiver AR is compared against, in plain PyTorch.

``nn.TransformerEncoderLayer`` blocks (pre-LN, GELU MLP of 4x the width, batch first) under a causal mask
(``is_causal=True``: PyTorch's fused scaled-dot-product attention), learned absolute positions, a final LayerNorm
and a linear read-out over the byte vocabulary. Every position predicts the next byte. "Same size" as a Perceiver AR
with L latent self-attention layers means the same width, heads and MLP widening and L + 1 layers (the Perceiver's
cross-attention layer counts as one). Used by ``clm_baseline.py`` (quality) and ``cases_ar.py`` (speed).
"""

from __future__ import annotations

import torch
from torch import nn

from perceiverio.tokenizer import VOCAB_SIZE


class TransformerLM(nn.Module):
    def __init__(
        self, context: int, width: int, layers: int, heads: int, widening: int = 4, vocab_size: int = VOCAB_SIZE
    ) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab_size, width)
        self.positions = nn.Parameter(torch.randn(context, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, widening * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids [B, T]`` (T <= context) -> next-byte logits ``[B, T, V]``."""
        t = ids.shape[1]
        x = self.embed(ids) + self.positions[:t]  # [B, T, D]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        # without grad, nn.TransformerEncoder's fused "fast path" runs full attention under the mask (is_causal
        # ignored): 4.5x slower at L = 4,096 on CPU than the SDPA causal path used here, same output
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            x = self.blocks(x, mask=mask, is_causal=True)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
        return self.head(self.norm(x))  # [B, T, V]

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.8,
        top_k: int = 40,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``prompt [B, P]`` followed by sampled bytes: the whole window recomputed per token (no key/value cache:
        ``nn.TransformerEncoder`` has none)."""
        out = prompt
        for _ in range(max_new_tokens):
            logits = self(out[:, -self.context :])[:, -1] / temperature  # [B, V]
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            probs = logits.masked_fill(logits < kth, float("-inf")).softmax(-1)
            out = torch.cat([out, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return out
