"""The causal mask and rotary embedding of perceiverio.core.causal against their closed forms."""

import math

import pytest
import torch

from perceiverio.core.causal import apply_rotary, right_aligned_causal_mask, rotary_frequencies, rotated_channels
from perceiverio.core.causal_blocks import KeyValueCache


def test_right_aligned_mask_closed_form():
    mask = right_aligned_causal_mask(3, 5)  # queries at key positions 2, 3, 4
    assert mask.shape == (1, 1, 3, 5)
    for i in range(3):
        for j in range(5):
            assert bool(mask[0, 0, i, j]) == (j <= 5 - 3 + i)
    assert torch.equal(right_aligned_causal_mask(4, 4)[0, 0], torch.ones(4, 4, dtype=torch.bool).tril())


def test_mask_with_padding_keeps_own_position():
    keys = torch.tensor([[False, False, True, True], [True, True, True, True]])
    mask = right_aligned_causal_mask(2, 4, keys)[:, 0]  # [B, O, M]
    # example 0: query at position 2 sees only key 2; query at 3 sees 2 and 3; padding never visible
    assert mask[0].tolist() == [[False, False, True, False], [False, False, True, True]]
    assert mask[1].tolist() == [[True, True, True, False], [True, True, True, True]]
    only_padding = right_aligned_causal_mask(2, 3, torch.zeros(1, 3, dtype=torch.bool))[0, 0]
    assert only_padding.tolist() == [[False, True, False], [False, False, True]]  # its own position only


def test_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="num_queries"):
        right_aligned_causal_mask(5, 4)


def test_rotary_frequencies_official_spacing():
    # official: max_wavelength ** -((2 / r) * linspace(0, r/2, r/2)) -> exponents i / (r/2 - 1)
    w = rotary_frequencies(8, 100.0)
    expected = [100.0 ** -(i / 3) for i in range(4)]
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64))
    assert rotary_frequencies(2, 100.0).tolist() == [1.0]
    assert rotated_channels(16, 0.5) == 8 and rotated_channels(6, 0.5) == 2 and rotated_channels(16, 0.25) == 4


def test_rotary_is_the_pairwise_rotation():
    x = torch.randn(2, 3, 5, 8)
    positions = torch.arange(5)[None] * 3
    out = apply_rotary(x, positions, 4, 50.0)
    omega = [50.0 ** -(i / 1) for i in range(2)]
    for t in range(5):
        for i in range(2):
            theta = float(positions[0, t]) * omega[i]
            a, b = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            assert torch.allclose(out[..., t, 2 * i], a * math.cos(theta) - b * math.sin(theta), atol=1e-5)
            assert torch.allclose(out[..., t, 2 * i + 1], b * math.cos(theta) + a * math.sin(theta), atol=1e-5)
    assert torch.equal(out[..., 4:], x[..., 4:])  # unrotated channels pass unchanged
    assert torch.equal(apply_rotary(x, positions, 0, 50.0), x)


def test_rotary_scores_depend_on_position_differences_only():
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16)

    def score(pq: int, pk: int) -> torch.Tensor:
        qr = apply_rotary(q, torch.tensor([[pq]]), 16, 1000.0)
        kr = apply_rotary(k, torch.tensor([[pk]]), 16, 1000.0)
        return (qr * kr).sum(-1)

    assert torch.allclose(score(7, 3), score(104, 100), atol=1e-4)
    assert not torch.allclose(score(7, 3), score(3, 7), atol=1e-3)  # rotation direction matters


def test_key_value_cache_extends_in_place_like_cat():
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 6, generator=g)
    cache = KeyValueCache((k, v), capacity=7)
    buffer = cache.k
    for step in range(6):  # fills the 7 positions, then grows (doubling) and goes on
        nk, nv = torch.randn(2, 3, 1, 4, generator=g), torch.randn(2, 3, 1, 6, generator=g)
        k, v = torch.cat((k, nk), dim=2), torch.cat((v, nv), dim=2)
        got_k, got_v = cache.extend(nk, nv)
        assert torch.equal(got_k, k) and torch.equal(got_v, v)
        assert (cache.k is buffer) == (step < 2)  # written in place while there is room
    assert cache.length == 11 and cache.k.shape[2] == 16
