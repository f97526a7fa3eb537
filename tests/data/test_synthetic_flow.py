"""The procedural flow generator: exact ground truth for every texture, photometric changes, motion statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import one_line_error, warp_frame

from perceiverio.data import FlowDataModule, SyntheticFlowDataset
from perceiverio.data.synthetic_flow import GAIN, NOISE, PHOTOS, PhotoTexture, _mirror, photometric_change, photos


def _visible_neighbours(s: dict) -> torch.Tensor:
    """Pixels visible in both frames whose 4 bilinear neighbours in frame 2 show the same layer."""
    flow = s["flow"]
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    x0, y0 = (xs + flow[0]).floor().long(), (ys + flow[1]).floor().long()
    ok = ~s["occluded"]
    for dx in (0, 1):
        for dy in (0, 1):
            ok &= s["layers2"][(y0 + dy).clamp(0, h - 1), (x0 + dx).clamp(0, w - 1)] == s["layers1"]
    return ok


def test_synthetic_flow_ground_truth_is_exact():
    ds = SyntheticFlowDataset(12, (64, 96), max_displacement=6.0, seed=0, textures="waves", photometric=False)
    errors, shifted, occluded = [], [], []
    for i in range(len(ds)):
        s = ds.sample(i)
        f1, f2 = s["frames"]
        flow = s["flow"]
        assert f1.min() > -1 and f1.max() < 1 and float(flow.norm(dim=0).max()) <= 6.0 + 1e-4
        assert s["valid"].all()
        ok = _visible_neighbours(s)
        errors.append((warp_frame(f2, flow) - f1.double()).abs().amax(0)[ok])
        shifted.append((warp_frame(f2, flow + 0.5) - f1.double()).abs().amax(0)[ok])
        occluded.append(float(s["occluded"].float().mean()))
    err = torch.cat(errors)
    assert float(err.mean()) < 0.01 and float(err.max()) < 0.06  # bilinear interpolation error only
    assert float(torch.cat(shifted).mean()) > 8 * float(err.mean())  # a half-pixel error is far larger
    assert 0.01 < np.mean(occluded) < 0.5  # objects occlude
    again = SyntheticFlowDataset(12, (64, 96), max_displacement=6.0, seed=0, textures="waves", photometric=False)[5]
    assert all(torch.equal(again[k], ds[5][k]) for k in again)  # deterministic per index
    assert not torch.equal(SyntheticFlowDataset(12, (64, 96), seed=1)[5]["flow"], again["flow"])


@pytest.mark.parametrize("textures", ["photos", "mixed"])
def test_continuous_renderer_is_exact_for_every_texture(textures):
    """Frame 2 rendered at x + flow(x) is frame 1 at x, for every pixel visible in both frames."""
    ds = SyntheticFlowDataset(6, (48, 64), max_displacement=8.0, seed=3, textures=textures, photometric=False)
    kinds = set()
    for i in range(len(ds)):
        s, scene = ds.sample(i), ds.scene(i)
        kinds |= {type(layer.texture).__name__ for layer in scene.layers}
        p = scene.grid()
        vis = (~s["occluded"]).reshape(-1).numpy()
        rgb1, _ = scene.render(p[vis], 0)
        rgb2, _ = scene.render(p[vis] + s["flow"].reshape(2, -1).T.double().numpy()[vis], 1)
        assert np.abs(rgb1 - rgb2).max() < 1e-5
        assert -1 < float(s["frames"].min()) and float(s["frames"].max()) < 1
    assert "PhotoTexture" in kinds and (textures == "photos") == (kinds == {"PhotoTexture"})


def test_photo_texture_is_the_photo_and_continuous():
    assert "stereo_motorcycle" not in PHOTOS and len(photos()) == len(PHOTOS)  # the validation pair stays unseen
    im = photos()[0]
    tex = PhotoTexture(photo=0, A=np.eye(2), b=np.zeros(2))
    q = np.array([[5.0, 7.0], [10.0, 3.0]])
    assert np.allclose(tex(q), im[[7, 3], [5, 10]], atol=1e-6)  # integer points: the pixels themselves
    assert np.allclose(tex(np.array([[5.5, 7.0]])), (im[7, 5] + im[7, 6]) / 2, atol=1e-6)  # halfway: the mean
    # mirrored edges: continuous and inside [0, size - 1] everywhere
    u = np.linspace(-300, 300, 60001)
    m = _mirror(u, 100)
    assert m.min() >= 0 and m.max() <= 99 and np.abs(np.diff(m)).max() <= 0.0100001


def test_photometric_change_is_a_gain_bias_and_noise():
    rng = np.random.default_rng(0)
    clean = rng.uniform(-0.8, 0.8, (2, 5000, 3))
    out = photometric_change(clean, np.random.default_rng(1))
    assert out.shape == clean.shape and np.abs(out).max() <= 0.999
    assert np.abs(out[0] - clean[0]).std() <= NOISE * 1.1  # frame 1: noise only
    for c in range(3):  # frame 2: a per-channel line with gain within the bounds
        slope, _ = np.polyfit(clean[1][:, c], out[1][:, c], 1)
        assert 1 - GAIN - 0.01 <= slope <= 1 + GAIN + 0.01
    a = SyntheticFlowDataset(4, (32, 48), seed=0, photometric=True)[2]
    b = SyntheticFlowDataset(4, (32, 48), seed=0, photometric=False)[2]
    assert torch.equal(a["flow"], b["flow"]) and not torch.equal(a["frames"], b["frames"])
    assert float((a["frames"] - b["frames"]).abs().mean()) < 0.1


def test_motion_statistics_and_arguments():
    ds = SyntheticFlowDataset(40, (32, 48), max_displacement=10.0, seed=0)
    largest = np.array([float(ds[i]["flow"].norm(dim=0).max()) for i in range(len(ds))])
    assert largest.max() <= 10.0 + 1e-4 and largest.max() > 6.0  # the bound holds and is used
    assert (largest < 5.0).mean() > 0.15  # small motions are common: the per-scene bound is drawn
    one_line_error(lambda: SyntheticFlowDataset(4, textures="noise"), "textures", "noise")
    one_line_error(lambda: FlowDataModule(textures="noise"), "textures", "noise")
    dm = FlowDataModule(num_train=4, num_val=2, batch_size=2, textures="waves", photometric=False)
    dm.setup()
    assert dm.train_set.textures == "waves" and not dm.train_set.photometric and dm.val_set.textures == "waves"
