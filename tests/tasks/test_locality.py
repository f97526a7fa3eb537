"""The locality-prior initialisation of the byte MLM (routing_init="local") and byte masking."""

from __future__ import annotations

import math

import pytest
import torch

from perceiverio import (
    ByteMaskingCollator,
    DecoderConfig,
    EncoderConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
)
from perceiverio.tasks.locality import head_interleave, sinusoid_codes
from perceiverio.tokenizer import MASK_ID, NUM_SPECIAL


def _config(**overrides) -> MaskedLanguageModelConfig:
    fields = dict(
        max_seq_len=96,
        num_input_channels=32,
        embedding_init_scale=0.02,
        routing_init="local",
        encoder=EncoderConfig(
            num_latents=24,
            num_latent_channels=48,
            num_cross_attention_heads=4,
            num_self_attention_heads=4,
            num_self_attends_per_block=1,
            qk_channels=32,
            v_channels=48,
        ),
        decoder=DecoderConfig(num_query_channels=32, num_heads=4, qk_channels=32, v_channels=32),
    )
    return MaskedLanguageModelConfig(**{**fields, **overrides})


def test_sinusoid_codes_closed_form():
    c, period = 16, 50.0
    codes = sinusoid_codes(torch.arange(40), c, period)  # [P, C]
    assert codes.shape == (40, c)
    assert torch.allclose(codes.pow(2).mean(dim=1), torch.ones(40), atol=1e-5)  # RMS 1 per position
    wavelengths = torch.exp(torch.linspace(math.log(3.0), math.log(period), c // 2))
    for p, q in [(0, 0), (3, 7), (20, 5), (39, 0)]:
        expected = 2.0 * torch.cos(2 * math.pi * (p - q) / wavelengths).sum()
        assert float(codes[p] @ codes[q]) == pytest.approx(float(expected), abs=1e-4)
    # the similarity depends on p - q only, and is largest at p = q
    sim = codes @ codes.T
    assert torch.allclose(sim[5, 9], sim[25, 29], atol=1e-4)
    assert torch.equal(sim.argmax(dim=1), torch.arange(40))
    with pytest.raises(ValueError, match="even"):
        sinusoid_codes(torch.arange(3), 5, 10.0)


def test_head_interleave_spreads_frequencies_over_heads():
    perm = head_interleave(16, 4)  # 8 sin/cos pairs over 4 heads of 4 channels
    assert sorted(perm.tolist()) == list(range(16))
    head0 = perm[:4].tolist()
    assert head0 == [0, 1, 8, 9]  # pairs 0 and 4: the lowest and a middle wavelength
    assert perm[4:8].tolist() == [2, 3, 10, 11]


def _attention_probs(block, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Head-averaged softmax(q k^T / sqrt(d)) of a cross-attention block: [Q, K]."""
    att = block.attention
    q = att.q_proj(block.q_norm(queries))
    k = att.k_proj(block.kv_norm(keys))
    h = att.num_heads
    q = q.unflatten(-1, (h, -1)).transpose(0, 1)  # [H, Q, d]
    k = k.unflatten(-1, (h, -1)).transpose(0, 1)  # [H, K, d]
    logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    return logits.softmax(-1).mean(0)


@torch.no_grad()
def test_local_init_routes_latents_to_their_bytes_and_queries_to_their_latents():
    torch.manual_seed(0)
    cfg = _config()
    model = MaskedLanguageModel(cfg)
    length, n = cfg.max_seq_len, cfg.encoder.num_latents
    ids = torch.randint(NUM_SPECIAL, 262, (1, length))
    inputs = model.input_adapter(ids)[0]  # [L, C]
    centres = (torch.arange(n) + 0.5) * length / n - 0.5

    enc = _attention_probs(model.encoder.cross_attention, model.encoder.latents, inputs)  # [N, L]
    assert (enc.argmax(1).float() - centres).abs().max() <= 2.0  # each latent reads the bytes at its centre

    queries = model.output_queries(torch.zeros(1, 1, 1))[0]  # [L, C]
    latents = model.encoder.latents  # the code survives in the residual stream; test the init's own routing
    dec = _attention_probs(model.decoder.cross_attention, queries, latents)  # [L, N]
    nearest = (torch.arange(length)[:, None] - centres[None]).abs().argmin(1)
    # each query reads the latent nearest its position (a few edge positions alias with this few channels)
    assert ((dec.argmax(1) - nearest).abs() <= 1).float().mean() >= 0.95

    # the paper's random initialisation has no such structure
    random = MaskedLanguageModel(_config(routing_init="random"))
    enc_random = _attention_probs(random.encoder.cross_attention, random.encoder.latents, random.input_adapter(ids)[0])
    assert enc_random.max() < 0.2 < enc.max()


def test_local_init_routes_every_head_when_qk_is_wider_than_the_inputs():
    # qk_channels 48 > num_input_channels 32: each head (12 channels) must still get its 8 code channels; a copy
    # into the first 32 channels only left the last head without any and slowed a 192-wide SST-2 MLM to a halt
    torch.manual_seed(0)
    wide = EncoderConfig(
        num_latents=24,
        num_latent_channels=48,
        num_cross_attention_heads=4,
        num_self_attention_heads=4,
        num_self_attends_per_block=1,
        qk_channels=48,
        v_channels=48,
    )
    model = MaskedLanguageModel(_config(encoder=wide))
    length, n = 96, 24
    inputs = model.input_adapter(torch.randint(NUM_SPECIAL, 262, (1, length)))[0]  # [L, C]
    centres = (torch.arange(n) + 0.5) * length / n - 0.5
    enc = _attention_probs(model.encoder.cross_attention, model.encoder.latents, inputs)  # [N, L]
    q_rows = model.encoder.cross_attention.attention.q_proj.weight.abs().sum(1).unflatten(0, (4, 12))  # [H, 12]
    assert ((q_rows > 0).sum(1) == 8).all()  # 8 code channels in every head
    assert (enc.argmax(1).float() - centres).abs().max() <= 2.0  # each latent reads the bytes at its centre


def test_local_init_is_only_an_initialisation():
    cfg = _config()
    a, b = MaskedLanguageModel(cfg), MaskedLanguageModel(_config(routing_init="random"))
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert all(p.requires_grad for p in a.parameters())
    ids = torch.randint(NUM_SPECIAL, 262, (2, 40))
    labels = torch.where(torch.rand(2, 40) < 0.3, ids, torch.full_like(ids, -100))
    labels[0, 0] = ids[0, 0]
    a(ids.masked_fill(labels != -100, MASK_ID), labels=labels).loss.backward()
    q_grad = a.encoder.cross_attention.attention.q_proj.weight.grad
    assert q_grad is not None and q_grad.abs().sum() > 0


def test_local_init_validates_widths():
    with pytest.raises(ValueError, match="encoder.qk_channels"):
        _config(encoder=EncoderConfig(num_latents=8, num_latent_channels=48, qk_channels=16, v_channels=48))
    with pytest.raises(ValueError, match="num_latent_channels"):
        _config(
            encoder=EncoderConfig(num_latents=8, num_latent_channels=16, qk_channels=32, v_channels=16),
            decoder=DecoderConfig(num_query_channels=32, num_heads=4, qk_channels=32, v_channels=32),
        )
    with pytest.raises(ValueError, match="routing_init"):
        _config(routing_init="locality")


def test_byte_masking_masks_single_bytes_with_the_given_rate():
    text = "Byte masking: every byte, spaces too, is masked on its own. " * 60
    batch = ByteMaskingCollator(mask_prob=0.15, generator=torch.Generator().manual_seed(0))([text])
    ids, labels = batch.input_ids[0], batch.labels[0]
    original = torch.tensor(list(text.encode())) + NUM_SPECIAL
    masked = labels != -100
    assert torch.equal(labels[masked], original[masked])
    assert (ids[masked] == MASK_ID).all() and torch.equal(ids[~masked], original[~masked])
    rate = masked.float().mean().item()  # binomial(3600, 0.15): std 0.006
    assert abs(rate - 0.15) < 0.03
    assert masked[original == ord(" ") + NUM_SPECIAL].any()  # unlike whole-word masking, spaces are masked
    # isolated masks: runs of masked bytes are as short as independent draws make them (no word-length runs)
    runs = torch.diff(torch.nonzero(torch.diff(masked.int())).flatten())[::2] if masked.any() else torch.tensor([])
    assert runs.float().mean() < 1.5
    special = ByteMaskingCollator(mask_prob=1.0)([[1, 2, 100, 101]])  # special ids (< NUM_SPECIAL) never masked
    assert special.labels[0].tolist() == [-100, -100, 100, 101]
