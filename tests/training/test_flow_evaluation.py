"""Evaluating optical flow on a folder of ground truth: ``trainer.test`` / ``trainer.validate`` on a KITTI-layout
folder (``FlowDataModule(test_path=..., val_path=...)``) log the model's EPE and the zero-flow baseline's over the
valid pixels, at the frames' own size, through the model's tiled ``predict``."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import cpu_trainer

from perceiverio.data import FlowDataModule
from perceiverio.data.readers.flow import write_kitti_flow
from perceiverio.training import OpticalFlowTask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
SIZES = ((16, 24), (14, 28), (16, 24))  # KITTI frames differ in size between pairs


def make_kitti(root: Path) -> list[dict[str, np.ndarray]]:
    """``training/image_2/NNNNNN_10.png``, ``_11.png`` and ``training/flow_occ/NNNNNN_10.png`` (flow in whole
    1/64 pixels, exact in KITTI's encoding; about 30% of the pixels without ground truth)."""
    from PIL import Image

    rng, pairs = np.random.default_rng(0), []
    for folder in ("image_2", "flow_occ"):
        (root / "training" / folder).mkdir(parents=True)
    for i, (h, w) in enumerate(SIZES):
        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        for k, frame in zip((10, 11), frames):
            Image.fromarray(frame).save(root / "training" / "image_2" / f"{i:06d}_{k}.png")
        flow = (rng.integers(-300, 300, (h, w, 2)) / 64.0).astype(np.float32)
        valid = rng.random((h, w)) > 0.3
        write_kitti_flow(root / "training" / "flow_occ" / f"{i:06d}_10.png", flow, valid)
        pairs.append({"frames": frames, "flow": flow, "valid": valid})
    return pairs


def run(method: str, module: OpticalFlowTask, dm: FlowDataModule) -> dict[str, float]:
    trainer = cpu_trainer(limit_val_batches=1.0)  # validate reads every batch
    return getattr(trainer, method)(module, datamodule=dm, verbose=False)[0]


def test_test_and_validate_on_a_folder_log_epe_and_the_zero_flow_baseline(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pairs = make_kitti(tmp_path)
        L.seed_everything(0, verbose=False)
        module = OpticalFlowTask(tile_size=(8, 12), min_overlap=2)  # tiny model; every frame is tiled
        got = run("test", module, FlowDataModule(test_path=str(tmp_path), batch_size=4))
        # val_path replaces the configured validation source (here the Middlebury pair)
        val = run("validate", module, FlowDataModule(val_path=str(tmp_path), val_source="middlebury"))
        # computed here from the arrays written: mean |flow| over the valid pixels, and the tiled prediction's EPE
        zero_sum = sum(float(np.linalg.norm(p["flow"], axis=-1)[p["valid"]].sum()) for p in pairs)
        count = sum(int(p["valid"].sum()) for p in pairs)
        epe_sum = 0.0
        module.eval()
        with torch.no_grad():
            for p in pairs:
                frames = torch.from_numpy(p["frames"]).permute(0, 3, 1, 2).float()[None] / 127.5 - 1
                predicted = module.model.predict(frames)[0].permute(1, 2, 0).numpy()  # [H, W, 2]
                epe_sum += float(np.linalg.norm(predicted - p["flow"], axis=-1)[p["valid"]].sum())
    finally:
        torch.set_num_threads(threads)
    assert set(got) == {"test/epe", "test/zero_epe"}
    assert got["test/zero_epe"] == pytest.approx(zero_sum / count, rel=1e-6)
    assert got["test/epe"] == pytest.approx(epe_sum / count, rel=1e-5)
    assert got["test/epe"] != pytest.approx(got["test/zero_epe"], rel=1e-3)  # the model's EPE is its own
    assert val["val/epe"] == pytest.approx(got["test/epe"], rel=1e-6)
    assert val["val/zero_epe"] == pytest.approx(got["test/zero_epe"], rel=1e-6)
