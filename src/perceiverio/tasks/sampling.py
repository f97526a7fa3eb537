"""Sampling from a causal model (:class:`perceiverio.tasks.causal.CausalLanguageModel`) with a key/value cache.

The window schedule (the official sampler's, made exact): the model works on a window of the sequence, inputs
``[s, T)`` and latents ``[a, T)``. A *re-encoding* runs the whole model over the window and keeps the keys/values of
the cross-attention (every input) and of every self-attention layer (every latent); each following token is one
:meth:`~perceiverio.tasks.causal.CausalLanguageModel.step`: its input and its latent join the caches. When the
latents would exceed N, or the inputs max_context, the window is re-encoded: latents the last ``max(1, N // 2)``
positions (the official reset to half the latent buffer; the prompt's first encoding keeps N, so the first
token is the one ``forward`` predicts), inputs everything while the sequence fits max_context,
else the last ``max_context - N // 2`` tokens (the strided slide: the next re-encodings come every ~N/2 tokens, not
at every token). Uncached generation (``use_cache=False``) runs the same schedule but re-encodes at every step, so
both give the same tokens; the cache changes only the cost.
"""

from __future__ import annotations

import math

import torch

from ..tokenizer import NUM_SPECIAL, PAD_ID


def window_after_reencoding(length: int, max_context: int, num_latents: int, first: bool) -> tuple[int, int]:
    """``(s, a)``: the first input and the first latent of a window re-encoded at sequence length ``length``;
    the ``first`` encoding (of the prompt) keeps up to N latents, as ``forward`` does."""
    start = 0 if length <= max_context else length - (max_context - num_latents // 2)
    kept = num_latents if first else max(1, num_latents // 2)
    return start, length - min(length - start, kept)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:  # [B, V]
    """``logits`` with every token outside the top k, and outside the nucleus (the smallest set of most likely
    tokens whose probability reaches ``top_p``), set to -inf. The most likely token always stays."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)  # [B, V]
        probs = ordered.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass of the more likely tokens already reaches p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def choose(
    logits: torch.Tensor,  # [B, V]
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:  # [B] long
    """Greedy (argmax) at temperature 0, else a draw from softmax(filter_logits(logits) / temperature)."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    kept = filter_logits(logits, top_k, top_p)
    probs = ((kept - kept.amax(dim=-1, keepdim=True)) / temperature).softmax(dim=-1)  # no overflow at tiny T
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def generate(
    model,
    prompt_ids: object,
    max_new_tokens: object,
    temperature: object = 1.0,
    top_k: object = None,
    top_p: object = None,
    stop_bytes: object = None,
    seed: object = None,
    generator: object = None,
    use_cache: object = True,
) -> torch.Tensor:
    """See :meth:`perceiverio.tasks.causal.CausalLanguageModel.generate`."""
    ids, squeeze = _check_prompt(prompt_ids, model.config.vocab_size)
    new = _check_int(max_new_tokens, "max_new_tokens", 0)
    temperature = _check_temperature(temperature)
    top_k = None if top_k is None else _check_int(top_k, "top_k", 1)
    top_p = _check_top_p(top_p)
    stops = _check_stop_bytes(stop_bytes)
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}")
    device = model.embedding.weight.device
    generator = _check_generator(seed, generator, device)
    ids = ids.to(device)
    c = model.config
    was_training = model.training
    model.eval()
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)  # [B]
    stop_ids = None if stops is None else torch.tensor([b + NUM_SPECIAL for b in stops], device=device)
    start = latents = None
    caches = None
    try:
        with torch.no_grad():
            for _ in range(new):
                length = ids.shape[1]
                fresh = start is None or length - latents > c.num_latents or length - start > c.max_context
                if fresh:
                    start, latents = window_after_reencoding(length, c.max_context, c.num_latents, start is None)
                if fresh or not use_cache:
                    all_logits, kv = model.encode(ids[:, start:], length - latents)
                    logits = all_logits[:, -1]  # [B, V]
                    if use_cache:  # room up to the next re-encoding: max_context inputs, N latents
                        caches = model.start_cache(kv, max(c.max_context - (length - start), c.num_latents))
                else:
                    logits = model.step(ids[:, -1:], length - 1 - start, caches)
                token = choose(logits, temperature, top_k, top_p, generator).masked_fill(done, PAD_ID)  # [B]
                ids = torch.cat((ids, token[:, None]), dim=1)
                if stop_ids is not None:
                    done = done | torch.isin(token, stop_ids)
                    if bool(done.all()):
                        break
    finally:
        model.train(was_training)
    return ids[0] if squeeze else ids


def _check_prompt(prompt: object, vocab_size: int) -> tuple[torch.Tensor, bool]:
    if not isinstance(prompt, torch.Tensor) or prompt.dim() not in (1, 2):
        got = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"prompt_ids must be an integer tensor of shape [P] or [B, P], got {got}")
    if prompt.dtype.is_floating_point or prompt.dtype.is_complex or prompt.dtype == torch.bool:
        raise ValueError(f"prompt_ids must be an integer tensor (token ids), got dtype {prompt.dtype}")
    if 0 in prompt.shape:
        raise ValueError(f"prompt_ids must hold at least one token per row, got shape {tuple(prompt.shape)}")
    ids = prompt[None] if prompt.dim() == 1 else prompt
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"prompt_ids must lie in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return ids.long(), prompt.dim() == 1


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_temperature(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {value!r}")
    return float(value)


def _check_top_p(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"top_p must be a number in (0, 1] or None, got {value!r}")
    return float(value)


def _check_stop_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes | bytearray) or len(value) == 0:
        raise ValueError(f"stop_bytes must be non-empty bytes (e.g. b'\\n') or None, got {value!r}")
    return bytes(value)


def _check_generator(seed: object, generator: object, device: torch.device) -> torch.Generator | None:
    if seed is not None and generator is not None:
        raise ValueError("seed and generator: give at most one")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator.device.type != device.type:
            raise ValueError(f"generator must live on the model's device {device}, got {generator.device}")
        return generator
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)
