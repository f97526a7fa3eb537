"""Reconstructions as files: a side-by-side frame strip (PNG), a video (MP4 through PyAV) and audio (16-bit WAV).
Arrays in (frames ``[T, H, W, 3]`` uint8 or floats in [0, 1]; audio floats in [-1, 1]), files out, each written
atomically."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from .files import atomic_write

LABEL_HEIGHT = 14  # pixels of the text line under each row and under the strip


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as uint8: uint8 unchanged, floats taken as [0, 1] (clipped) and rounded."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype.kind not in "biuf":
        raise TypeError(f"frames must be an array of numbers, got {frames.dtype} values")
    values = np.nan_to_num(frames.astype(np.float64), nan=0.0)  # NaN: black
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_frames(name: str, frames: np.ndarray) -> np.ndarray:
    try:
        frames = to_uint8(frames)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: {e}") from None
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"{name} must be [T, H, W, 3] frames, got shape {tuple(frames.shape)}")
    return frames


def strip_scale(height: int, minimum: int = 64) -> int:
    """The integer factor that makes frames of ``height`` at least ``minimum`` pixels high (1 for larger ones)."""
    return max(1, -(-minimum // max(int(height), 1)))


def write_strip(
    path: str | os.PathLike, original: np.ndarray, reconstruction: np.ndarray, caption: str = ""
) -> tuple[int, int]:
    """A PNG of two rows of ``T`` frames, ``original`` above ``reconstruction`` (each ``[T, H, W, 3]``), enlarged
    by :func:`strip_scale` (nearest neighbour: the pixels as the model sees them), with a 2-pixel gap between
    frames, each row named, and ``caption`` (e.g. the PSNR) under the strip. Returns ``(width, height)`` =
    ``(T·s·W + 2(T-1), 2·(s·H + LABEL_HEIGHT) + LABEL_HEIGHT)`` for the scale ``s``."""
    from PIL import Image, ImageDraw

    a, b = _check_frames("original", original), _check_frames("reconstruction", reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"original {tuple(a.shape)} and reconstruction {tuple(b.shape)} differ in shape")
    t, h, w = a.shape[:3]
    s = strip_scale(h)
    width, row = t * s * w + 2 * (t - 1), s * h + LABEL_HEIGHT
    canvas = Image.new("RGB", (width, 2 * row + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (frames, name) in enumerate(((a, "original"), (b, "reconstruction"))):
        draw.text((2, r * row + 1), name, fill=(0, 0, 0))
        for i, frame in enumerate(frames):
            img = Image.fromarray(frame).resize((s * w, s * h), Image.NEAREST)
            canvas.paste(img, (i * (s * w + 2), r * row + LABEL_HEIGHT))
    draw.text((2, 2 * row + 1), caption, fill=(0, 0, 0))
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return canvas.size


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Encode ``frames`` ``[T, H, W, 3]`` as an MP4 (MPEG-4 part 2 through PyAV, every frame a key frame at high
    quality: small clips, no dependence on an H.264 encoder being installed). Odd sizes are padded by one pixel
    (the codec needs even sides)."""
    import av

    frames = _check_frames("frames", frames)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    t, h, w = frames.shape[:3]
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")

    def write(tmp: str) -> None:
        from fractions import Fraction

        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            stream.options = {"qscale": "2", "g": "1"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_write(path, write, suffix=".mp4")


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono ``audio`` ``[S]`` (floats in [-1, 1], clipped) as 16-bit PCM WAV at ``sample_rate`` Hz."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    pcm = (np.clip(np.nan_to_num(audio), -1.0, 1.0) * 32767.0).round().astype("<i2")

    def write(tmp: str) -> None:
        with wave.open(tmp, "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(int(sample_rate))
            f.writeframes(pcm.tobytes())

    return atomic_write(path, write)


__all__ = ["strip_scale", "to_uint8", "write_mp4", "write_strip", "write_wav"]
