"""Optical-flow data: procedural pairs with exact ground truth (embedded), folders of FlyingChairs, MPI-Sintel and
KITTI pairs (:func:`~perceiverio.data.readers.flow.find_flow_pairs`), and the Middlebury motorcycle stereo pair of
scikit-image for validation.

Batches: ``{"frames": [B, 2, 3, H, W] float32 RGB in [-1, 1], "flow": [B, 2, H, W] float32 (u, v) in pixels
(frame 1 -> frame 2), "valid": [B, H, W] bool (ground truth known)}``, at ``image_size`` for training, and at the
frames' own size for the evaluation folders ``val_path`` and ``test_path``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..core.config import check_choice
from .predict import Indexed, check_predict_path, missing_predict_path, predict_files, relative_name
from .readers.flow import (
    LAYOUTS_LOOKED_FOR,
    SINTEL_PASSES,
    UNKNOWN_FLOW,
    FlowPair,
    find_flow_pairs,
    frame_size,
    middlebury_motorcycle,
    read_flow,
    read_frame,
    resize_flow,
    resize_frames,
)
from .readers.image import IMAGE_EXTENSIONS as FRAME_EXTENSIONS
from .sampling import (
    MAX_SAMPLES,
    ListDataset,
    SplitLoaders,
    check_count,
    check_image_size,
    check_paths,
    check_positive,
    loader,
)
from .synthetic_flow import TEXTURES, SyntheticFlowDataset

VAL_SOURCES = ("synthetic", "middlebury", "path")
FLOW_EXPECTED = "a folder of frame pairs (FlyingChairs/Sintel/KITTI, or frames in name order: each with the next)"


def _to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1] (``x / 255 · 2 - 1``)."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 127.5 - 1.0


def make_pair(
    img1: np.ndarray,
    img2: np.ndarray,
    flow: np.ndarray,
    valid: np.ndarray | None,
    size: tuple[int, int] | None,
    source: str = "pair",
) -> dict[str, torch.Tensor]:
    """Two uint8 ``[h, w, 3]`` frames and ``[h, w, 2]`` flow (``valid`` ``[h, w]`` bool or None: where the flow
    is finite and below the unknown marker) -> an item cropped (centred, to the aspect ratio of ``size``) and
    resized to ``size`` = (H, W), flow vectors rescaled to the new grid; ``size=None`` keeps the frames' size
    (flow zero where unknown)."""
    if img1.shape != img2.shape or img1.shape[:2] != flow.shape[:2]:
        raise ValueError(
            f"{source}: frames {img1.shape[:2]}, {img2.shape[:2]} and flow {flow.shape[:2]} differ in size"
        )
    known = np.isfinite(flow).all(-1) & (np.abs(flow) < UNKNOWN_FLOW).all(-1)
    valid = known if valid is None else (known & valid)
    if size is None:
        return {
            "frames": _to_unit(np.stack([img1, img2])).contiguous(),  # [2, 3, h, w]
            "flow": torch.from_numpy(np.where(valid[..., None], flow, 0.0).astype(np.float32)).permute(2, 0, 1),
            "valid": torch.from_numpy(valid),  # [h, w]
        }
    frames = resize_frames(_to_unit(np.stack([img1, img2])), size).clamp(-1.0, 1.0)
    fl, ok = resize_flow(
        torch.from_numpy(np.where(valid[..., None], flow, 0.0)).permute(2, 0, 1), torch.from_numpy(valid), size
    )
    return {"frames": frames.contiguous(), "flow": fl.float().contiguous(), "valid": ok}


class FlowFolderDataset(Dataset):
    """Pairs ``(frame 1, frame 2, flow file)`` (:class:`~perceiverio.data.readers.flow.FlowPair`: ``.flo`` or
    KITTI ``.png`` flow) read on demand, cropped and resized to ``size``, or at their own size when ``size`` is
    None."""

    def __init__(self, triples: list[FlowPair], size: tuple[int, int] | None) -> None:
        self.triples, self.size = triples, size

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b, f = self.triples[i]
        flow, valid = read_flow(f)
        return make_pair(read_frame(a), read_frame(b), flow, valid, self.size, str(a))

    def same_size(self) -> bool:
        """Whether every pair's frames have one size (so that they can share a batch); read from the headers."""
        return self.size is not None or len({frame_size(t[0]) for t in self.triples}) <= 1


def middlebury_pair(size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The Middlebury motorcycle pair (left -> right: u = -disparity, v = 0, valid where the disparity is finite)
    at ``size``."""
    left, right, flow, valid = middlebury_motorcycle()
    return make_pair(left, right, flow, valid, size, "skimage.data.stereo_motorcycle")


class FlowDataModule(SplitLoaders, L.LightningDataModule):
    """Optical-flow data.

    Training: ``path=None``: ``num_train`` procedural pairs with exact ground truth (see
    :mod:`~perceiverio.data.synthetic_flow`; displacements ≤ ``max_displacement`` pixels, ``textures`` "mixed",
    "photos" or "waves", ``photometric`` changes between the frames); or ``path``, a
    folder (searched at any depth) of FlyingChairs, MPI-Sintel (pass ``sintel_pass``) or KITTI pairs, read on
    demand, centre-cropped to the aspect ratio of ``image_size`` and resized to it (flow vectors scaled by the
    resize factors; KITTI's pixels without ground truth stay out of the loss). A FlyingChairs release with its
    ``FlyingChairs_train_val.txt`` trains on the pairs labelled 1 only.

    Validation: ``val_path``, a folder in any of those layouts, evaluated at the frames' own size (the task tiles
    frames larger than the model's tile), only on its validation pairs when it is a FlyingChairs release with the
    split file; it replaces ``val_source``. Otherwise ``val_source``: ``"synthetic"`` (``num_val`` procedural pairs
    independent of the training pairs), ``"middlebury"`` (the real motorcycle stereo pair of scikit-image as left
    -> right flow, u = -disparity), or ``"path"`` (the pairs under ``path/val`` when that folder exists, else
    ``num_val`` pairs held out of ``path``, seeded; both at ``image_size``).

    Test (``trainer.test``, ``perceiverio test``): ``test_path``, a folder like ``val_path``, at the frames' own
    size. Predict (``perceiverio predict``): ``predict_path``, a folder in one of those layouts (their ground truth
    is passed on to be drawn beside the prediction) or of frames in name order, each paired with the next (two
    images: one pair), at their own size. Evaluation batches hold ``batch_size`` pairs when all of a folder's
    frames have one size, else one.
    """

    def __init__(
        self,
        path: str | None = None,
        image_size: tuple[int, int] = (64, 96),
        num_train: int = 2000,
        num_val: int = 64,
        batch_size: int = 8,
        max_displacement: float = 6.0,
        val_source: str = "synthetic",
        val_path: str | None = None,
        test_path: str | None = None,
        sintel_pass: str = "clean",
        textures: str = "mixed",
        photometric: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        check_paths(path=path, val_path=val_path, test_path=test_path)
        image_size = check_image_size(image_size, minimum=2)
        check_count(num_train=num_train, num_val=num_val, maximum=MAX_SAMPLES)
        check_count(batch_size=batch_size)
        check_count(0, num_workers=num_workers)
        check_positive(max_displacement=max_displacement)
        synthetic = path is None or (val_source == "synthetic" and val_path is None)
        if synthetic and max_displacement > max(image_size):
            raise ValueError(
                f"max_displacement must be at most {max(image_size)}, the longer side of image_size {image_size} "
                f"(the synthetic pairs' motion stays within the frame), got {max_displacement!r}"
            )
        check_choice(val_source, VAL_SOURCES, "val_source")
        if val_source == "path" and path is None and val_path is None:
            raise ValueError("val_source='path' needs a path")
        check_choice(textures, TEXTURES, "textures")
        check_choice(sintel_pass, SINTEL_PASSES, "sintel_pass")
        for name, folder in (("path", path), ("val_path", val_path), ("test_path", test_path)):
            if folder is not None and not Path(folder).expanduser().is_dir():
                raise ValueError(f"flow {name} {folder!r} is not a folder; expected a folder of {LAYOUTS_LOOKED_FOR}")
        predict_path = check_predict_path(predict_path, FLOW_EXPECTED)
        if predict_path is not None and not Path(predict_path).expanduser().is_dir():
            raise ValueError(f"flow predict_path {predict_path!r} is not a folder; expected {FLOW_EXPECTED}")
        self.save_hyperparameters()
        self.predict_path = predict_path
        self.path, self.image_size, self.num_train, self.num_val = path, image_size, num_train, num_val
        self.batch_size, self.max_displacement, self.val_source = batch_size, max_displacement, val_source
        self.val_path, self.test_path, self.sintel_pass = val_path, test_path, sintel_pass
        self.num_workers, self.seed = num_workers, seed
        self.textures, self.photometric = textures, bool(photometric)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: FlowFolderDataset | None = None

    def _synthetic(self, num: int, stream: int) -> SyntheticFlowDataset:
        return SyntheticFlowDataset(
            num, self.image_size, self.max_displacement, self.seed, stream, self.textures, self.photometric
        )

    def _pairs(self, folder: str | Path, split: str) -> list[FlowPair]:
        return find_flow_pairs(folder, self.sintel_pass, split)

    def _evaluation_set(self, folder: str) -> FlowFolderDataset:
        """The pairs of an evaluation folder at their own size (a FlyingChairs release: its validation pairs)."""
        return FlowFolderDataset(self._pairs(folder, "val"), None)

    def _folder_sets(self) -> tuple[Dataset, Dataset | None]:
        root = Path(self.path).expanduser()
        holding_out = self.val_source == "path" and self.val_path is None
        if holding_out and (root / "val").is_dir():
            train_root = root / "train" if (root / "train").is_dir() else root
            triples = [t for t in self._pairs(train_root, "train") if root / "val" not in t[0].parents]
            return FlowFolderDataset(triples, self.image_size), FlowFolderDataset(
                self._pairs(root / "val", "val"), self.image_size
            )
        triples = self._pairs(root, "train")
        if not holding_out:
            return FlowFolderDataset(triples, self.image_size), None
        if len(triples) < 2:
            raise ValueError(f"flow folder {self.path!r} has {len(triples)} pair(s); need 2 to hold one out")
        order = np.random.default_rng(self.seed).permutation(len(triples))
        n_val = min(self.num_val, len(triples) - 1)
        return FlowFolderDataset([triples[i] for i in np.sort(order[n_val:])], self.image_size), FlowFolderDataset(
            [triples[i] for i in np.sort(order[:n_val])], self.image_size
        )

    def setup(self, stage: str | None = None) -> None:
        """Stage ``"test"``: the ``test_path`` pairs; any other: the training and validation sets."""
        if stage == "test":
            if self.test_set is None and self.test_path is not None:
                self.test_set = self._evaluation_set(self.test_path)
            return
        if self.train_set is not None:
            return
        val = None
        if self.path is None:
            train = self._synthetic(self.num_train, stream=0)
        else:
            train, val = self._folder_sets()
        if self.val_path is not None:
            val = self._evaluation_set(self.val_path)
        elif self.val_source == "synthetic":
            val = self._synthetic(self.num_val, stream=1)
        elif self.val_source == "middlebury":
            val = ListDataset([middlebury_pair(self.image_size)])
        self.train_set, self.val_set = train, val

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        """Batches in order; one pair per batch for a folder whose frames differ in size (they cannot be stacked)."""
        same = not isinstance(dataset, FlowFolderDataset) or dataset.same_size()
        return loader(dataset, self.batch_size if same else 1, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        """The ``test_path`` pairs in order, at their own size; a ValueError when no ``test_path`` was given."""
        if self.test_path is None:
            raise ValueError(
                "FlowDataModule has no test set: give test_path (--data.test_path FOLDER), a folder of "
                f"{LAYOUTS_LOOKED_FOR}"
            )
        self.setup("test")
        return self._evaluation_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """The ``predict_path`` pairs in order, at their own size (:class:`PredictPairs`); a ValueError when it is
        not set."""
        if self.predict_path is None:
            raise missing_predict_path("FlowDataModule", FLOW_EXPECTED)
        pairs = PredictPairs(self.predict_path, self.sintel_pass)
        same = len({frame_size(a) for a, _, _ in pairs.pairs}) <= 1
        return loader(Indexed(pairs, pairs.names), self.batch_size if same else 1, self.num_workers)


class PredictPairs(Dataset):
    """Frame pairs to predict the flow of: the pairs of a FlyingChairs/Sintel/KITTI folder (items with their
    ground truth ``flow``/``valid``), else the folder's frames in name order, each with the next (items
    ``{"frames" [2, 3, H, W] in [-1, 1]}``). ``names``: the first frame's path relative to the folder."""

    def __init__(self, folder: str, sintel_pass: str = "clean") -> None:
        try:
            self.pairs = [(a, b, f) for a, b, f in find_flow_pairs(folder, sintel_pass)]
        except ValueError:  # no known layout: consecutive frames
            frames = predict_files(folder, FRAME_EXTENSIONS, "frames (images)")
            if len(frames) < 2:
                raise ValueError(f"flow predict_path {folder!r} holds {len(frames)} frame; need two") from None
            self.pairs = [(a, b, None) for a, b in zip(frames[:-1], frames[1:])]
        self.names = [relative_name(a, folder) for a, _, _ in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b, f = self.pairs[i]
        img1, img2 = read_frame(a), read_frame(b)
        if f is not None:
            return make_pair(img1, img2, *read_flow(f), None, str(a))
        if img1.shape != img2.shape:
            raise ValueError(f"frames {str(a)!r} {img1.shape[:2]} and {str(b)!r} {img2.shape[:2]} differ in size")
        return {"frames": _to_unit(np.stack([img1, img2])).contiguous()}
