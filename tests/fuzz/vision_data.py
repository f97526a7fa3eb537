"""Vision data-module entry points (images, optical flow, video): construct with generated arguments,
``setup("fit")``, draw one training batch. The sources are generated too, each written once per process under the
fuzz's temporary folder: a tiny valid one of each layout (class subfolders of images, IDX files, FlyingChairs
triples, short videos) and damaged variants (missing, a file for a folder, empty, junk or truncated files, a
header that lies about the data's size, labels out of range, a class without images)."""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from fuzz.data_modules import Source, _root
from hypothesis import strategies as st

from perceiverio.data.readers.image import write_idx

INT = dict(kind="int")
NAN, INF = float("nan"), float("inf")
# image sizes: wrong types and ranks, zero, negative, fractional, strings, bools, NaN, beyond any memory
BAD_SIZES = (
    (0, 8), (8, -1), (8,), (8, 8, 8), "8x8", 8, (8.5, 8), (True, 8), ("8", "8"), (NAN, 8), (INF, 8),
    (2**31, 2**31), (10**6, 10**6), (10**12, 4), [], (1, 1), (3, 40),
)  # fmt: skip
BAD_NAMES = (
    ("a", "a", "b"), ("a", "b"), "abc", ("a", "b", ""), ("a", "b", 3), ["x", "y", "z"],
    ("image", "audio", "label", "extra"), (None, "b", "c"),
)  # fmt: skip
BAD_FRACTIONS = (0.0, 1.0, -0.1, 1.5, NAN, INF, "0.1", 0.999, 1e-9, True)


def _pick(rng: torch.Generator, options: tuple):
    return options[int(torch.randint(len(options), (1,), generator=rng))]


def _junk(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _sources(kinds: tuple[str, ...], name: str) -> st.SearchStrategy:
    return st.sampled_from(kinds).map(lambda k: (f"source:{k}", Source(k, (name, str(_root())))))


def _folder(prefix: str, kind: str) -> Path:
    folder = _root() / f"{prefix}-{kind}"
    folder.mkdir(exist_ok=True)
    return folder


def _image(path: Path, h: int, w: int, mode: str = "RGB", seed: int = 0, format: str | None = None) -> Path:
    from PIL import Image

    shape = {"L": (h, w), "RGB": (h, w, 3), "RGBA": (h, w, 4)}[mode]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path, format=format)
    return path


def _png_claiming(path: Path, h: int, w: int) -> None:
    """A small PNG whose header claims ``h`` × ``w`` pixels (a decompression bomb's header, a short body)."""
    _image(path, 4, 4)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------------ images
def _classes(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> Path:
    """Class subfolders of small images in several modes and sizes (PNG, one JPEG per class)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            mode, suffix = (("RGB", ".png"), ("L", ".png"), ("RGBA", ".png"), ("RGB", ".jpg"))[i % 4]
            _image(root / name / f"{i}{suffix}", 5 + i, 7 - i % 3, mode, seed=10 * c + i)
    return root


def _idx(folder: Path, prefix: str, labels, images=None, gz: bool = True, label_dtype=np.uint8) -> None:
    labels = np.asarray(labels, dtype=label_dtype)
    if images is None:
        images = np.random.default_rng(len(labels)).integers(0, 256, (len(labels), 6, 6), dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


def _image_source(kind: str, f: Path) -> Path | None:
    if kind == "digits":
        return None
    if kind == "missing":
        return f / "nowhere"
    if kind == "file":
        return _image(f / "one.png", 6, 6)
    if kind in ("folder", "junk_png", "zero_png", "truncated_png", "bomb_png", "empty_class", "jpeg_as_png"):
        _classes(f)
    if kind == "junk_png":
        (f / "dog" / "junk.png").write_bytes(_junk(512))
    elif kind == "zero_png":
        (f / "cat" / "empty.png").write_bytes(b"")
    elif kind == "truncated_png":
        whole = _image(f / "cat" / "whole.png", 64, 64).read_bytes()
        (f / "cat" / "whole.png").write_bytes(whole[: len(whole) // 2])
    elif kind == "bomb_png":
        _png_claiming(f / "cat" / "bomb.png", 2**16, 2**16)
    elif kind == "jpeg_as_png":  # a JPEG under a .png name: Pillow reads by content
        _image(f / "dog" / "photo.png", 6, 6, format="JPEG")
    elif kind == "empty_class":
        (f / "bird").mkdir(exist_ok=True)
    elif kind == "no_images":
        for name in ("cat", "dog"):
            (f / name).mkdir(exist_ok=True)
            (f / name / "notes.txt").write_text("no images here\n")
    elif kind == "split":
        for part in ("train", "val", "test"):
            _classes(f / part, per_class=2)
    elif kind == "split_val_unknown":
        _classes(f / "train")
        _classes(f / "val", ("cat", "bird"), per_class=1)
    elif kind == "split_val_empty":
        _classes(f / "train")
        (f / "val" / "cat").mkdir(parents=True, exist_ok=True)
    elif kind == "idx":
        _idx(f, "train", [i % 3 for i in range(9)])
        _idx(f, "t10k", [2, 0, 1, 1])
    elif kind == "idx_train":
        _idx(f, "train", [i % 2 for i in range(8)], gz=False)
    elif kind == "idx_truncated":
        _idx(f, "train", [i % 2 for i in range(8)], gz=False)
        p = f / "train-images-idx3-ubyte"
        p.write_bytes(p.read_bytes()[:100])
    elif kind == "idx_gz_truncated":
        _idx(f, "train", [i % 2 for i in range(8)])
        p = f / "train-images-idx3-ubyte.gz"
        p.write_bytes(p.read_bytes()[:40])
    elif kind == "idx_gz_junk":
        _idx(f, "train", [i % 2 for i in range(8)])
        (f / "train-labels-idx1-ubyte.gz").write_bytes(_junk(300))
    elif kind == "idx_count":
        _idx(f, "train", [i % 2 for i in range(6)])
        write_idx(f / "train-labels-idx1-ubyte.gz", np.array([0, 1, 0, 1, 0], np.uint8))
    elif kind == "idx_negative":
        _idx(f, "train", [0, 1, -1, 1, 0, 1], label_dtype=np.int32)
    elif kind == "idx_huge_label":
        _idx(f, "train", [0, 1, 10**9, 1, 0, 1], label_dtype=np.int32)
    elif kind == "idx_test_range":  # a t10k label beyond the training classes: fine (ids 0..max)
        _idx(f, "train", [i % 2 for i in range(8)])
        _idx(f, "t10k", [0, 1, 7])
    elif kind == "idx_no_labels":
        write_idx(f / "train-images-idx3-ubyte", np.zeros((4, 6, 6), np.uint8))
    elif kind == "idx_magic":
        (f / "train-images-idx3-ubyte").write_bytes(_junk(400))
        write_idx(f / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    elif kind == "idx_overflow":  # dimensions whose product wraps around int64 to 0
        (f / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**22, 2**21, 2**21))
        write_idx(f / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    elif kind == "idx_header_big":
        (f / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 28, 28))
        write_idx(f / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    elif kind == "idx_rank":
        _idx(f, "train", [0, 1, 0, 1], images=np.zeros((4, 36), np.uint8))
    elif kind == "idx_float":  # float images in [0, 1] (or NaN): not pixel values 0..255
        images = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
        images[0, 0, 0] = NAN
        _idx(f, "train", [i % 2 for i in range(6)], images=images)
    elif kind == "idx_empty":
        _idx(f, "train", [], images=np.zeros((0, 6, 6), np.uint8))
    return f


@functools.cache
def image_path(kind: str) -> str | None:
    path = _image_source(kind, _folder("image", kind))
    return None if path is None else str(path)


IMAGE_VALID = ("digits", "folder", "idx_train")
IMAGE_SOURCES = (
    *IMAGE_VALID, "split", "idx", "idx_test_range", "jpeg_as_png",
    "missing", "file", "empty", "junk_png", "zero_png", "truncated_png", "bomb_png", "empty_class", "no_images",
    "split_val_unknown", "split_val_empty", "idx_truncated", "idx_gz_truncated", "idx_gz_junk", "idx_count",
    "idx_negative", "idx_huge_label", "idx_no_labels", "idx_magic", "idx_overflow", "idx_header_big", "idx_rank",
    "idx_float", "idx_empty",
)  # fmt: skip


def _image_module(path, image_size, channels, batch_size, val_fraction, num_workers, test_fraction):
    from perceiverio.data import ImageDataModule

    dm = ImageDataModule(
        path=image_path(path.kind) if isinstance(path, Source) else path,
        image_size=image_size,
        channels=channels,
        batch_size=batch_size,
        val_fraction=val_fraction,
        num_workers=num_workers,
        test_fraction=test_fraction,
    )
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


# -------------------------------------------------------------------------------------------------------- flow
def _flo(path: Path, flow: np.ndarray, header: tuple[int, int] | None = None, tag: bytes = b"PIEH") -> None:
    h, w = flow.shape[:2]
    w, h = header[::-1] if header is not None else (w, h)
    path.write_bytes(tag + np.array([w, h], "<i4").tobytes() + np.ascontiguousarray(flow, "<f4").tobytes())


def _triples(f: Path, n: int = 2, h: int = 12, w: int = 16) -> list[tuple[Path, Path, Path]]:
    out = []
    rng = np.random.default_rng(3)
    for i in range(1, n + 1):
        a = _image(f / f"{i:07d}-img0.ppm", h, w, seed=i)
        b = _image(f / f"{i:07d}-img1.ppm", h, w, seed=100 + i)
        _flo(f / f"{i:07d}-gt.flo", rng.normal(0.0, 2.0, (h, w, 2)).astype(np.float32))
        out.append((a, b, f / f"{i:07d}-gt.flo"))
    return out


def _flow_source(kind: str, f: Path) -> Path | None:
    if kind == "synthetic":
        return None
    if kind == "missing":
        return f / "nowhere"
    if kind == "file":
        return _image(f / "0000001-img0.ppm", 6, 6)
    if kind == "empty":
        return f
    if kind.startswith("kitti") or kind == "sintel_final_only":
        return _flow_layouts(kind, f)
    (a, b, flo), *_ = _triples(f)
    good = np.random.default_rng(0).normal(size=(12, 16, 2)).astype(np.float32)
    if kind == "flo_truncated":
        flo.write_bytes(flo.read_bytes()[:200])
    elif kind == "flo_magic":
        _flo(flo, good, tag=b"JUNK")
    elif kind == "flo_size":
        _flo(flo, good, header=(20, 20))
    elif kind == "flo_negative":
        _flo(flo, good, header=(-12, 16))
    elif kind == "flo_huge_header":
        _flo(flo, good, header=(2**30, 2**30))
    elif kind == "flo_short":
        flo.write_bytes(b"PIEH\x01")
    elif kind == "flo_nonfinite":  # unknown values: left out of the loss, never NaN in the batch
        bad = good.copy()
        bad[0, 0, 0], bad[1, 1, 1], bad[2, 2] = NAN, INF, 1e30
        _flo(flo, bad)
    elif kind == "size_mismatch":
        _flo(flo, good[:10, :10])
    elif kind == "frames_differ":
        _image(b, 12, 14)
    elif kind == "ppm_junk":
        a.write_bytes(_junk(300))
    elif kind == "ppm_empty":
        b.write_bytes(b"")
    elif kind == "ppm_truncated":
        a.write_bytes(a.read_bytes()[:200])
    elif kind == "ppm_bomb":  # a PPM header claiming 100000 × 100000 pixels
        a.write_bytes(b"P6\n100000 100000\n255\n" + _junk(300))
    elif kind == "split_short":
        (f / "FlyingChairs_train_val.txt").write_text("1\n")
    elif kind == "split_all_val":
        (f / "FlyingChairs_train_val.txt").write_text("2\n2\n")
    elif kind == "one_pair":
        for p in f.glob("0000002-*"):
            p.unlink()
    return f


def _flow_layouts(kind: str, f: Path) -> Path:
    from perceiverio.data.readers.flow import write_flo
    from perceiverio.data.readers.png import write_png

    if kind == "sintel_final_only":  # the default sintel_pass="clean" is absent
        (f / "training" / "flow" / "alley").mkdir(parents=True, exist_ok=True)
        write_flo(f / "training" / "flow" / "alley" / "frame_0001.flo", np.zeros((8, 8, 2), np.float32))
        _image(f / "training" / "final" / "alley" / "frame_0001.png", 8, 8)
        _image(f / "training" / "final" / "alley" / "frame_0002.png", 8, 8)
        return f
    t = f / "training"
    _image(t / "image_2" / "000000_10.png", 8, 12)
    _image(t / "image_2" / "000000_11.png", 8, 12)
    (t / "flow_occ").mkdir(parents=True, exist_ok=True)
    flow = t / "flow_occ" / "000000_10.png"
    if kind == "kitti":
        write_png(flow, np.full((8, 12, 3), 2**15, np.uint16))
    elif kind == "kitti_8bit":
        _image(flow, 8, 12)
    elif kind == "kitti_junk":
        flow.write_bytes(_junk(200))
    elif kind == "kitti_corrupt":  # a PNG signature and header, then junk for the image data
        write_png(flow, np.full((8, 12, 3), 2**15, np.uint16))
        data = bytearray(flow.read_bytes())
        data[41:60] = _junk(19)
        flow.write_bytes(bytes(data))
    return f


@functools.cache
def flow_path(kind: str) -> str | None:
    path = _flow_source(kind, _folder("flow", kind))
    return None if path is None else str(path)


FLOW_SOURCES = (
    "synthetic", "chairs", "kitti", "flo_nonfinite",
    "missing", "file", "empty", "flo_truncated", "flo_magic", "flo_size", "flo_negative", "flo_huge_header",
    "flo_short", "size_mismatch", "frames_differ", "ppm_junk", "ppm_empty", "ppm_truncated", "ppm_bomb",
    "split_short", "split_all_val", "one_pair", "kitti_8bit", "kitti_junk", "kitti_corrupt", "sintel_final_only",
)  # fmt: skip


def _flow_module(path, image_size, num_train, num_val, batch_size, max_displacement, val_source, textures):
    from perceiverio.data import FlowDataModule

    dm = FlowDataModule(
        path=flow_path(path.kind) if isinstance(path, Source) else path,
        image_size=image_size,
        num_train=num_train,
        num_val=num_val,
        batch_size=batch_size,
        max_displacement=max_displacement,
        val_source=val_source,
        textures=textures,
    )
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


# ------------------------------------------------------------------------------------------------------- video
def _video(path: Path, frames: int = 24, h: int = 16, w: int = 16, audio: bool = True, video: bool = True) -> Path:
    """A short test video written with PyAV (MPEG-4 Part 2 with 16 kHz PCM audio in Matroska)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(frames)
    with av.open(str(path), "w") as c:
        if video:
            vs = c.add_stream("mpeg4", rate=25)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            a = c.add_stream("pcm_s16le", rate=16000)
            a.layout = "mono"
        if video:
            for _ in range(frames):
                fr = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
                for p in vs.encode(fr):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if audio:
            samples = (np.sin(np.arange(16000 * frames // 25) * 0.05) * 8000).astype(np.int16)[None]
            fr = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            fr.sample_rate = 16000
            for p in [*a.encode(fr), *a.encode()]:
                c.mux(p)
    return path


def _video_source(kind: str, f: Path) -> Path | None:
    if kind == "embedded":
        return None
    if kind == "missing":
        return f / "nowhere.mkv"
    if kind == "empty":
        return f
    if kind == "clip":
        return _video(f / "clip.mkv")
    if kind == "silent":
        return _video(f / "silent.mkv", audio=False)
    if kind == "classes":
        _video(f / "run" / "a.mkv")
        _video(f / "walk" / "b.mkv", frames=30)
        return f
    if kind == "txt":
        (f / "clip.txt").write_text("not a video\n")
        return f / "clip.txt"
    if kind == "junk":
        (f / "clip.mp4").write_bytes(_junk(4096))
        return f / "clip.mp4"
    if kind == "zero":
        (f / "clip.mp4").write_bytes(b"")
        return f / "clip.mp4"
    if kind == "truncated":
        whole = _video(f / "clip.mkv").read_bytes()
        (f / "clip.mkv").write_bytes(whole[: len(whole) // 3])
        return f / "clip.mkv"
    if kind == "audio_only":
        return _video(f / "clip.mkv", video=False)
    if kind == "junk_in_folder":
        (f / "run").mkdir(exist_ok=True)
        (f / "run" / "a.mp4").write_bytes(_junk(2048))
        return f
    if kind == "short":
        return _video(f / "clip.mkv", frames=3)
    if kind == "too_many_classes":
        for i in range(11):
            _video(f / f"class{i:02d}" / "a.mkv", frames=4)
        return f
    raise AssertionError(kind)


@functools.cache
def video_path(kind: str) -> str | None:
    path = _video_source(kind, _folder("video", kind))
    return None if path is None else str(path)


VIDEO_SOURCES = (
    "embedded", "clip", "silent", "classes",
    "missing", "empty", "txt", "junk", "zero", "truncated", "audio_only", "junk_in_folder", "short",
    "too_many_classes",
)  # fmt: skip


def _video_module(
    path, num_frames, image_size, audio_samples, batch_size, clips_per_epoch, val_fraction, modality_names
):
    from perceiverio.data import VideoDataModule

    dm = VideoDataModule(
        path=video_path(path.kind) if isinstance(path, Source) else path,
        num_frames=num_frames,
        image_size=image_size,
        audio_samples=audio_samples,
        batch_size=batch_size,
        clips_per_epoch=clips_per_epoch,
        val_fraction=val_fraction,
        modality_names=modality_names,
    )
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def _entry_points():
    from fuzz.cases import Arg, EntryPoint

    def path(valid: tuple[str, ...], kinds: tuple[str, ...]) -> Arg:
        return Arg(lambda rng: Source(_pick(rng, valid)), kind="value", names=("path",), draws=_sources(kinds, "path"))

    image_size = dict(kind="value", names=("image_size",), bad=BAD_SIZES)
    return [
        EntryPoint(
            "ImageDataModule",
            _image_module,
            {
                "path": path(IMAGE_VALID, IMAGE_SOURCES),
                "image_size": Arg(lambda rng: _pick(rng, ((8, 8), (6, 10), (12, 5))), **image_size),
                "channels": Arg(
                    lambda rng: _pick(rng, (1, 3)),
                    kind="value",
                    names=("channels",),
                    bad=(0, 2, 4, -1, 3.0, 1.0, True, "3", "RGB", 2**40),
                ),
                "batch_size": Arg(lambda rng: _pick(rng, (1, 2, 4)), names=("batch_size",), **INT),
                "val_fraction": Arg(
                    lambda rng: _pick(rng, (0.1, 0.25)), kind="value", names=("val_fraction",), bad=BAD_FRACTIONS
                ),
                "num_workers": Arg(lambda rng: 0, names=("num_workers",), **INT),
                "test_fraction": Arg(
                    lambda rng: _pick(rng, (0.0, 0.0, 0.2)),
                    kind="value",
                    names=("test_fraction",),
                    bad=(*BAD_FRACTIONS, -0.0),
                ),
            },
        ),
        EntryPoint(
            "FlowDataModule",
            _flow_module,
            {
                "path": path(("synthetic", "chairs"), FLOW_SOURCES),
                "image_size": Arg(lambda rng: _pick(rng, ((16, 24), (8, 12))), **image_size),
                "num_train": Arg(lambda rng: _pick(rng, (2, 4)), names=("num_train",), **INT),
                "num_val": Arg(lambda rng: 2, names=("num_val",), **INT),
                "batch_size": Arg(lambda rng: _pick(rng, (1, 2)), names=("batch_size",), **INT),
                "max_displacement": Arg(
                    lambda rng: _pick(rng, (1.0, 3.0, 6.0)),
                    kind="value",
                    names=("max_displacement",),
                    bad=(0.0, -1.0, NAN, INF, -INF, 1e30, 1e300, 1e-30, "6", 10**12, True, 200.0),
                ),
                "val_source": Arg(
                    lambda rng: "synthetic",
                    kind="value",
                    names=("val_source",),
                    bad=("path", "middlebury", "Synthetic", "", "kitti", ["synthetic"]),
                ),
                "textures": Arg(
                    lambda rng: _pick(rng, ("waves", "mixed")),
                    kind="value",
                    names=("textures",),
                    bad=("photos", "photo", "", "noise", "WAVES", ("waves",)),
                ),
            },
        ),
        EntryPoint(
            "VideoDataModule",
            _video_module,
            {
                "path": path(("embedded", "clip"), VIDEO_SOURCES),
                "num_frames": Arg(lambda rng: _pick(rng, (2, 4)), names=("num_frames",), **INT),
                "image_size": Arg(lambda rng: (8, 8), **image_size),
                "audio_samples": Arg(lambda rng: _pick(rng, (16, 160)), names=("audio_samples",), **INT),
                "batch_size": Arg(lambda rng: 2, names=("batch_size",), **INT),
                "clips_per_epoch": Arg(lambda rng: 4, names=("clips_per_epoch",), **INT),
                "val_fraction": Arg(
                    lambda rng: _pick(rng, (0.2, 0.3)), kind="value", names=("val_fraction",), bad=BAD_FRACTIONS
                ),
                "modality_names": Arg(
                    lambda rng: ("image", "audio", "label"), kind="value", names=("modality_names",), bad=BAD_NAMES
                ),
            },
        ),
    ]


VISION_DATA_ENTRY_POINTS = _entry_points()
