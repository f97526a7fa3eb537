"""The Middlebury flow colour coding against colours computed by hand from its published definition, and the
picture/media writers' files."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from perceiverio.visual.flow import colour_wheel, flow_to_rgb, wheel_legend, write_flow_png
from perceiverio.visual.media import strip_scale, write_mp4, write_strip, write_wav


def test_colour_wheel_has_the_55_published_hues():
    wheel = colour_wheel()
    assert wheel.shape == (55, 3)
    # segment starts: red, yellow, green, cyan, blue, magenta
    for index, rgb in [(0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255))]:
        assert tuple(wheel[index]) == rgb, index
    assert tuple(wheel[36]) == (0, 0, 255) and tuple(wheel[49]) == (255, 0, 255)
    assert tuple(wheel[1]) == (255, 17, 0)  # floor(255 · 1 / 15)
    assert tuple(wheel[54]) == (255, 0, 43)  # MR, i = 5: 255 - floor(255 · 5 / 6)


@pytest.mark.parametrize(
    ("u", "v", "rgb"),
    [
        (0.0, 0.0, (255, 255, 255)),  # no motion: white
        (1.0, 0.0, (255, 0, 0)),  # +u (right) at the largest magnitude: red, hue 0
        (-1.0, 0.0, (0, 209, 255)),  # -u: hue 27, CB i = 2: 255 - floor(510 / 11)
        (0.0, 1.0, (255, 229, 0)),  # +v (down): halfway between hues 13 (255, 221, 0) and 14 (255, 238, 0)
        (0.0, -1.0, (88, 0, 255)),  # -v (up): halfway between hues 40 (78, 0, 255) and 41 (98, 0, 255)
        (0.5, 0.0, (255, 127, 127)),  # half the magnitude: halfway to white
        (2.0, 0.0, (191, 0, 0)),  # beyond the largest magnitude: darkened, 0.75 · 255
        (np.nan, 0.0, (0, 0, 0)),  # unknown: black
    ],
)
def test_flow_colours_match_hand_computed_values(u, v, rgb):
    flow = np.array([[[u, v]]])
    assert tuple(flow_to_rgb(flow, max_magnitude=1.0)[0, 0]) == rgb


def test_colours_are_normalised_by_the_largest_magnitude():
    flow = np.random.default_rng(0).normal(size=(5, 7, 2))
    rgb = flow_to_rgb(flow)
    assert np.array_equal(rgb, flow_to_rgb(flow * 3.0)) and np.array_equal(rgb, flow_to_rgb(flow.transpose(2, 0, 1)))
    longest = np.unravel_index(np.hypot(flow[..., 0], flow[..., 1]).argmax(), flow.shape[:2])
    assert rgb[longest].min() < 60  # the largest vector is fully saturated
    with pytest.raises(ValueError, match=r"flow must be \[H, W, 2\]"):
        flow_to_rgb(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="max_magnitude must be"):
        flow_to_rgb(flow, max_magnitude=-1.0)


def test_flow_png_has_the_flow_and_its_legend(tmp_path):
    from PIL import Image

    legend = wheel_legend(33)
    assert tuple(legend[16, 16]) == (255, 255, 255) and tuple(legend[0, 0]) == (255, 255, 255)
    assert legend[16, 32, 0] == 255 and legend[16, 32, 1:].max() < 15  # the right edge: +u, red
    assert legend[32, 16, 0] == 255 and legend[32, 16, 1] > 200 and legend[32, 16, 2] < 15  # the bottom: +v, yellow
    flow = np.zeros((120, 50, 2))
    flow[..., 0] = 4.0
    size = write_flow_png(tmp_path / "f.png", flow)
    with Image.open(tmp_path / "f.png") as im:
        assert im.size == size == (50 + 120, 120)
        assert im.getpixel((10, 10)) == (255, 0, 0)  # the flow, at its own pixels
    assert not [p for p in tmp_path.iterdir() if p.name != "f.png"]  # no temporary file left


def test_strip_mp4_and_wav_open(tmp_path):
    import av
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = rng.random((3, 16, 20, 3))
    assert strip_scale(16) == 4 and strip_scale(100) == 1
    size = write_strip(tmp_path / "s.png", frames, frames[::-1], "PSNR 12.00 dB")
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == size == (3 * 4 * 20 + 4, 2 * (4 * 16 + 14) + 14)
        assert im.getpixel((0, 14)) == tuple(int(x) for x in (frames[0, 0, 0] * 255 + 0.5))
    with pytest.raises(ValueError, match="differ in shape"):
        write_strip(tmp_path / "t.png", frames, frames[:2])
    grey = np.full((5, 15, 17, 3), 128, np.uint8)  # odd sides: padded to even
    write_mp4(tmp_path / "v.mp4", grey, fps=10)
    with av.open(str(tmp_path / "v.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (16, 18, 3) and abs(decoded[0].mean() - 128) < 3
    audio = np.sin(np.arange(480) / 5.0) * 0.5
    write_wav(tmp_path / "a.wav", audio, 8000)
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (8000, 1, 2, 480)
        pcm = np.frombuffer(w.readframes(480), "<i2") / 32767.0
    assert np.abs(pcm - audio).max() < 1e-4
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        write_wav(tmp_path / "b.wav", audio, 0)
