"""Prediction entry points: the data modules' ``predict_dataloader`` on generated ``predict_path`` files and
folders (missing, empty, junk, the wrong kind), the :class:`PredictionWriter`'s options and the picture writers
(flow colours, reconstruction strips) with generated arrays."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
from fuzz.cases import Arg, EntryPoint
from hypothesis import strategies as st


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-predict-"))
    (root / "empty").mkdir()
    (root / "lines.txt").write_text("the perceiver re_ds bytes\n\nand writes through queries\n")
    (root / "blank.txt").write_text("\n  \n")
    (root / "junk.png").write_bytes(bytes(range(256)) * 4)
    (root / "junk.txt").write_bytes(b"\xff\xfe\x00" * 50)
    (root / "junk.mp4").write_bytes(bytes(range(256)) * 4)
    (root / "images").mkdir()
    (root / "one").mkdir()
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.full((12, 10, 3), 60 * i, np.uint8)).save(root / "images" / f"f{i}.png")
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "one" / "f.png")
    return root


BAD_PATHS = ("missing", "empty", "blank.txt", "junk.png", "junk.txt", "junk.mp4", "one", "lines.txt", "images")


def _paths(valid: str) -> st.SearchStrategy:
    def bad(name: str):
        return f"predict_path:{name}", str(_root() / name)

    return st.sampled_from([b for b in BAD_PATHS if b != valid]).map(bad)


def _path_arg(valid: str) -> Arg:
    return Arg(
        lambda rng: str(_root() / valid),
        kind="value",
        names=("predict_path", str(_root()), "image", "frame", "video"),
        draws=_paths(valid),
    )


def _text_predict(predict_path, mask_char):
    from perceiverio.data import TextDataModule

    dm = TextDataModule(path=str(_root() / "lines.txt"), seq_len=16, predict_path=predict_path, mask_char=mask_char)
    return next(iter(dm.predict_dataloader()))


def _image_predict(predict_path):
    from perceiverio.data import ImageDataModule

    dm = ImageDataModule(image_size=(8, 8), channels=1, predict_path=predict_path)
    return next(iter(dm.predict_dataloader()))


def _flow_predict(predict_path):
    from perceiverio.data import FlowDataModule

    dm = FlowDataModule(image_size=(8, 8), max_displacement=2.0, num_train=2, num_val=1, predict_path=predict_path)
    return next(iter(dm.predict_dataloader()))


def _writer(dirpath, top_k):
    from perceiverio.training.predictions import PredictionWriter

    return PredictionWriter(dirpath=dirpath, top_k=top_k).top_k


def _array(x):
    """Tensors as numpy arrays (what the picture functions take); anything else as generated."""
    if not (hasattr(x, "numpy") and hasattr(x, "dim")):
        return x
    return x.float().numpy() if x.is_floating_point() else x.numpy()  # numpy has no bfloat16


def _flow_colours(flow, max_magnitude):
    from perceiverio.visual.flow import flow_to_rgb

    return flow_to_rgb(_array(flow), max_magnitude)


def _strip(original, reconstruction):
    from perceiverio.visual.media import write_strip

    return write_strip(_root() / "strip.png", _array(original), _array(reconstruction), "PSNR")


def _frames(rng):
    import torch

    return torch.rand(2, 6, 5, 3, generator=rng)


PREDICT_ENTRY_POINTS = [
    EntryPoint(
        "TextDataModule.predict_dataloader",
        _text_predict,
        {
            "predict_path": _path_arg("lines.txt"),
            "mask_char": Arg(lambda rng: "_", kind="value", names=("mask_char",), bad=("", "__", "é", 1, None)),
        },
    ),
    EntryPoint("ImageDataModule.predict_dataloader", _image_predict, {"predict_path": _path_arg("images")}),
    EntryPoint("FlowDataModule.predict_dataloader", _flow_predict, {"predict_path": _path_arg("images")}),
    EntryPoint(
        "PredictionWriter",
        _writer,
        {
            "dirpath": Arg(lambda rng: None, kind="value", optional=True, names=("dirpath",), bad=("", 3, [])),
            "top_k": Arg(lambda rng: 5, names=("top_k",), kind="int"),
        },
    ),
    EntryPoint(
        "visual.flow_to_rgb",
        _flow_colours,
        {
            "flow": Arg(lambda rng: __import__("torch").randn(4, 5, 2, generator=rng), names=("flow",)),
            "max_magnitude": Arg(
                lambda rng: None, kind="value", optional=True, names=("max_magnitude",), bad=(-1.0, float("nan"))
            ),
        },
    ),
    EntryPoint(
        "visual.write_strip",
        _strip,
        {"original": Arg(_frames, names=("original",)), "reconstruction": Arg(_frames, names=("reconstruction",))},
    ),
]
