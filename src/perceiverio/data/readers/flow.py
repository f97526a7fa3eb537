"""Optical-flow files: Middlebury ``.flo`` read/write, FlyingChairs-style folders of frame pairs, the embedded
Middlebury stereo pair of scikit-image, and crop/resize helpers that keep flow vectors in pixels of the new grid.

``.flo`` layout (little-endian): the float32 tag 202021.25 (bytes ``PIEH``), int32 width, int32 height, then
``H × W × 2`` float32 (u, v) in row order. Values with |u| or |v| ≥ 1e9 mean "unknown" (Middlebury convention).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FLO_TAG = 202021.25
UNKNOWN_FLOW = 1e9  # Middlebury: components at or above this are unknown
# FlyingChairs release naming (NNNNN_img1.ppm, NNNNN_img2.ppm, NNNNN_flow.flo) and the flownet2 examples'
# (NNNNNNN-img0.ppm, NNNNNNN-img1.ppm, NNNNNNN-gt.flo)
_PAIR_PATTERNS = (
    (re.compile(r"^(.*?)[-_]img0$"), "img0", "img1", "gt"),
    (re.compile(r"^(.*?)[-_]img1$"), "img1", "img2", "flow"),
)
_FRAME_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_flo(path: str | Path) -> np.ndarray:
    """A ``.flo`` file -> float32 ``[H, W, 2]`` (u, v) in pixels."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read flow file {str(p)!r}: {e.strerror or e}") from None
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(FLO_TAG):
        raise ValueError(f"{str(p)!r} is not a Middlebury .flo file (bad tag {data[:4]!r}; expected b'PIEH')")
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
        raise ValueError(f"flow file {str(p)!r}: header {w}×{h} does not match its {len(data) - 12} data bytes")
    return np.frombuffer(data, "<f4", offset=12).reshape(h, w, 2).astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray | torch.Tensor) -> None:
    """Write ``[H, W, 2]`` (or ``[2, H, W]``) flow as ``.flo``."""
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    if f.ndim == 3 and f.shape[0] == 2 and f.shape[-1] != 2:
        f = f.transpose(1, 2, 0)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise ValueError(f"flow must have shape [H, W, 2] or [2, H, W], got {list(f.shape)}")
    h, w = f.shape[:2]
    with open(path, "wb") as out:
        out.write(np.array([FLO_TAG], "<f4").tobytes() + np.array([w, h], "<i4").tobytes())
        out.write(np.ascontiguousarray(f, dtype="<f4").tobytes())


def read_frame(path: str | Path) -> np.ndarray:
    """An image file -> uint8 RGB ``[H, W, 3]`` (Pillow)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None


def find_flow_pairs(folder: str | Path) -> list[tuple[Path, Path, Path]]:
    """``[(frame 1, frame 2, flow)]`` of a folder (searched recursively) of FlyingChairs-style triples:
    ``NAME-img0.ppm``/``-img1.ppm``/``-gt.flo`` or ``NAME_img1.ppm``/``_img2.ppm``/``_flow.flo`` (any image
    extension Pillow reads; ``-`` and ``_`` both accepted). Sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(
            f"flow path {str(root)!r} is not a folder; expected FlyingChairs-style pairs "
            "(NAME-img0.ppm, NAME-img1.ppm, NAME-gt.flo)"
        )
    triples = []
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in _FRAME_EXTENSIONS:
            continue
        for pattern, _first, second, flow in _PAIR_PATTERNS:
            m = pattern.match(f.stem)
            if not m:
                continue
            sep = f.stem[len(m.group(1))]
            img2 = f.with_name(f"{m.group(1)}{sep}{second}{f.suffix}")
            flo = f.with_name(f"{m.group(1)}{sep}{flow}.flo")
            if img2.is_file() and flo.is_file():
                triples.append((f, img2, flo))
                break
    if not triples:
        raise ValueError(
            f"flow folder {str(root)!r} has no frame pairs with flow (NAME-img0.ppm, NAME-img1.ppm, "
            "NAME-gt.flo or NAME_img1.ppm, NAME_img2.ppm, NAME_flow.flo)"
        )
    return triples


def center_crop_box(h: int, w: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the largest centred box with the aspect ratio of ``size`` = (H, W)."""
    th, tw = size
    if w * th >= h * tw:  # wider than the target: crop the width
        ch, cw = h, max(1, min(w, int(round(h * tw / th))))
    else:
        ch, cw = max(1, min(h, int(round(w * th / tw)))), w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[..., C, h, w]`` float -> ``[..., C, H, W]``: centred crop to the aspect ratio of ``size``, then bilinear
    resizing (antialiased when shrinking)."""
    h, w = frames.shape[-2:]
    top, left, ch, cw = center_crop_box(h, w, size)
    x = frames[..., top : top + ch, left : left + cw]
    if (ch, cw) == tuple(size):
        return x.contiguous()
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=ch > size[0] or cw > size[1])
    return x.reshape(*lead, *x.shape[-3:])


def resize_flow(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop/resize ``flow`` ``[2, h, w]`` and ``valid`` ``[h, w]`` bool like :func:`resize_frames` does frames:
    vectors are scaled by the resize factors (u by W/w', v by H/h') so that they stay in pixels of the new grid;
    invalid pixels are left out of the interpolation (the output is the weighted mean of the valid ones), and an
    output pixel is valid when at least half of its interpolation weight comes from valid pixels."""
    h, w = flow.shape[-2:]
    top, left, ch, cw = center_crop_box(h, w, size)
    fl = flow[:, top : top + ch, left : left + cw].float()
    m = valid[top : top + ch, left : left + cw].float()
    if (ch, cw) == tuple(size):
        return fl.contiguous(), m > 0.5
    shrink = ch > size[0] or cw > size[1]
    fl = torch.where(m[None] > 0, fl, torch.zeros_like(fl))
    both = torch.cat([fl * m[None], m[None]])[None]
    both = F.interpolate(both, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)[0]
    weight = both[2]
    out = both[:2] / weight.clamp_min(1e-6)
    scale = torch.tensor([size[1] / cw, size[0] / ch], dtype=out.dtype)[:, None, None]
    ok = weight >= 0.5
    return torch.where(ok[None], out * scale, torch.zeros_like(out)), ok


def middlebury_motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury 2014 "motorcycle" stereo pair as optical flow from the left to the right view:
    ``(left [H, W, 3] uint8, right, flow [H, W, 2] float32, valid [H, W] bool)`` with u = -disparity, v = 0 where
    the disparity is finite (a left pixel at x is seen at x - d in the right view)."""
    try:
        from skimage import data
    except ImportError:  # pragma: no cover - an optional dependency
        raise ValueError(
            "the Middlebury validation pair needs scikit-image: pip install 'perceiverio[vision]'"
        ) from None
    left, right, disp = data.stereo_motorcycle()
    valid = np.isfinite(disp)
    flow = np.zeros((*disp.shape, 2), dtype=np.float32)
    flow[..., 0] = np.where(valid, -disp, 0.0)
    return left, right, flow, valid
