"""Bad inputs of the vision data modules end in one clear line naming the argument or the damaged file (issue 12;
found by the fuzz suite, tests/fuzz/vision_data.py): each of these ended otherwise before."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error

from perceiverio.data import FlowDataModule, ImageDataModule, VideoDataModule
from perceiverio.data.readers.flow import frame_size, read_frame, write_flo
from perceiverio.data.readers.image import read_idx, read_image, write_idx


def save_image(path: Path, h: int = 6, w: int = 6, seed: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def class_folder(root: Path, classes=("cat", "dog"), per_class: int = 3) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_image(root / name / f"{i}.png", seed=10 * c + i)
    return root


def bomb_png(path: Path) -> Path:
    """A small PNG whose header claims 65536 × 65536 pixels (Pillow refuses it as a decompression bomb)."""
    data = bytearray(save_image(path, 4, 4).read_bytes())
    ihdr = struct.pack(">II", 2**16, 2**16) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------------------------------------- images
def test_an_idx_header_whose_sizes_overflow_int64_names_the_file(tmp_path):
    # before: the product of the sizes wrapped to 0, the empty body passed, and numpy's reshape error named nothing
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**22, 2**21, 2**21))
    one_line_error(lambda: read_idx(p), str(p), "data bytes", "(4194304, 2097152, 2097152)")


def test_idx_images_that_are_not_pixels_0_to_255_are_refused(tmp_path):
    # before: float images in [0, 1] were cast to uint8 (all zeros) and trained on
    write_idx(tmp_path / "train-images-idx3-ubyte", np.random.default_rng(0).random((4, 6, 6)).astype(np.float32))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 0, 1], np.uint8))
    dm = ImageDataModule(path=str(tmp_path), image_size=(6, 6), channels=1)
    one_line_error(dm.setup, "train-images-idx3-ubyte", "float32", "pixels 0..255")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.full((4, 6, 6), 300, np.int16))
    one_line_error(ImageDataModule(path=str(tmp_path), image_size=(6, 6)).setup, "[300, 300]", "pixels 0..255")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 6, 6), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1.5, 0, 1], np.float64))
    one_line_error(ImageDataModule(path=str(tmp_path), image_size=(6, 6)).setup, "train-labels", "float64")


def test_an_idx_folder_without_images_says_so(tmp_path):
    # before: numpy's "zero-size array to reduction operation maximum which has no identity"
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 6, 6), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    one_line_error(ImageDataModule(path=str(tmp_path), val_fraction=0.5).setup, str(tmp_path), "no training images")


def test_too_few_images_to_hold_out_name_the_fractions(tmp_path):
    class_folder(tmp_path, per_class=2)
    dm = ImageDataModule(path=str(tmp_path), image_size=(6, 6), val_fraction=0.999, test_fraction=0.2)
    one_line_error(dm.setup, "4 training image(s)", "val_fraction=0.999", "test_fraction=0.2")


def test_a_decompression_bomb_is_a_clear_error_naming_the_file(tmp_path):
    # before: PIL.Image.DecompressionBombError escaped from ImageDataModule and FlowDataModule
    bomb = bomb_png(tmp_path / "cat" / "bomb.png")
    for read in (lambda: read_image(bomb, (8, 8)), lambda: read_frame(bomb), lambda: frame_size(bomb)):
        one_line_error(read, str(bomb), "decompression bomb")
    class_folder(tmp_path)
    one_line_error(ImageDataModule(path=str(tmp_path), image_size=(6, 6), val_fraction=0.1).setup, str(bomb))


def test_a_class_subfolder_without_images_is_refused(tmp_path):
    # before: "bird" became a class no training image had (torchvision's ImageFolder refuses it too)
    class_folder(tmp_path)
    (tmp_path / "bird").mkdir()
    (tmp_path / "bird" / "notes.txt").write_text("to do\n")
    one_line_error(ImageDataModule(path=str(tmp_path), image_size=(6, 6)).setup, str(tmp_path), "bird", "no images")


@pytest.mark.parametrize("channels", [3.0, 1.0, True, "3"])
def test_channels_must_be_the_int_1_or_3(channels):
    # before: 3.0 and True passed `channels in (1, 3)`; np.zeros(3.0) then raised a TypeError naming nothing
    one_line_error(lambda: ImageDataModule(channels=channels), "channels", repr(channels))


@pytest.mark.parametrize(
    "size", [(8.5, 8), (True, 8), ("8", "8"), (float("inf"), 8), "88", (10**6, 10**6), (10**12, 4)]
)
def test_image_size_must_be_two_ints_within_the_limit(size):
    # before: int() truncated 8.5 and read "8" and True; inf raised an OverflowError; 10^6 × 10^6 tried to
    # allocate terabytes
    for module in (ImageDataModule, FlowDataModule, VideoDataModule):
        one_line_error(lambda m=module: m(image_size=size), "image_size")


# --------------------------------------------------------------------------------------------------------- flow
@pytest.mark.parametrize("name", ["num_train", "num_val"])
def test_flow_sample_counts_are_capped(name):
    # before: num_train=2^40 drew a permutation of 2^40 indices (MemoryError)
    one_line_error(lambda: FlowDataModule(**{name: 2**40}), name, "at most 10000000")


def test_max_displacement_stays_within_the_frame_for_synthetic_pairs(tmp_path):
    # before: 1e300 overflowed to a scene with no motion at all (all-zero flow), 1e30 flows of 1e29 pixels
    for value in (1e300, 1e30, 97.0):
        one_line_error(
            lambda v=value: FlowDataModule(image_size=(64, 96), max_displacement=v), "max_displacement", "96"
        )
    FlowDataModule(image_size=(64, 96), max_displacement=96.0)
    rng = np.random.default_rng(0)
    for i in (1, 2):
        save_image(tmp_path / f"000000{i}-img0.ppm", 8, 8, seed=i)
        save_image(tmp_path / f"000000{i}-img1.ppm", 8, 8, seed=10 + i)
        write_flo(tmp_path / f"000000{i}-gt.flo", rng.normal(size=(8, 8, 2)).astype(np.float32))
    # no synthetic pairs: the bound does not apply
    FlowDataModule(path=str(tmp_path), image_size=(4, 4), val_source="path", max_displacement=6.0).setup("fit")


# -------------------------------------------------------------------------------------------------------- video
@pytest.mark.parametrize("names", [None, 3, "abc", ("a", "b", 3), ("a", "b", "")])
def test_modality_names_must_be_three_distinct_strings(names):
    # before: None and 3 raised TypeError "object is not iterable", "abc" became ("a", "b", "c")
    one_line_error(lambda: VideoDataModule(modality_names=names), "modality_names")


@pytest.mark.parametrize(
    "name, value",
    [("clips_per_epoch", 2**40), ("audio_samples", 2**40), ("num_classes", 10**9), ("sample_rate", 2**40)],
)
def test_video_counts_are_capped(name, value):
    # before: clips_per_epoch=2^40 drew 2^40 clips, num_classes=10^9 made a 4 GB one-hot label per clip
    one_line_error(lambda: VideoDataModule(**{name: value}), name, "at most")


@pytest.mark.parametrize(
    "module", ["TextDataModule", "TextClassificationDataModule", "ImageDataModule", "FlowDataModule", "VideoDataModule"]
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(module):
    import perceiverio.data

    with pytest.raises(ValueError, match=r"^path must be a file or folder path, got ''$"):
        getattr(perceiverio.data, module)(path="")
