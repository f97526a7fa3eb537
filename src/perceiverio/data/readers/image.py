"""Image readers: IDX files (MNIST, Fashion-MNIST; raw or gzip), folders of images with one subfolder per class
(read with Pillow), and the embedded scikit-learn digits.

IDX layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, one uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {np.dtype(v).newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _IDX_TYPES.items()}
# the four MNIST-layout files: (split, kind) -> name stem (also matched with "." instead of the last "-"); the t10k
# files are the releases' test set
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if path.suffix == ".gz" else open(path, mode)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (``.gz`` compressed or raw) -> array in native byte order."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"IDX file {str(p)!r} does not exist")
    try:
        with _open(p, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read IDX file {str(p)!r}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{str(p)!r} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {str(p)!r} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(shape)  # Python ints: a product of uint32 sizes can wrap around int64
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(
            f"IDX file {str(p)!r} holds {len(data) - header} data bytes, its header {tuple(shape)} "
            f"of {dtype} needs {count * dtype.itemsize}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as IDX; gzip when the name ends in .gz."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
    code = _IDX_CODES.get(key)
    if code is None or a.ndim > 255:
        raise ValueError(f"IDX cannot store {a.dtype} arrays of rank {a.ndim}")
    with _open(Path(path), "wb") as f:
        f.write(bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape))
        f.write(np.ascontiguousarray(a, dtype=_IDX_TYPES[code]).tobytes())


def find_idx_files(folder: str | Path) -> dict[tuple[str, str], Path]:
    """The MNIST-layout IDX files present in ``folder``: ``{("train"|"test", "images"|"labels"): path}``; names
    as in the MNIST/Fashion-MNIST releases (``train-images-idx3-ubyte[.gz]``, ``t10k-...`` for the test set), ``.``
    instead of the last ``-`` also accepted."""
    root = Path(folder)
    found = {}
    for key, stem in IDX_NAMES.items():
        dotted = stem[::-1].replace("-", ".", 1)[::-1]
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (root / name).is_file():
                found[key] = root / name
                break
    return found


def read_idx_dataset(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images [N, H, W] or [N, H, W, 3] uint8, labels [N] int64), "test": ...}`` from a folder of IDX
    files ("test" = the t10k files); a split is present when both of its files are. A ValueError names the folder
    when neither pair is complete, the file of images that are not integers in [0, 255] or of labels that are not
    integers, and the file and index of a negative label."""
    files = find_idx_files(folder)
    out = {}
    for split in ("train", "test"):
        if (split, "images") in files and (split, "labels") in files:
            x, y = read_idx(files[split, "images"]), read_idx(files[split, "labels"])
            if x.ndim == 4 and x.shape[-1] in (1, 3):  # [N, H, W, C] variants
                x = x if x.shape[-1] == 3 else x[..., 0]
            if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y):
                raise ValueError(
                    f"IDX files in {str(folder)!r}: images {x.shape} and labels {y.shape} do not "
                    "match (expected [N, H, W] and [N])"
                )
            check_idx_values(x, files[split, "images"], "images", 0, 255)
            check_idx_values(y, files[split, "labels"], "labels", 0, None)
            y = y.astype(np.int64)
            if len(y) and y.min() < 0:
                i = int(np.argmax(y < 0))
                raise ValueError(
                    f"IDX labels {str(files[split, 'labels'])!r} index {i}: label {int(y[i])} is negative; "
                    "labels must be class ids >= 0"
                )
            out[split] = (x.astype(np.uint8), y)
    if not out:
        raise ValueError(
            f"{str(folder)!r} has no complete pair of IDX files: expected train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz] (or the t10k-... pair)"
        )
    return out


def check_idx_values(a: np.ndarray, path: Path, what: str, low: int, high: int | None) -> None:
    """IDX ``images`` must hold integer pixels in [0, 255] and ``labels`` integer class ids: a ValueError names the
    file, the type and the range found (a float image in [0, 1] would otherwise become all zeros as uint8)."""
    if a.dtype.kind not in "iu":
        raise ValueError(
            f"IDX {what} {str(path)!r} hold {a.dtype} values; expected integers "
            f"({'pixels 0..255, IDX type 0x08' if what == 'images' else 'class ids'})"
        )
    if what == "images" and a.size and (int(a.min()) < low or int(a.max()) > high):
        raise ValueError(
            f"IDX images {str(path)!r} hold values in [{int(a.min())}, {int(a.max())}]; expected pixels 0..255"
        )


def list_image_folder(folder: str | Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """``(files, class ids, class names)`` of a folder with one subfolder of images per class (names sorted;
    ``classes`` fixes the names, e.g. those of the training folder for a validation folder). Without ``classes``,
    a subfolder without images is refused (it would be a class no training image has)."""
    root = Path(folder)
    subdirs = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = classes if classes is not None else subdirs
    files, labels = [], []
    for i, name in enumerate(names):
        d = root / name
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(i)
    if classes is None and not files:
        raise ValueError(
            f"image folder {str(root)!r} has no class subfolders with images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    found = set(labels)
    empty = [n for i, n in enumerate(names) if i not in found] if classes is None else []
    if empty:
        raise ValueError(
            f"image folder {str(root)!r}: class subfolder(s) {', '.join(empty)} hold no images "
            f"({', '.join(IMAGE_EXTENSIONS)}); every class needs at least one (remove the folder if it is no class)"
        )
    unknown = sorted(set(subdirs) - set(names)) if classes is not None else []
    if unknown:
        raise ValueError(f"image folder {str(root)!r} has classes the training folder lacks: {', '.join(unknown)}")
    return files, labels, list(names)


def read_image(path: str | Path, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """An image file -> uint8 ``[C, H, W]`` (C = 1 grayscale or 3 RGB), resized to ``size`` = (H, W) with
    antialiased bilinear filtering when given."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
            a = np.array(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's embedded digits: images ``[1797, 8, 8]`` float in [0, 16] and labels ``[1797]``."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:  # pragma: no cover - an optional dependency
        raise ValueError("the embedded digits need scikit-learn: pip install 'perceiverio[vision]'") from None
    d = _load()
    return d.images.astype(np.float32), d.target.astype(np.int64)
