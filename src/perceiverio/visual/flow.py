"""Optical flow as colour: the Middlebury colour coding (Baker et al., "A Database and Evaluation Methodology for
Optical Flow", 2011) and a picture with its legend.

The hue is the flow's direction on a colour wheel of 55 hues: 15 from red to yellow, 6 yellow to green, 4 green to
cyan, 11 cyan to blue, 13 blue to magenta and 6 magenta back to red; the saturation is the magnitude divided by
the largest magnitude (``max_magnitude``): no motion is white, the largest motion the fully saturated hue. Vectors
are in pixels with ``u`` to the right and ``v`` down (image coordinates): +u is red, -u cyan-blue, +v yellow, -v
blue-violet.
"""

from __future__ import annotations

import os

import numpy as np

from .files import atomic_write

#: hues per segment of the wheel: red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red
SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def colour_wheel() -> np.ndarray:
    """The wheel's 55 colours, ``[55, 3]`` float64 in [0, 255] (R, G, B), from red through yellow, green, cyan,
    blue and magenta; within a segment one channel ramps by ``floor(255 · i / n)``."""
    rows = []
    for name, n in SEGMENTS:
        ramp = np.floor(255.0 * np.arange(n) / n)
        up, down, full, zero = ramp, 255.0 - ramp, np.full(n, 255.0), np.zeros(n)
        rgb = {
            "RY": (full, up, zero),
            "YG": (down, full, zero),
            "GC": (zero, full, up),
            "CB": (zero, down, full),
            "BM": (up, zero, full),
            "MR": (full, zero, down),
        }[name]
        rows.append(np.stack(rgb, axis=1))
    return np.concatenate(rows)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """``flow`` ``[H, W, 2]`` (or ``[2, H, W]``) pixels ``(u, v)`` -> ``[H, W, 3]`` uint8 colours.

    ``max_magnitude``: the magnitude drawn fully saturated (default: the largest finite magnitude of ``flow``);
    longer vectors are drawn darker (×0.75), as in the reference code. Non-finite vectors are black."""
    flow = as_array(flow, "flow")
    if flow.ndim != 3 or 2 not in (flow.shape[0], flow.shape[-1]):
        raise ValueError(f"flow must be [H, W, 2] or [2, H, W], got shape {tuple(flow.shape)}")
    if flow.shape[-1] != 2:
        flow = np.moveaxis(flow, 0, -1)
    bad = ~np.isfinite(flow).all(-1)
    u, v = np.where(bad, 0.0, flow[..., 0]), np.where(bad, 0.0, flow[..., 1])
    radius = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(radius.max()) if radius.size else 0.0
    elif (
        isinstance(max_magnitude, bool)
        or not isinstance(max_magnitude, (int, float, np.number))
        or not np.isfinite(max_magnitude)
        or max_magnitude < 0
    ):
        raise ValueError(f"max_magnitude must be a finite number >= 0, got {max_magnitude!r}")
    scale = max(float(max_magnitude), np.finfo(np.float64).eps)
    u, v, radius = u / scale, v / scale, radius / scale
    wheel = colour_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # (-1, 1]
    position = (angle + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % n
    f = (position - k0)[..., None]
    colour = ((1.0 - f) * wheel[k0 % n] + f * wheel[k1]) / 255.0
    inside = (radius <= 1.0)[..., None]
    colour = np.where(inside, 1.0 - radius[..., None] * (1.0 - colour), colour * 0.75)
    out = np.floor(255.0 * colour).clip(0, 255).astype(np.uint8)
    out[bad] = 0
    return out


def as_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 array; a TypeError naming ``name`` when it is not numbers."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}") from None


def wheel_legend(size: int) -> np.ndarray:
    """The colour key: ``[size, size, 3]`` uint8, the coding of every vector of a disc of radius 1 (the largest
    magnitude) on white; +u points right, +v down."""
    r = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(r, r)
    rgb = flow_to_rgb(np.stack([u, v], -1), max_magnitude=1.0)
    rgb[np.hypot(u, v) > 1.0] = 255
    return rgb


def write_flow_png(path: str | os.PathLike, flow: np.ndarray, max_magnitude: float | None = None) -> tuple[int, int]:
    """Write the colour-coded ``flow`` (:func:`flow_to_rgb`) as a PNG with a legend panel on its right: the colour
    wheel and the magnitude drawn fully saturated. Returns the picture's ``(width, height)``: the flow's width plus
    the panel's (its height, at least 96 pixels), and the flow's height (at least the panel's)."""
    from PIL import Image, ImageDraw

    rgb = flow_to_rgb(flow, max_magnitude)
    h, w = rgb.shape[:2]
    if max_magnitude is None:
        f = np.asarray(flow, dtype=np.float64)
        f = f if f.shape[-1] == 2 else np.moveaxis(f, 0, -1)
        mags = np.hypot(f[..., 0], f[..., 1])
        max_magnitude = float(mags[np.isfinite(mags)].max()) if np.isfinite(mags).any() else 0.0
    panel = max(96, min(h, 160))
    height = max(h, panel)
    canvas = Image.new("RGB", (w + panel, height), "white")
    canvas.paste(Image.fromarray(rgb), (0, 0))
    wheel = panel - 24
    canvas.paste(Image.fromarray(wheel_legend(wheel)), (w + 12, 4))
    draw = ImageDraw.Draw(canvas)
    draw.text((w + 4, wheel + 6), f"max {max_magnitude:.3g} px", fill=(0, 0, 0))
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return canvas.size


__all__ = ["SEGMENTS", "colour_wheel", "flow_to_rgb", "wheel_legend", "write_flow_png"]
