"""SetModel: permutation equivariance, padding invariance, parameter count, errors."""

import pytest
import torch

from perceiverio.tasks.sets import SetModel, SetModelConfig


def _model(**kw):
    return SetModel(SetModelConfig.tiny(**kw)).eval()


def test_permutation_equivariant():
    model = _model()
    x = torch.randn(2, 9, 16)
    perm = torch.randperm(9)
    with torch.no_grad():
        out = model(x).embeddings
        out_perm = model(x[:, perm]).embeddings
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)


def test_padding_invariance_and_zeroed_padding():
    model = _model()
    x = torch.randn(1, 5, 16)
    padded = torch.cat([x, torch.randn(1, 7, 16) * 100], dim=1)  # garbage in the padding
    mask = torch.tensor([[True] * 5 + [False] * 7])
    with torch.no_grad():
        ref = model(x).embeddings
        out = model(padded, mask).embeddings
    torch.testing.assert_close(out[:, :5], ref, atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(out[:, 5:]) == 0


def test_outputs_depend_on_other_entities():
    model = _model()
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, 5] = 3 * torch.randn(16)  # a constant shift would vanish in LayerNorm
    with torch.no_grad():
        a, b = model(x).embeddings, model(y).embeddings
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-4  # entity 0 sees entity 5 through the latents


def test_starcraft_parameter_count_closed_form():
    cfg = SetModelConfig.starcraft()
    c, d, n = 128, 128, 32

    def ln(w: int) -> int:  # LayerNorm: scale and offset
        return 2 * w

    def lin(i: int, o: int) -> int:  # Linear: weight and bias
        return i * o + o

    cross_enc = ln(d) + ln(c) + lin(d, c) + lin(c, c) + lin(c, d) + lin(d, d) + ln(d) + lin(d, d) * 2
    self_layer = ln(d) + 4 * lin(d, d) + ln(d) + 2 * lin(d, d)
    cross_dec = ln(c) + ln(d) + lin(c, d) + lin(d, d) + lin(d, d) + lin(d, c) + ln(c) + 2 * lin(c, c)
    expected = n * d + cross_enc + 3 * self_layer + cross_dec
    assert SetModel(cfg).num_parameters() == expected


def test_output_projection():
    cfg = SetModelConfig.tiny()
    cfg = SetModelConfig.tiny(decoder=type(cfg.decoder)(num_query_channels=16, num_output_channels=5))
    assert SetModel(cfg)(torch.randn(2, 4, 16)).embeddings.shape == (2, 4, 5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.randn(4, 16), "rank 3"),
        (torch.randn(2, 4, 15), "16 channels"),
        (torch.zeros(2, 4, 16, dtype=torch.long), "floating-point"),
        (torch.randn(0, 4, 16), "non-empty"),
    ],
)
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        _model()(bad)


def test_bad_mask_and_config():
    with pytest.raises(ValueError, match="mask"):
        _model()(torch.randn(2, 4, 16), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="queries are the entities"):
        SetModelConfig(num_entity_channels=64)
