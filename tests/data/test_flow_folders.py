"""Flow ground truth on disk: 16-bit PNG and KITTI flow files, the FlyingChairs / MPI-Sintel / KITTI folder layouts
found by ``find_flow_pairs``, and ``FlowDataModule``'s evaluation folders (``val_path``, ``test_path``) at native
resolution. Every dataset is a tiny fake built here with Pillow and the writers, its expected pairs listed as built."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error

from perceiverio.data import FlowDataModule
from perceiverio.data.readers.flow import (
    FlowPair,
    find_flow_pairs,
    read_flo,
    read_flow,
    read_kitti_flow,
    write_flo,
    write_kitti_flow,
)
from perceiverio.data.readers.png import read_png, write_png

H, W = 16, 24


def save_image(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_frame(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def kitti_flow(rng: np.random.Generator, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """Flow in whole 1/64 pixels (exact in KITTI's encoding) and a valid mask with ~30% unknown pixels."""
    flow = (rng.integers(-400, 400, (h, w, 2)) / 64.0).astype(np.float32)
    valid = rng.random((h, w)) > 0.3
    return flow, valid


def make_chairs(root: Path, n: int, labels: list[int] | None = None) -> list[FlowPair]:
    """The FlyingChairs release: ``FlyingChairs_release/data/NNNNN_img1.ppm``, ``_img2.ppm``, ``_flow.flo``, and
    ``FlyingChairs_release/FlyingChairs_train_val.txt`` when ``labels`` are given."""
    rng, data, pairs = np.random.default_rng(1), root / "FlyingChairs_release" / "data", []
    for i in range(1, n + 1):
        a = save_image(data / f"{i:05d}_img1.ppm", random_frame(rng))
        b = save_image(data / f"{i:05d}_img2.ppm", random_frame(rng))
        write_flo(data / f"{i:05d}_flow.flo", rng.normal(size=(H, W, 2)).astype(np.float32))
        pairs.append(FlowPair(a, b, data / f"{i:05d}_flow.flo"))
    if labels is not None:
        (root / "FlyingChairs_release" / "FlyingChairs_train_val.txt").write_text("\n".join(map(str, labels)) + "\n")
    return pairs


def make_sintel(root: Path, scenes: dict[str, int]) -> dict[str, list[FlowPair]]:
    """``training/{clean,final}/SCENE/frame_NNNN.png`` (``n`` frames per scene), ``training/flow/SCENE/
    frame_NNNN.flo`` (n - 1 flows) and ``training/invalid`` masks (not read); a ``test`` folder without flow.
    Returns the expected pairs of each pass."""
    rng, base, expected = np.random.default_rng(2), root / "MPI-Sintel-complete" / "training", {}
    for scene, n in scenes.items():
        for k in range(1, n + 1):
            for p in ("clean", "final"):
                save_image(base / p / scene / f"frame_{k:04d}.png", random_frame(rng))
            save_image(
                root / "MPI-Sintel-complete" / "test" / "clean" / scene / f"frame_{k:04d}.png", random_frame(rng)
            )
        for k in range(1, n):
            (base / "flow" / scene).mkdir(parents=True, exist_ok=True)
            write_flo(base / "flow" / scene / f"frame_{k:04d}.flo", rng.normal(size=(H, W, 2)).astype(np.float32))
            save_image(base / "invalid" / scene / f"frame_{k:04d}.png", np.zeros((H, W), np.uint8))
            for p in ("clean", "final"):
                frames = base / p / scene
                flow = base / "flow" / scene / f"frame_{k:04d}.flo"
                expected.setdefault(p, []).append(
                    FlowPair(frames / f"frame_{k:04d}.png", frames / f"frame_{k + 1:04d}.png", flow)
                )
    return expected


def make_kitti(root: Path, frames: str = "image_2", sizes: tuple[tuple[int, int], ...] = ((H, W),) * 3) -> dict:
    """``training/FRAMES/NNNNNN_10.png`` and ``_11.png``, ``training/flow_occ/NNNNNN_10.png`` (and ``flow_noc``,
    which must not be used), and a ``testing`` folder without flow. Returns ``{pairs, frames, flows, valids}``."""
    rng, base = np.random.default_rng(3), root / "training"
    out = {"pairs": [], "frames": [], "flows": [], "valids": []}
    for i, (h, w) in enumerate(sizes):
        f1, f2 = random_frame(rng, h, w), random_frame(rng, h, w)
        a = save_image(base / frames / f"{i:06d}_10.png", f1)
        b = save_image(base / frames / f"{i:06d}_11.png", f2)
        save_image(root / "testing" / frames / f"{i:06d}_10.png", random_frame(rng, h, w))
        save_image(root / "testing" / frames / f"{i:06d}_11.png", random_frame(rng, h, w))
        flow, valid = kitti_flow(rng, h, w)
        (base / "flow_occ").mkdir(parents=True, exist_ok=True)
        (base / "flow_noc").mkdir(parents=True, exist_ok=True)
        write_kitti_flow(base / "flow_occ" / f"{i:06d}_10.png", flow, valid)
        write_kitti_flow(base / "flow_noc" / f"{i:06d}_10.png", flow, valid & (rng.random((h, w)) > 0.5))
        out["pairs"].append(FlowPair(a, b, base / "flow_occ" / f"{i:06d}_10.png"))
        out["frames"].append(np.stack([f1, f2]))
        out["flows"].append(flow)
        out["valids"].append(valid)
    return out


# ------------------------------------------------------------------------------------------------------ files
def test_png_16_bit_round_trip_with_every_row_filter(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, (H, W, 3)).astype(np.uint16)
    image[:, 5:] = np.cumsum(rng.integers(0, 300, (H, W - 5, 3)), 1).astype(np.uint16)  # smooth part
    write_png(tmp_path / "a.png", image, filters=(0, 1, 2, 3, 4))
    back = read_png(tmp_path / "a.png")
    assert back.dtype == np.uint16 and np.array_equal(back, image)
    # Pillow decodes the same file independently (keeping only the high byte of each 16-bit value)
    with Image.open(tmp_path / "a.png") as im:
        assert np.array_equal(np.asarray(im), (image >> 8).astype(np.uint8))
    # 8-bit files written by Pillow (its own adaptive row filters) and 16-bit greyscale
    rgb = np.cumsum(rng.integers(0, 9, (H, W, 3)), 1).astype(np.uint8)
    save_image(tmp_path / "b.png", rgb)
    assert np.array_equal(read_png(tmp_path / "b.png"), rgb)
    grey = rng.integers(0, 65536, (H, W)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "c.png")
    assert np.array_equal(read_png(tmp_path / "c.png")[..., 0], grey)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    one_line_error(lambda: read_png(tmp_path / "p.png"), "colour type 3", "Pillow")
    one_line_error(lambda: read_png(tmp_path / "missing.png"), "cannot read PNG", "missing.png")
    write_flo(tmp_path / "a.flo", np.zeros((2, 2, 2), np.float32))
    one_line_error(lambda: read_png(tmp_path / "a.flo"), "not a PNG")


def test_kitti_flow_png_round_trip_and_encoding(tmp_path):
    from PIL import Image

    flow, valid = kitti_flow(np.random.default_rng(0))
    write_kitti_flow(tmp_path / "f.png", flow, valid)
    got, got_valid = read_kitti_flow(tmp_path / "f.png")
    assert got.dtype == np.float32 and got.shape == (H, W, 2)
    assert np.array_equal(got_valid, valid) and np.array_equal(got[valid], flow[valid]) and (got[~valid] == 0).all()
    # KITTI's convention, decoded by Pillow (high bytes): value = u·64 + 2^15; unknown pixels are stored as 0
    with Image.open(tmp_path / "f.png") as im:
        high = np.asarray(im).astype(np.int64)
    assert np.array_equal(high[..., 0][valid], (flow[..., 0][valid] * 64 + 2**15).astype(np.int64) >> 8)
    assert np.array_equal(high[..., 1][valid], (flow[..., 1][valid] * 64 + 2**15).astype(np.int64) >> 8)
    assert np.array_equal(high[..., 0] == 0, ~valid)
    assert np.array_equal(read_flow(tmp_path / "f.png")[1], valid)  # read_flow dispatches on the extension
    write_png(tmp_path / "g.png", np.zeros((2, 3, 3), np.uint8))
    one_line_error(lambda: read_kitti_flow(tmp_path / "g.png"), "16-bit RGB", "8-bit")
    one_line_error(lambda: read_flow(tmp_path / "x.txt"), ".flo", ".png")


# ---------------------------------------------------------------------------------------------------- layouts
def test_finds_flyingchairs_release_example_naming_and_official_split(tmp_path):
    pairs = make_chairs(tmp_path / "release", 5)
    assert find_flow_pairs(tmp_path / "release") == pairs
    assert find_flow_pairs(tmp_path / "release" / "FlyingChairs_release" / "data") == pairs
    rng = np.random.default_rng(0)  # the flownet2 examples' naming
    example = [save_image(tmp_path / "ex" / f"0000{i}-img{k}.ppm", random_frame(rng)) for i in (7, 8) for k in (0, 1)]
    for i in (7, 8):
        write_flo(tmp_path / "ex" / f"0000{i}-gt.flo", np.zeros((H, W, 2), np.float32))
    write_flo(tmp_path / "ex" / "00009-gt.flo", np.zeros((H, W, 2), np.float32))  # no frames: not a pair
    found = find_flow_pairs(tmp_path / "ex")
    assert [tuple(p) for p in found] == [
        (example[0], example[1], tmp_path / "ex" / "00007-gt.flo"),
        (example[2], example[3], tmp_path / "ex" / "00008-gt.flo"),
    ]
    labels = [1, 2, 1, 1, 2]
    pairs = make_chairs(tmp_path / "split", 5, labels)
    assert find_flow_pairs(tmp_path / "split") == pairs  # no split asked: every pair
    assert find_flow_pairs(tmp_path / "split", split="val") == [pairs[1], pairs[4]]
    assert find_flow_pairs(tmp_path / "split", split="train") == [pairs[0], pairs[2], pairs[3]]
    (tmp_path / "split" / "FlyingChairs_release" / "FlyingChairs_train_val.txt").write_text("1\n2\n")
    one_line_error(lambda: find_flow_pairs(tmp_path / "split", split="val"), "2 labels", "5 FlyingChairs pairs")


def test_finds_sintel_pairs_within_scenes_of_the_chosen_pass(tmp_path):
    expected = make_sintel(tmp_path, {"alley_1": 4, "market_2": 3})
    clean = find_flow_pairs(tmp_path)
    assert clean == sorted(expected["clean"]) and len(clean) == 3 + 2  # consecutive frames within each scene
    assert find_flow_pairs(tmp_path / "MPI-Sintel-complete" / "training", sintel_pass="final") == expected["final"]
    for a, b, f in clean:
        assert a.parent == b.parent == f.parent.parent.parent / "clean" / f.parent.name
        assert int(b.stem[6:]) == int(a.stem[6:]) + 1 and f.stem == a.stem
    item = FlowDataModule(test_path=str(tmp_path), batch_size=8, sintel_pass="final").test_dataloader()
    batch = next(iter(item))
    assert batch["frames"].shape == (5, 2, 3, H, W)  # frames of one size share a batch
    assert torch.equal(batch["flow"][0].permute(1, 2, 0), torch.from_numpy(read_flo(expected["final"][0].flow)))
    assert batch["valid"].all()  # Sintel: every pixel counts (invalid/ and occlusions are not read)
    shutil.rmtree(tmp_path / "MPI-Sintel-complete" / "training" / "final")
    one_line_error(lambda: find_flow_pairs(tmp_path, sintel_pass="final"), "'final' pass", "clean")
    one_line_error(lambda: find_flow_pairs(tmp_path, sintel_pass="albedo"), "sintel_pass", "albedo")


@pytest.mark.parametrize("frames", ["image_2", "colored_0"])
def test_finds_kitti_2015_and_2012_training_pairs(tmp_path, frames):
    built = make_kitti(tmp_path / "kitti", frames)
    assert find_flow_pairs(tmp_path) == built["pairs"]  # flow_occ, not flow_noc; testing/ has no flow
    for pair, flow, valid in zip(built["pairs"], built["flows"], built["valids"]):
        got, got_valid = read_flow(pair.flow)
        assert np.array_equal(got_valid, valid) and np.array_equal(got[valid], flow[valid])


def test_a_folder_of_no_layout_names_the_layouts_looked_for(tmp_path):
    save_image(tmp_path / "a" / "frame.png", random_frame(np.random.default_rng(0)))
    one_line_error(lambda: find_flow_pairs(tmp_path / "a"), "no frame pairs", "FlyingChairs", "MPI-Sintel", "KITTI")
    one_line_error(lambda: find_flow_pairs(tmp_path / "b"), "not a folder", "KITTI")


# ------------------------------------------------------------------------------------------------ data module
def test_test_and_val_folders_load_at_native_resolution_with_kitti_valid_masks(tmp_path):
    sizes = ((H, W), (H - 2, W + 4), (H, W))  # KITTI frames differ in size: one pair per batch
    built = make_kitti(tmp_path, sizes=sizes)
    dm = FlowDataModule(test_path=str(tmp_path), val_path=str(tmp_path), val_source="middlebury", batch_size=4)
    for batches in (list(dm.test_dataloader()), list(dm.val_dataloader())):  # val_path replaces val_source
        assert len(batches) == 3
        for b, frames, flow, valid, (h, w) in zip(batches, built["frames"], built["flows"], built["valids"], sizes):
            assert b["frames"].shape == (1, 2, 3, h, w) and b["flow"].shape == (1, 2, h, w)
            expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
            assert torch.allclose(b["frames"][0], expected, atol=1e-6)
            assert torch.equal(b["valid"][0], torch.from_numpy(valid))
            assert torch.equal(b["flow"][0].permute(1, 2, 0)[valid], torch.from_numpy(flow[valid]))
            assert (b["flow"][0].permute(1, 2, 0)[~valid] == 0).all()
    one_line_error(lambda: FlowDataModule().test_dataloader(), "test_path")
    one_line_error(lambda: FlowDataModule(test_path=str(tmp_path / "nope")), "test_path", "nope", "not a folder")
    one_line_error(lambda: FlowDataModule(val_path=str(tmp_path / "nope")), "val_path", "not a folder")


def test_training_on_kitti_resizes_and_keeps_the_valid_mask(tmp_path):
    built = make_kitti(tmp_path)
    valid = np.ones((H, W), bool)
    valid[:, : W // 2] = False  # the left half has no ground truth
    for pair in built["pairs"]:  # a constant flow, so that resizing must give exactly half of it
        write_kitti_flow(pair.flow, np.broadcast_to(np.float32([3.0, -1.5]), (H, W, 2)), valid)
    dm = FlowDataModule(path=str(tmp_path), image_size=(H // 2, W // 2), batch_size=3, val_source="path", num_val=1)
    dm.setup()
    assert len(dm.train_set) == 2 and len(dm.val_set) == 1
    assert sorted(dm.train_set.triples + dm.val_set.triples) == built["pairs"]
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (2, 2, 3, H // 2, W // 2) and b["valid"].dtype == torch.bool
    # the unknown left half stays out of the loss; the known pixels hold the flow in pixels of the half-size grid
    assert not b["valid"][..., : W // 4 - 1].any() and b["valid"][..., W // 4 + 1 :].all()
    assert torch.allclose(b["flow"].permute(0, 2, 3, 1)[b["valid"]], torch.tensor([1.5, -0.75]), atol=1e-5)
