"""PNG files with 16 bits per channel, read and written with numpy and zlib (Pillow reads 16-bit colour PNGs as
8-bit, dropping the low byte, which KITTI's flow maps need).

:func:`read_png` decodes non-interlaced greyscale, greyscale + alpha, RGB and RGBA images of 8 or 16 bits per
channel (every PNG row filter); :func:`write_png` writes them. Palette images, bit depths below 8 and interlaced
(Adam7) files raise ``ValueError``: read those with Pillow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> channels (greyscale, RGB, greyscale + alpha, RGBA)
COLOUR_TYPES = {c: t for t, c in CHANNELS.items()}
FILTERS = ("none", "sub", "up", "average", "paeth")  # PNG row filter types 0..4


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth predictor of int arrays: whichever of left ``a``, up ``b``, up-left ``c`` is nearest to a+b-c."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _predictions(kinds: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Each filter's prediction from the left/up/up-left bytes ``[N, bpp]``, chosen per row by ``kinds`` ``[N]``."""
    options = np.stack([np.zeros_like(a), a, b, (a + b) // 2, _paeth(a, b, c)])  # [5, N, bpp]
    return options[kinds, np.arange(len(kinds))]


def _unfilter(filtered: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Undo the row filters: ``filtered`` uint8 ``[H, W, bpp]`` (bytes of each pixel), ``kinds`` ``[H]``.

    A byte depends on its left, upper and upper-left neighbours, so the anti-diagonals ``y + x = d`` are
    reconstructed one after another, each in one vectorised step (H + W - 1 steps)."""
    h, w, bpp = filtered.shape
    out = np.zeros((h + 1, w + 1, bpp), np.int32)  # out[y + 1, x + 1] = byte of pixel (y, x); zero borders
    data = filtered.astype(np.int32)
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
        x = d - y
        a, b, c = out[y + 1, x], out[y, x + 1], out[y, x]
        out[y + 1, x + 1] = (data[y, x] + _predictions(kinds[y], a, b, c)) & 255
    return out[1:, 1:].astype(np.uint8)


def read_png(path: str | Path) -> np.ndarray:
    """A PNG file -> ``[H, W, C]`` (C = 1, 2, 3 or 4 channels), uint16 for 16-bit files, uint8 for 8-bit ones."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read PNG file {str(p)!r}: {e.strerror or e}") from None
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{str(p)!r} is not a PNG file (it does not start with the PNG signature)")
    header, idat, at = None, [], len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if header is None or not idat:
        raise ValueError(f"PNG file {str(p)!r} has no IHDR or no IDAT chunk (truncated?)")
    w, h, depth, colour, _, _, interlace = header
    if depth not in (8, 16) or colour not in CHANNELS or interlace:
        raise ValueError(
            f"PNG file {str(p)!r}: bit depth {depth}, colour type {colour}, interlace {interlace}; expected a "
            "non-interlaced greyscale/RGB(A) image of 8 or 16 bits per channel (read other PNGs with Pillow)"
        )
    bpp = CHANNELS[colour] * depth // 8
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as e:
        raise ValueError(f"PNG file {str(p)!r}: corrupt image data ({e})") from None
    if raw.size != h * (1 + w * bpp):
        raise ValueError(f"PNG file {str(p)!r}: {raw.size} image bytes for a {w}×{h} image of {bpp} bytes/pixel")
    rows = raw.reshape(h, 1 + w * bpp)
    kinds = rows[:, 0].astype(np.int64)
    if (kinds > 4).any():
        raise ValueError(f"PNG file {str(p)!r}: unknown row filter type {int(kinds.max())}")
    pixels = _unfilter(rows[:, 1:].reshape(h, w, bpp), kinds)  # [H, W, bpp]
    if depth == 16:
        return pixels.reshape(h, w, -1, 2).view(">u2")[..., 0].astype(np.uint16)
    return pixels.reshape(h, w, -1)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png(path: str | Path, image: np.ndarray, filters: Sequence[int] = (2,)) -> None:
    """Write uint8 or uint16 ``[H, W]`` / ``[H, W, C]`` (C = 1..4) as an 8- or 16-bit PNG; row ``y`` uses the
    filter type ``filters[y % len(filters)]`` (0 none, 1 sub, 2 up, 3 average, 4 paeth)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in COLOUR_TYPES or a.dtype not in (np.uint8, np.uint16) or 0 in a.shape:
        raise ValueError(f"image must be uint8 or uint16 [H, W] or [H, W, 1..4], got {a.dtype} {list(a.shape)}")
    if not filters or any(f not in range(5) for f in filters):
        raise ValueError(f"filters must be PNG filter types in 0..4, got {list(filters)}")
    h, w, ch = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    pixels = np.ascontiguousarray(a, ">u2").view(np.uint8) if depth == 16 else a  # [H, W, bpp] big-endian
    pixels = pixels.reshape(h, w, -1).astype(np.int32)
    padded = np.pad(pixels, ((1, 0), (1, 0), (0, 0)))  # zero row above and column left
    left, up, upleft = padded[1:, :-1], padded[:-1, 1:], padded[:-1, :-1]
    kinds = np.array([filters[y % len(filters)] for y in range(h)])
    predicted = np.stack([_predictions(kinds[y : y + 1].repeat(w), left[y], up[y], upleft[y]) for y in range(h)])
    rows = np.concatenate([kinds[:, None], ((pixels - predicted) & 255).reshape(h, -1)], 1).astype(np.uint8)
    header = struct.pack(">IIBBBBB", w, h, depth, COLOUR_TYPES[ch], 0, 0, 0)
    with open(path, "wb") as out:
        out.write(SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
        out.write(_chunk(b"IEND", b""))
