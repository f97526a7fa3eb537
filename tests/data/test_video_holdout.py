"""The video split by time: training clips (frames and audio) never reach the held-out end that validation and
test clips come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perceiverio.data import VideoDataModule

FPS, SR = 25, 48_000
SPF = SR // FPS  # audio samples per frame


def write_counting_video(path: Path, n_frames: int) -> None:
    """Lossless video whose frame k is grey level 6·k and whose audio during frame k is the constant
    (k + 1) · 700 / 32768 (mono), so every pixel and sample says which frame it belongs to."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        vs = c.add_stream("ffv1", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 16, 16, "yuv444p"
        aus = c.add_stream("pcm_s16le", rate=SR)
        aus.layout = "mono"
        for k in range(n_frames):
            fr = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 6 * k, np.uint8), format="rgb24")
            fr.pts = k
            for p in vs.encode(fr):
                c.mux(p)
            af = av.AudioFrame.from_ndarray(np.full((1, SPF), (k + 1) * 700, np.int16), format="s16", layout="mono")
            af.sample_rate, af.pts = SR, k * SPF
            for p in aus.encode(af):
                c.mux(p)
        for s in (vs, aus):
            for p in s.encode():
                c.mux(p)


def frames_seen(batch: dict) -> list[set[int]]:
    """Per clip: the frame indices of its pictures and of its (non-silent) audio samples."""
    out = []
    for video, audio in zip(batch["image"], batch["audio"]):
        pictures = {round(float(f.mean()) * 255 / 6) for f in video}
        a = audio[:, 0] * 32768 / 700
        sounds = {round(float(v)) - 1 for v in a[a.abs() > 0.5]}
        out.append(pictures | sounds)
    return out


@pytest.mark.parametrize("audio_frames", [1, 6])  # the audio window: shorter than a clip, or longer (6 > 4 frames)
def test_training_never_sees_a_held_out_frame_or_sample(tmp_path, audio_frames):
    write_counting_video(tmp_path / "count.mkv", 40)
    dm = VideoDataModule(
        path=str(tmp_path / "count.mkv"),
        num_frames=4,
        image_size=(8, 8),
        audio_samples=audio_frames * SPF,
        num_classes=1,
        clips_per_epoch=64,
        batch_size=16,
        val_fraction=0.25,
    )
    dm.setup()
    assert dm.train_end == [30]  # the last 25% (10 of 40 frames) are held out
    train: set[int] = set()
    for _ in range(3):  # three epochs of random clips
        for b in dm.train_dataloader():
            train |= set().union(*frames_seen(b))
    val = set().union(*(s for b in dm.val_dataloader() for s in frames_seen(b)))
    test = set().union(*(s for b in dm.test_dataloader() for s in frames_seen(b)))
    assert max(train) == 29 and min(val) == 30 and min(test) == 30  # nothing shared; the boundary is reached
    assert train.isdisjoint(val | test)
    starts = [s for _, s in dm.test_clips]
    assert starts == [30, 34] and max(s for _, s in dm.val_clips) == 36  # consecutive test clips, val to the end
    assert dm.train_starts == [27 - (audio_frames - 4 if audio_frames > 4 else 0)]  # audio ends before frame 30


def test_a_video_too_short_to_split_is_shared_with_a_warning(tmp_path):
    write_counting_video(tmp_path / "short.mkv", 6)
    dm = VideoDataModule(path=str(tmp_path / "short.mkv"), num_frames=4, image_size=(8, 8), num_classes=1)
    with pytest.warns(UserWarning, match="fewer than 2 · num_frames"):
        dm.setup()
    assert dm.train_end == [6] and [s for _, s in dm.test_clips] == [0]


def test_audio_longer_than_the_training_part_is_refused(tmp_path):
    write_counting_video(tmp_path / "count.mkv", 20)
    dm = VideoDataModule(
        path=str(tmp_path / "count.mkv"), num_frames=4, image_size=(8, 8), audio_samples=20 * SPF, num_classes=1
    )
    with pytest.raises(ValueError, match="audio_samples=38400 reach from every training clip"):
        dm.setup()


def test_test_batches_are_the_same_every_time(tmp_path):
    write_counting_video(tmp_path / "count.mkv", 40)
    dm = VideoDataModule(path=str(tmp_path / "count.mkv"), num_frames=4, image_size=(8, 8), num_classes=1)
    a, b = list(dm.test_dataloader()), list(dm.test_dataloader())
    assert len(a) == 1 and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_normalize_audio_scales_by_the_training_rms(tmp_path):
    write_counting_video(tmp_path / "count.mkv", 40)
    kw = dict(path=str(tmp_path / "count.mkv"), num_frames=4, image_size=(8, 8), num_classes=1, audio_samples=SPF)
    plain, scaled = VideoDataModule(**kw), VideoDataModule(**kw, normalize_audio=True)
    plain.setup(), scaled.setup()
    end = scaled.train_end[0]  # frames [0, end) train: their audio is (k + 1) · 700 / 32768 for frame k
    rms = np.sqrt(np.mean((np.arange(1, end + 1) * 700 / 32768) ** 2))
    assert plain.audio_gain == 1.0 and scaled.audio_gain == pytest.approx(1 / rms, rel=1e-3)
    for d in [(0, 3), scaled.test_clips[0]]:  # a training clip and a held-out one: the same gain
        torch.testing.assert_close(scaled.clip(d)["audio"], plain.clip(d)["audio"] * scaled.audio_gain)
