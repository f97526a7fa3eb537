"""Optical-flow files: Middlebury ``.flo`` and KITTI 16-bit PNG flow read/write, the frame pairs with ground truth
of FlyingChairs, MPI-Sintel and KITTI folders (:func:`find_flow_pairs`), the embedded Middlebury stereo pair of
scikit-image, and crop/resize helpers that keep flow vectors in pixels of the new grid.

``.flo`` layout (little-endian): the float32 tag 202021.25 (bytes ``PIEH``), int32 width, int32 height, then
``H × W × 2`` float32 (u, v) in row order. Values with |u| or |v| ≥ 1e9 mean "unknown" (Middlebury convention).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .png import read_png, write_png

FLO_TAG = 202021.25
UNKNOWN_FLOW = 1e9  # Middlebury: components at or above this are unknown
# FlyingChairs release naming (NNNNN_img1.ppm, NNNNN_img2.ppm, NNNNN_flow.flo) and the flownet2 examples'
# (NNNNNNN-img0.ppm, NNNNNNN-img1.ppm, NNNNNNN-gt.flo)
_PAIR_PATTERNS = (
    (re.compile(r"^(.*?)[-_]img0$"), "img0", "img1", "gt"),
    (re.compile(r"^(.*?)[-_]img1$"), "img1", "img2", "flow"),
)
_FRAME_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CHAIRS_SPLIT = "FlyingChairs_train_val.txt"  # the release's split: one 1 (training) or 2 (validation) per pair
SINTEL_PASSES = ("clean", "final")
KITTI_FRAMES = ("image_2", "colored_0")  # KITTI 2015, KITTI 2012
KITTI_FLOWS = ("flow_occ", "flow_noc")  # all pixels with ground truth; only the non-occluded ones
LAYOUTS_LOOKED_FOR = (
    "FlyingChairs (NAME_img1.ppm, NAME_img2.ppm, NAME_flow.flo or NAME-img0.ppm, NAME-img1.ppm, NAME-gt.flo), "
    "MPI-Sintel (training/clean|final/SCENE/frame_NNNN.png with training/flow/SCENE/frame_NNNN.flo) or "
    "KITTI 2012/2015 (training/image_2|colored_0/NNNNNN_10.png, _11.png with training/flow_occ/NNNNNN_10.png)"
)


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
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None


class FlowPair(NamedTuple):
    """One pair with ground truth: frame 1, frame 2 and the flow from 1 to 2 (a ``.flo`` file, or a KITTI
    16-bit ``.png``: :func:`read_flow` reads both)."""

    frame1: Path
    frame2: Path
    flow: Path


def _chairs_split(folder: Path, n: int) -> list[int] | None:
    """The labels (1 training, 2 validation) of the ``n`` pairs of ``folder`` in the official
    ``FlyingChairs_train_val.txt`` beside them or in the folder above; None when there is no such file."""
    for candidate in (folder / CHAIRS_SPLIT, folder.parent / CHAIRS_SPLIT):
        if candidate.is_file():
            words = candidate.read_text().split()
            labels = [int(v) if v in ("1", "2") else 0 for v in words]
            if len(labels) != n or 0 in labels:
                raise ValueError(
                    f"{str(candidate)!r} has {len(labels)} labels for the {n} FlyingChairs pairs of {str(folder)!r}; "
                    "expected one 1 (training) or 2 (validation) per pair, in name order (remove it to use every pair)"
                )
            return labels
    return None


def _chairs_pairs(root: Path, split: str | None) -> list[FlowPair]:
    """FlyingChairs-style triples under ``root``; with ``split``, only the pairs the official split file labels
    as training (1) or validation (2), in every folder that has one."""
    by_folder: dict[Path, list[FlowPair]] = {}
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
                by_folder.setdefault(f.parent, []).append(FlowPair(f, img2, flo))
                break
    pairs = []
    for folder, found in by_folder.items():
        labels = None if split is None else _chairs_split(folder, len(found))
        keep = {"train": 1, "val": 2}.get(split or "")
        pairs += found if labels is None else [p for p, k in zip(found, labels) if k == keep]
    return pairs


def _sintel_pairs(root: Path, sintel_pass: str) -> list[FlowPair]:
    """MPI-Sintel: every ``X/flow/SCENE/frame_NNNN.flo`` under ``root`` with ``X/PASS/SCENE/frame_NNNN.png``
    and ``frame_NNNN+1.png``."""
    pairs = []
    for flow_dir in sorted(root.rglob("flow")):
        base = flow_dir.parent
        passes = [p for p in SINTEL_PASSES if (base / p).is_dir()]
        if not flow_dir.is_dir() or not passes:
            continue
        if sintel_pass not in passes:
            raise ValueError(
                f"MPI-Sintel folder {str(base)!r} has no {sintel_pass!r} pass (found {', '.join(passes)}); "
                f"set sintel_pass to one of them"
            )
        for flo in sorted(flow_dir.glob("*/frame_*.flo")):
            number = flo.stem[len("frame_") :]
            if not number.isdigit():
                continue
            scene = base / sintel_pass / flo.parent.name
            a, b = (scene / f"frame_{int(number) + k:0{len(number)}d}.png" for k in (0, 1))
            if a.is_file() and b.is_file():
                pairs.append(FlowPair(a, b, flo))
    return pairs


def _kitti_pairs(root: Path) -> list[FlowPair]:
    """KITTI 2015 (``image_2``) and 2012 (``colored_0``): ``X/FRAMES/NNNNNN_10.png`` and ``_11.png`` with
    ``X/flow_occ/NNNNNN_10.png`` (``flow_noc`` when there is no ``flow_occ``)."""
    pairs = []
    bases = sorted({d.parent for name in KITTI_FLOWS for d in root.rglob(name) if d.is_dir()})
    for base in bases:
        flow_dir = next(base / n for n in KITTI_FLOWS if (base / n).is_dir())
        frames = next((base / n for n in KITTI_FRAMES if (base / n).is_dir()), None)
        if frames is None:
            continue
        for flow in sorted(flow_dir.glob("*_10.png")):
            a, b = (frames / f"{flow.stem[:-3]}_{k}.png" for k in (10, 11))
            if a.is_file() and b.is_file():
                pairs.append(FlowPair(a, b, flow))
    return pairs


def find_flow_pairs(folder: str | Path, sintel_pass: str = "clean", split: str | None = None) -> list[FlowPair]:
    """Every frame pair with ground-truth flow under ``folder`` (searched at any depth), sorted by path, in these
    layouts:

    * FlyingChairs: ``NAME_img1.ppm``/``_img2.ppm``/``_flow.flo`` (the release) or ``NAME-img0.ppm``/``-img1.ppm``/
      ``-gt.flo`` (any image extension Pillow reads; ``-`` and ``_`` both accepted). With ``split`` = ``"train"``
      or ``"val"``, a folder of pairs with the release's ``FlyingChairs_train_val.txt`` beside it (or one folder
      up) gives only the pairs it labels 1 (training) or 2 (validation, 640 pairs).
    * MPI-Sintel: ``X/PASS/SCENE/frame_NNNN.png`` and ``frame_NNNN+1.png`` with ``X/flow/SCENE/frame_NNNN.flo``,
      ``PASS`` = ``sintel_pass`` (``"clean"`` or ``"final"``); ``X`` is usually ``training``.
    * KITTI 2015 / 2012: ``X/image_2/NNNNNN_10.png`` and ``_11.png`` (2012: ``X/colored_0``) with
      ``X/flow_occ/NNNNNN_10.png`` (16-bit PNG, :func:`read_kitti_flow`; ``flow_noc`` when there is no
      ``flow_occ``).

    A ValueError names the layouts looked for when the folder holds none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"flow path {str(root)!r} is not a folder; expected a folder of {LAYOUTS_LOOKED_FOR}")
    if sintel_pass not in SINTEL_PASSES:
        raise ValueError(f"sintel_pass must be one of {', '.join(SINTEL_PASSES)}, got {sintel_pass!r}")
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be None, 'train' or 'val', got {split!r}")
    pairs = _chairs_pairs(root, split) + _sintel_pairs(root, sintel_pass) + _kitti_pairs(root)
    if not pairs:
        raise ValueError(f"flow folder {str(root)!r} has no frame pairs with flow; looked for {LAYOUTS_LOOKED_FOR}")
    return sorted(pairs)


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI flow map (16-bit RGB PNG: u = (R − 2¹⁵)/64, v = (G − 2¹⁵)/64, ground truth known where B > 0) ->
    ``(flow [H, W, 2] float32 (u, v) in pixels, zero where unknown; valid [H, W] bool)``."""
    a = read_png(path)
    if a.dtype != np.uint16 or a.shape[-1] != 3:
        raise ValueError(
            f"KITTI flow file {str(path)!r} must be a 16-bit RGB PNG, got {a.dtype.itemsize * 8}-bit with "
            f"{a.shape[-1]} channel(s)"
        )
    valid = a[..., 2] > 0
    flow = (a[..., :2].astype(np.float32) - 2.0**15) / 64.0  # [H, W, 2]
    return np.where(valid[..., None], flow, np.float32(0.0)), valid


def write_kitti_flow(path: str | Path, flow: np.ndarray | torch.Tensor, valid: np.ndarray | None = None) -> None:
    """Write ``[H, W, 2]`` flow (u, v in pixels) as a KITTI 16-bit PNG (rounded to 1/64 pixel, clipped to
    ±512); ``valid`` ``[H, W]`` bool (None: where the flow is finite). Unknown pixels are stored as (0, 0, 0),
    as KITTI's development kit does."""
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow, dtype=np.float64)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise ValueError(f"flow must have shape [H, W, 2], got {list(f.shape)}")
    known = np.isfinite(f).all(-1) if valid is None else np.asarray(valid, dtype=bool)
    if known.shape != f.shape[:2]:
        raise ValueError(f"valid must have shape {list(f.shape[:2])}, got {list(known.shape)}")
    encoded = np.clip(np.round(np.nan_to_num(f) * 64.0 + 2.0**15), 0, 65535)
    out = np.concatenate([encoded, np.ones_like(encoded[..., :1])], -1) * known[..., None]
    write_png(path, out.astype(np.uint16))


def read_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A ground-truth flow file -> ``(flow [H, W, 2] float32, valid [H, W] bool or None)``: ``.flo``
    (:func:`read_flo`; None: unknown values are marked in the flow itself) or a KITTI ``.png``
    (:func:`read_kitti_flow`)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        return read_flo(path), None
    if suffix == ".png":
        return read_kitti_flow(path)
    raise ValueError(f"flow file {str(path)!r}: expected a .flo file or a KITTI .png, got {suffix or 'no extension'}")


def frame_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, from its header (Pillow)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None


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
