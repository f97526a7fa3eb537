"""Optical-flow options beyond the official model: prediction at a lower resolution (``predict_scale``) and the
local correlation volume (``correlation_radius``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from perceiverio.adapters.flow import local_correlation, normalised_patches, num_correlation_channels
from perceiverio.adapters.image import extract_patches_3x3
from perceiverio.core import DecoderConfig
from perceiverio.tasks.flow import OpticalFlow, OpticalFlowConfig, resize_flow, resize_frames, scaled_size


def _frames(b: int = 1, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 2, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def tiny() -> OpticalFlow:
    torch.manual_seed(0)
    return OpticalFlow(OpticalFlowConfig.tiny()).eval()


def test_resize_flow_closed_form():
    # a constant flow (u, v) on a 12×16 grid is (u·W/16, v·H/12) on an H×W grid
    flow = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 12, 16)
    out = resize_flow(flow, (48, 32))
    torch.testing.assert_close(out, torch.tensor([3.0, -8.0]).view(1, 2, 1, 1).expand(1, 2, 48, 32))
    # a zoom about the centre, flow(x) = k·(x - c) in pixel centres, survives upsampling in the interior
    k, h, w = 0.1, 10, 14
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")  # pixel centres
    zoom = torch.stack([k * (xs - w / 2), k * (ys - h / 2)])[None]
    big = resize_flow(zoom, (2 * h, 2 * w))
    ys2, xs2 = torch.meshgrid(torch.arange(2 * h) + 0.5, torch.arange(2 * w) + 0.5, indexing="ij")
    expect = torch.stack([k * (xs2 - w), k * (ys2 - h)])[None]  # the same zoom on the finer grid
    torch.testing.assert_close(big[..., 2:-2, 2:-2], expect[..., 2:-2, 2:-2], atol=1e-5, rtol=0)
    assert scaled_size((384, 512), 0.25) == (96, 128) and scaled_size((5, 5), 0.01) == (1, 1)
    assert resize_frames(_frames(2, 24, 32), (12, 16)).shape == (2, 2, 3, 12, 16)


@torch.no_grad()
def test_predict_at_a_lower_resolution(tiny):
    frames = _frames(1, 48, 64, seed=2)
    flow = tiny.predict(frames, scale=0.5)  # 24×32: exactly one tile
    assert flow.shape == (1, 2, 48, 64)
    torch.testing.assert_close(flow, resize_flow(tiny(resize_frames(frames, (24, 32))), (48, 64)))
    model = OpticalFlow(dataclasses.replace(tiny.config, predict_scale=0.5))
    model.load_state_dict(tiny.state_dict())
    torch.testing.assert_close(model.eval().predict(frames), flow)  # the config's default scale
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ValueError, match="scale"):
            tiny.predict(frames, scale=bad)
    with pytest.raises(ValueError, match="predict_scale"):
        dataclasses.replace(tiny.config, predict_scale=2.0)
    with pytest.raises(ValueError, match="smaller than the tile"):
        tiny.predict(frames, scale=0.25)


def test_local_correlation_closed_form():
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(2, 4, 7, 9, generator=g), torch.randn(2, 4, 7, 9, generator=g)
    out = local_correlation(f1, f2, radius=2, stride=2)
    assert out.shape == (2, 25, 7, 9)
    for k, (dy, dx) in enumerate((dy, dx) for dy in (-4, -2, 0, 2, 4) for dx in (-4, -2, 0, 2, 4)):
        for y, x in ((3, 4), (0, 0), (6, 8), (1, 7)):
            inside = 0 <= y + dy < 7 and 0 <= x + dx < 9
            expect = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).sum(1) if inside else torch.zeros(2)
            torch.testing.assert_close(out[:, k, y, x], expect)


def test_correlation_peaks_at_the_true_shift():
    """Frame 2 = frame 1 moved by (dx, dy) = (2, -1): the normalised correlation is 1 at that displacement."""
    img = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    moved = torch.roll(img, shifts=(-1, 2), dims=(2, 3))  # frame 2 at (y - 1, x + 2) shows frame 1 at (y, x)
    p = normalised_patches(extract_patches_3x3(torch.stack([img, moved], 1)))
    # brightness and contrast do not change the cosine similarity (away from the zero-padded border)
    relit = normalised_patches(extract_patches_3x3(torch.stack([img, 0.5 * moved + 0.2], 1)))
    torch.testing.assert_close(relit[..., 1:-1, 1:-1], p[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    corr = local_correlation(p[:, 0], p[:, 1], radius=3)  # [1, 49, H, W]
    interior = corr[0, :, 4:-4, 4:-4]
    best = interior.argmax(0)
    assert bool((best == (3 - 1) * 7 + (3 + 2)).all())  # row dy = -1, column dx = +2
    torch.testing.assert_close(interior.amax(0), torch.ones_like(interior[0]), atol=1e-5, rtol=0)


def test_correlation_option_widens_the_tokens():
    base = OpticalFlowConfig.tiny()
    assert num_correlation_channels(0) == 0 and num_correlation_channels(3) == 49
    cfg = dataclasses.replace(
        base, correlation_radius=2, decoder=DecoderConfig(num_query_channels=34 + 25, num_output_channels=2)
    )
    model = OpticalFlow(cfg).eval()
    tokens = model.input_adapter(_frames(2))
    assert tokens.shape == (2, 24 * 32, 59)
    assert model(_frames(2)).shape == (2, 2, 24, 32)
    with pytest.raises(ValueError, match="correlation_radius"):
        dataclasses.replace(base, correlation_radius=2)  # the queries no longer match the tokens
    with pytest.raises(ValueError, match="correlation_stride"):
        dataclasses.replace(base, correlation_stride=0)
    with pytest.raises(ValueError, match="correlation_radius"):
        dataclasses.replace(base, correlation_radius=-1)
