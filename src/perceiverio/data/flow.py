"""Optical-flow data: procedural pairs with exact ground truth (embedded), FlyingChairs-style folders, and the
Middlebury motorcycle stereo pair of scikit-image for validation.

Batches: ``{"frames": [B, 2, 3, H, W] float32 RGB in [-1, 1], "flow": [B, 2, H, W] float32 (u, v) in pixels of the
``image_size`` grid (frame 1 -> frame 2), "valid": [B, H, W] bool (ground truth known)}``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from .readers.flow import (
    UNKNOWN_FLOW,
    find_flow_pairs,
    middlebury_motorcycle,
    read_flo,
    read_frame,
    resize_flow,
    resize_frames,
)
from .sampling import ListDataset, SplitLoaders, check_image_size, check_positive
from .synthetic_flow import SyntheticFlowDataset

VAL_SOURCES = ("synthetic", "middlebury", "path")


def _to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1] (``x / 255 · 2 - 1``)."""
    return torch.from_numpy(frames).movedim(-1, -3).float() / 127.5 - 1.0


def make_pair(
    img1: np.ndarray,
    img2: np.ndarray,
    flow: np.ndarray,
    valid: np.ndarray | None,
    size: tuple[int, int],
    source: str = "pair",
) -> dict[str, torch.Tensor]:
    """Two uint8 ``[h, w, 3]`` frames and ``[h, w, 2]`` flow -> an item cropped (centred, to the aspect ratio of
    ``size``) and resized to ``size`` = (H, W), flow vectors rescaled to the new grid."""
    if img1.shape != img2.shape or img1.shape[:2] != flow.shape[:2]:
        raise ValueError(
            f"{source}: frames {img1.shape[:2]}, {img2.shape[:2]} and flow {flow.shape[:2]} differ in size"
        )
    known = np.isfinite(flow).all(-1) & (np.abs(flow) < UNKNOWN_FLOW).all(-1)
    valid = known if valid is None else (known & valid)
    frames = resize_frames(_to_unit(np.stack([img1, img2])), size).clamp(-1.0, 1.0)
    fl, ok = resize_flow(
        torch.from_numpy(np.where(valid[..., None], flow, 0.0)).permute(2, 0, 1), torch.from_numpy(valid), size
    )
    return {"frames": frames.contiguous(), "flow": fl.float().contiguous(), "valid": ok}


class FlowFolderDataset(Dataset):
    """FlyingChairs-style triples ``(frame 1, frame 2, .flo)`` read on demand, cropped and resized to ``size``."""

    def __init__(self, triples: list[tuple[Path, Path, Path]], size: tuple[int, int]) -> None:
        self.triples, self.size = triples, size

    def __len__(self) -> int:
        return len(self.triples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a, b, f = self.triples[i]
        return make_pair(read_frame(a), read_frame(b), read_flo(f), None, self.size, str(a))


def middlebury_pair(size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The Middlebury motorcycle pair (left -> right: u = -disparity, v = 0, valid where the disparity is finite)
    at ``size``."""
    left, right, flow, valid = middlebury_motorcycle()
    return make_pair(left, right, flow, valid, size, "skimage.data.stereo_motorcycle")


class FlowDataModule(SplitLoaders, L.LightningDataModule):
    """Optical-flow data.

    Training: ``path=None``: ``num_train`` procedural pairs with exact ground truth (see
    :mod:`~perceiverio.data.synthetic_flow`; displacements ≤ ``max_displacement`` pixels); or ``path``, a
    folder (searched recursively) of FlyingChairs-style pairs ``NAME-img0.ppm``/``-img1.ppm``/``-gt.flo`` or
    ``NAME_img1``/``_img2``/``_flow``, read on demand, centre-cropped to the aspect ratio of ``image_size`` and
    resized to it (flow vectors scaled by the resize factors).

    Validation (``val_source``): ``"synthetic"`` (``num_val`` procedural pairs independent of the training pairs),
    ``"middlebury"`` (the real motorcycle stereo pair of scikit-image as left -> right flow, u = -disparity), or
    ``"path"`` (the pairs under ``path/val`` when that folder exists, else ``num_val`` pairs held out of ``path``,
    seeded).
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
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        image_size = check_image_size(image_size, minimum=2)
        check_positive(num_train=num_train, num_val=num_val, batch_size=batch_size, max_displacement=max_displacement)
        if val_source not in VAL_SOURCES:
            raise ValueError(f"val_source must be one of {', '.join(VAL_SOURCES)}, got {val_source!r}")
        if val_source == "path" and path is None:
            raise ValueError("val_source='path' needs a path")
        if path is not None and not Path(path).expanduser().is_dir():
            raise ValueError(
                f"flow path {path!r} is not a folder; expected FlyingChairs-style pairs "
                "(NAME-img0.ppm, NAME-img1.ppm, NAME-gt.flo)"
            )
        self.save_hyperparameters()
        self.path, self.image_size, self.num_train, self.num_val = path, image_size, num_train, num_val
        self.batch_size, self.max_displacement, self.val_source = batch_size, max_displacement, val_source
        self.num_workers, self.seed = num_workers, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _folder_sets(self) -> tuple[Dataset, Dataset | None]:
        root = Path(self.path).expanduser()
        if self.val_source == "path" and (root / "val").is_dir():
            train_root = root / "train" if (root / "train").is_dir() else root
            triples = [t for t in find_flow_pairs(train_root) if root / "val" not in t[0].parents]
            return FlowFolderDataset(triples, self.image_size), FlowFolderDataset(
                find_flow_pairs(root / "val"), self.image_size
            )
        triples = find_flow_pairs(root)
        if self.val_source != "path":
            return FlowFolderDataset(triples, self.image_size), None
        if len(triples) < 2:
            raise ValueError(f"flow folder {self.path!r} has {len(triples)} pair(s); need 2 to hold one out")
        order = np.random.default_rng(self.seed).permutation(len(triples))
        n_val = min(self.num_val, len(triples) - 1)
        return FlowFolderDataset([triples[i] for i in np.sort(order[n_val:])], self.image_size), FlowFolderDataset(
            [triples[i] for i in np.sort(order[:n_val])], self.image_size
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        val = None
        if self.path is None:
            train = SyntheticFlowDataset(self.num_train, self.image_size, self.max_displacement, self.seed, stream=0)
        else:
            train, val = self._folder_sets()
        if self.val_source == "synthetic":
            val = SyntheticFlowDataset(self.num_val, self.image_size, self.max_displacement, self.seed, stream=1)
        elif self.val_source == "middlebury":
            val = ListDataset([middlebury_pair(self.image_size)])
        self.train_set, self.val_set = train, val
