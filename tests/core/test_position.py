"""Position encodings against closed forms written independently here (numpy, loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perceiverio.core import FourierPositionEncoding, TrainablePositionEncoding
from perceiverio.core.position import fourier_features, linear_positions, num_fourier_channels, positions_from_indices


def _fourier_reference(pos: np.ndarray, num_bands: int, max_resolution, concat_pos=True, sine_only=False):
    """[P, d] -> [P, C]: [pos] + [sin, dim-major] + [cos, dim-major], freqs linspace(1, res/2, K)."""
    p, d = pos.shape
    columns = [pos[:, i] for i in range(d)] if concat_pos else []
    sines, cosines = [], []
    for i in range(d):
        for k in range(num_bands):
            f = 1.0 + k * (max_resolution[i] / 2.0 - 1.0) / (num_bands - 1) if num_bands > 1 else 1.0
            sines.append(np.sin(np.pi * f * pos[:, i]))
            cosines.append(np.cos(np.pi * f * pos[:, i]))
    columns += sines if sine_only else sines + cosines
    return np.stack(columns, axis=-1)


def _grid_reference(dims) -> np.ndarray:
    """Row-major list of grid points, coordinate i = -1 + 2·idx_i/(n_i - 1)."""
    out = []
    for flat in range(int(np.prod(dims))):
        coords, rest = [], flat
        for n in reversed(dims):
            coords.append(rest % n)
            rest //= n
        coords = coords[::-1]
        out.append([-1.0 + 2.0 * c / (n - 1) if n > 1 else -1.0 for c, n in zip(coords, dims)])
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------------- Fourier


@pytest.mark.parametrize("concat_pos", [True, False])
@pytest.mark.parametrize("sine_only", [False, True])
@pytest.mark.parametrize("dims,bands,res", [((7,), 5, (7,)), ((4, 6), 4, (10, 12)), ((2, 3, 4), 3, (8, 6, 5))])
def test_fourier_features_match_closed_form(dims, bands, res, concat_pos, sine_only):
    pos = torch.rand(11, len(dims), dtype=torch.float64) * 2 - 1
    out = fourier_features(pos, bands, res, concat_pos=concat_pos, sine_only=sine_only)
    ref = _fourier_reference(pos.numpy(), bands, res, concat_pos, sine_only)
    assert out.shape == ref.shape == (11, num_fourier_channels(len(dims), bands, concat_pos, sine_only))
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


def test_fourier_features_float32_paper_scale():
    """2-D, 64 bands, 224² (ImageNet Fourier): frequencies up to 112, float32 stays within 1e-4."""
    pos = linear_positions((224, 224)).flatten(0, 1)[::97]  # [P, 2]
    out = fourier_features(pos, 64, (224, 224))
    assert out.dtype == torch.float32
    ref = _fourier_reference(pos.double().numpy(), 64, (224, 224))
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-4)


def test_fourier_channel_order_explicit():
    """Spot-check the layout by hand: 2-D, K=2, res (4, 8) -> freqs dim0 [1, 2], dim1 [1, 4]."""
    pos = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    out = fourier_features(pos, 2, (4, 8))[0]
    x, y = 0.25, -0.5
    pi = np.pi
    expected = [
        x,
        y,
        np.sin(pi * 1 * x),
        np.sin(pi * 2 * x),
        np.sin(pi * 1 * y),
        np.sin(pi * 4 * y),
        np.cos(pi * 1 * x),
        np.cos(pi * 2 * x),
        np.cos(pi * 1 * y),
        np.cos(pi * 4 * y),
    ]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("d,k,width", [(2, 64, 258), (3, 32, 195), (1, 192, 385)])
def test_paper_widths(d, k, width):
    assert num_fourier_channels(d, k) == width
    pos = torch.rand(3, d) * 2 - 1
    assert fourier_features(pos, k, (16,) * d).shape == (3, width)
    assert num_fourier_channels(d, k, sine_only=True) == d * (k + 1)
    assert num_fourier_channels(d, k, concat_pos=False) == 2 * d * k


def test_fourier_top_band_is_nyquist():
    """sin(pi · (res/2) · x) vanishes on the grid -1 + 2i/res (the Nyquist frequency of that resolution)."""
    res = 16
    pos = positions_from_indices(torch.arange(res), res).double()
    sines = fourier_features(pos, 8, (res,), concat_pos=False, sine_only=True)
    np.testing.assert_allclose(sines[:, -1].numpy(), 0.0, atol=1e-12)
    assert sines[:, 0].abs().max() > 0.5


def test_fourier_rejects_mismatched_resolution():
    with pytest.raises(ValueError):
        fourier_features(torch.zeros(3, 2), 4, (8,))


def test_fourier_position_encoding_module():
    enc = FourierPositionEncoding((5, 6), num_bands=4)
    assert enc.num_channels == 2 * (2 * 4 + 1)
    out = enc(batch_size=2)
    assert out.shape == (2, 30, enc.num_channels)
    ref = _fourier_reference(_grid_reference((5, 6)), 4, (5, 6))
    np.testing.assert_allclose(out[1].numpy(), ref, atol=1e-5)
    # another grid size at call time keeps the configured frequencies (max_resolution = (5, 6))
    other = enc(batch_size=1, index_dims=(3, 4))
    np.testing.assert_allclose(other[0].numpy(), _fourier_reference(_grid_reference((3, 4)), 4, (5, 6)), atol=1e-5)
    # explicit positions
    pos = torch.rand(2, 7, 2) * 2 - 1
    np.testing.assert_allclose(
        enc(2, positions=pos).numpy(),
        np.stack([_fourier_reference(p.double().numpy(), 4, (5, 6)) for p in pos]),
        atol=1e-5,
    )


# ---------------------------------------------------------------------------------------------------- grids


@pytest.mark.parametrize("dims", [(5,), (3, 4), (2, 3, 4), (1, 3)])
def test_linear_positions_grid(dims):
    grid = linear_positions(dims)
    assert grid.shape == (*dims, len(dims))
    np.testing.assert_allclose(grid.reshape(-1, len(dims)).numpy(), _grid_reference(dims), atol=1e-7)


def test_linear_positions_includes_both_ends_and_int_dims():
    g = linear_positions(5)
    assert g.shape == (5, 1)
    np.testing.assert_allclose(g[:, 0].numpy(), [-1.0, -0.5, 0.0, 0.5, 1.0], atol=1e-7)
    g2 = linear_positions((3, 4))
    # indexing="ij": first coordinate varies along axis 0, second along axis 1; row-major flatten
    flat = g2.flatten(0, 1)
    assert flat[1].tolist() == pytest.approx([-1.0, -1.0 + 2.0 / 3.0])
    assert flat[4].tolist() == pytest.approx([0.0, -1.0])
    assert flat[-1].tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        linear_positions((3, 0))


def test_positions_from_indices_closed_form():
    dims = (3, 4)
    idx = torch.arange(12)
    pos = positions_from_indices(idx, dims)
    assert pos.shape == (12, 2) and pos.dtype == torch.float32
    expected = [[-1 + 2 * (t // 4) / 3, -1 + 2 * (t % 4) / 4] for t in range(12)]
    np.testing.assert_allclose(pos.numpy(), expected, atol=1e-7)
    # the end point 1 is excluded
    assert pos.max() < 1.0
    # differs from the linspace grid everywhere except index 0
    grid = linear_positions(dims).flatten(0, 1)
    same = torch.isclose(pos, grid, atol=1e-6).all(dim=-1)
    assert same.tolist() == [True] + [False] * 11


def test_positions_from_indices_batched_and_1d():
    idx = torch.tensor([[0, 5, 9], [2, 2, 7]])
    pos = positions_from_indices(idx, 10)
    assert pos.shape == (2, 3, 1)
    np.testing.assert_allclose(pos[..., 0].numpy(), -1 + 2 * idx.numpy() / 10, atol=1e-7)


@pytest.mark.parametrize(
    "bad",
    [torch.tensor([-1, 0]), torch.tensor([12]), torch.tensor([0.0, 1.0]), torch.tensor([True, False])],
    ids=["negative", "too_big", "float", "bool"],
)
def test_positions_from_indices_rejects_bad_indices(bad):
    with pytest.raises(ValueError):
        positions_from_indices(bad, (3, 4))


# ---------------------------------------------------------------------------------------------------- trainable


def test_trainable_index_selection():
    enc = TrainablePositionEncoding(10, 6)
    table = enc.embeddings.detach()
    assert enc.num_positions == 10 and enc.num_channels == 6
    full = enc(3)
    assert full.shape == (3, 10, 6)
    torch.testing.assert_close(full[2], table, rtol=0, atol=0)
    idx = torch.tensor([7, 0, 7, 3])
    sub = enc(2, index=idx)
    assert sub.shape == (2, 4, 6)
    torch.testing.assert_close(sub[0], table[idx], rtol=0, atol=0)
    torch.testing.assert_close(sub[1], table[idx], rtol=0, atol=0)
    per_example = torch.tensor([[1, 2], [9, 4]])
    sub2 = enc(2, index=per_example)
    torch.testing.assert_close(sub2[0], table[[1, 2]], rtol=0, atol=0)
    torch.testing.assert_close(sub2[1], table[[9, 4]], rtol=0, atol=0)
    for bad in (torch.tensor([10]), torch.tensor([-1])):
        with pytest.raises(ValueError):
            enc(1, index=bad)


def test_trainable_init_scale():
    enc = TrainablePositionEncoding(4096, 32)
    table = enc.embeddings.detach()
    # Haiku TruncatedNormal(0.02): 0.02 x a standard normal truncated to [-2, 2] (whose std is 0.8796)
    assert abs(float(table.std()) - 0.02 * 0.87962566) < 5e-4
    assert float(table.abs().max()) <= 0.04 + 1e-6


def test_trainable_projection():
    enc = TrainablePositionEncoding((4, 5), 8, project_to=3)
    assert enc.num_channels == 3
    with torch.no_grad():
        enc.projection.bias.normal_()
    projected = enc.embeddings @ enc.projection.weight.T + enc.projection.bias
    torch.testing.assert_close(enc(2)[1], projected)
    idx = torch.tensor([19, 0])
    torch.testing.assert_close(enc(1, index=idx)[0], projected[idx])


def test_trainable_interpolation_identity_at_same_size():
    enc = TrainablePositionEncoding((4, 6), 5)
    torch.testing.assert_close(enc.interpolate((4, 6)), enc.embeddings, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(enc(2, index_dims=(4, 6)), enc(2), rtol=0, atol=0)


def test_trainable_interpolation_resized():
    h, w = 4, 6
    enc = TrainablePositionEncoding((h, w), 5)
    out = enc(2, index_dims=(8, 9))
    assert out.shape == (2, 72, 5)
    # reference: the table as an image [C, H, W] with row-major positions p = y·W + x
    image = enc.embeddings.detach().reshape(h, w, 5).permute(2, 0, 1)[None]
    ref = F.interpolate(image, size=(8, 9), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).reshape(72, 5)
    torch.testing.assert_close(out[0], ref, rtol=1e-5, atol=1e-6)


def test_trainable_interpolation_keeps_row_major_layout():
    """A table that depends only on the row y stays so when only the width changes (catches an H/W mix-up)."""
    h, w = 4, 6
    enc = TrainablePositionEncoding((h, w), 2)
    with torch.no_grad():
        rows = torch.arange(h, dtype=torch.float32).repeat_interleave(w)  # value y at p = y·W + x
        enc.embeddings.copy_(torch.stack([rows, -rows], dim=-1))
    out = enc.interpolate((h, 11))
    expected = torch.arange(h, dtype=torch.float32).repeat_interleave(11)
    torch.testing.assert_close(out[:, 0], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out[:, 1], -expected, rtol=0, atol=1e-5)


def test_trainable_interpolation_rejects_1d():
    enc = TrainablePositionEncoding(10, 4)
    with pytest.raises(ValueError):
        enc.interpolate((2, 5))
