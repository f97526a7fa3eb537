"""Data readers and Lightning data modules: embedded defaults, user formats, exact flow ground truth, alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error, warp_frame

from perceiverio.data import (
    FlowDataModule,
    ImageDataModule,
    TextClassificationDataModule,
    TextDataModule,
    VideoDataModule,
)
from perceiverio.data.masking import word_spans
from perceiverio.data.readers.flow import find_flow_pairs, middlebury_motorcycle, read_flo, write_flo
from perceiverio.data.readers.image import read_idx, write_idx
from perceiverio.data.readers.video import read_video
from perceiverio.tasks.outputs import IGNORE_INDEX
from perceiverio.tokenizer import MASK_ID, NUM_SPECIAL, PAD_ID, ByteTokenizer

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(rel: str) -> Path:
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not found: ../shared is absent (only in the project workspace)")
    return p


# ------------------------------------------------------------------------------------------------------------ text
def _check_mlm_batch(batch: dict, seq_len: int, source_text: str) -> None:
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    for t in (ids, mask, labels):
        assert t.dtype == torch.long and t.shape == ids.shape and ids.shape[1] == seq_len
    masked = labels != IGNORE_INDEX
    assert masked.any()
    assert (ids[masked] == MASK_ID).all() and (labels[masked] >= NUM_SPECIAL).all()
    assert (ids[mask == 0] == PAD_ID).all() and not masked[mask == 0].any()
    tok = ByteTokenizer()
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        original = torch.where(masked[b], labels[b], ids[b])[:n].tolist()
        text = tok.decode(original)
        at = source_text.find(text)
        assert at >= 0, "a window is not a piece of the source text"
        assert at == 0 or source_text[at - 1].isspace(), "a window starts inside a word"
        end = at + len(text)
        assert end == len(source_text) or source_text[end].isspace() or text[-1].isspace(), "a window cuts a word"
        spans = word_spans(original)
        row = masked[b, :n].tolist()
        for s, e in spans:  # every word is masked entirely or not at all
            assert len(set(row[s:e])) == 1
        covered = {i for s, e in spans for i in range(s, e)}
        assert all(i in covered for i, m in enumerate(row) if m), "a masked byte outside a word"


def test_text_embedded_default_whole_words_and_fixed_validation():
    dm = TextDataModule(seq_len=96, batch_size=16)
    dm.setup()
    assert len(dm.train_text) > 300_000 and len(dm.val_text) > 20_000
    assert dm.val_text not in dm.train_text[:1000] and dm.val_text[:200] not in dm.train_text  # unseen topics
    loader = dm.train_dataloader()
    assert len(loader.dataset) == dm.windows_per_epoch == len(dm.train_text.encode()) // 96
    batch = next(iter(loader))
    _check_mlm_batch(batch, 96, dm.train_text)
    rate = (batch["labels"] != IGNORE_INDEX).sum() / batch["attention_mask"].sum()
    assert 0.05 < rate < 0.3

    val1 = [b for b in dm.val_dataloader()]
    val2 = [b for b in dm.val_dataloader()]
    _check_mlm_batch(val1[0], 96, dm.val_text)
    for a, b in zip(val1, val2, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k])
    again = TextDataModule(seq_len=96, batch_size=16)  # the same seed gives the same validation set
    assert torch.equal(next(iter(again.val_dataloader()))["labels"], val1[0]["labels"])

    sampler = loader.sampler
    sampler.set_epoch(0)
    e0 = list(sampler)
    sampler.set_epoch(1)
    e1 = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == e0 and e0 != e1  # reseeded per epoch, reproducible

    token, acc = dm.unigram_baseline()
    labels = torch.cat([b["labels"][b["labels"] != IGNORE_INDEX] for b in val1])
    assert token >= NUM_SPECIAL and acc == pytest.approx(float((labels == token).float().mean()))
    assert 0.0 < acc < 0.5


def test_text_byte_masking_option():
    dm = TextDataModule(seq_len=96, batch_size=16, masking="byte")
    batch = next(iter(dm.train_dataloader()))
    labelled = batch["labels"] != IGNORE_INDEX
    assert (batch["input_ids"][labelled] == MASK_ID).all()
    tok = ByteTokenizer()
    for b in range(4):  # the unmasked windows are training text
        original = torch.where(labelled[b], batch["labels"][b], batch["input_ids"][b])
        assert tok.decode(original[batch["attention_mask"][b] == 1]) in dm.train_text
    spaces = batch["labels"] == ord(" ") + NUM_SPECIAL
    assert spaces.any()  # whole-word masking never masks a space; byte masking does
    rate = labelled.sum() / batch["attention_mask"].sum()
    assert 0.08 < rate < 0.22
    with pytest.raises(ValueError, match="masking"):
        TextDataModule(masking="span")


def test_text_file_and_folder_sources(tmp_path):
    words = [f"word{i}" for i in range(50)]
    rng = np.random.default_rng(0)
    single = tmp_path / "one.txt"
    single.write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(300)), encoding="utf-8")
    dm = TextDataModule(path=str(single), seq_len=64, batch_size=4)
    dm.setup()
    assert dm.train_text + dm.val_text == single.read_text()
    assert 0.05 < len(dm.val_text) / len(single.read_text()) < 0.2
    _check_mlm_batch(next(iter(dm.train_dataloader())), 64, dm.train_text)

    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        (folder / ("sub" if i % 2 else "") / f"doc{i}.{'md' if i == 3 else 'txt'}").write_text(
            f"document {i} " + " ".join(rng.choice(words, 200)), encoding="utf-8"
        )
    (folder / "ignored.bin").write_bytes(b"\xff\xfe")
    dm = TextDataModule(path=str(folder), seq_len=64, batch_size=4)
    dm.setup()
    for i in range(6):  # whole documents go to one side
        assert (f"document {i} " in dm.train_text) != (f"document {i} " in dm.val_text)
    _check_mlm_batch(next(iter(dm.val_dataloader())), 64, dm.val_text)


def test_text_hugging_face_dataset_on_a_local_folder(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = [{"body": f"row {i} says hello to the dataset loader", "id": i} for i in range(200)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    dm = TextDataModule(dataset=str(folder), text_column="body", seq_len=48, batch_size=8)
    dm.setup()
    assert "row 0 says" in dm.train_text + dm.val_text and dm.val_text  # rows split 90/10 without a val split
    _check_mlm_batch(next(iter(dm.train_dataloader())), 48, dm.train_text)
    one_line_error(lambda: TextDataModule(dataset=str(folder), text_column="text").setup(), "'text'", "body, id")

    csv_dir = tmp_path / "cls"
    csv_dir.mkdir()
    (csv_dir / "train.csv").write_text("sentence,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(20)))
    (csv_dir / "validation.csv").write_text("sentence,label\ngood x,pos\nbad y,neg\n")
    cm = TextClassificationDataModule(dataset=str(csv_dir), batch_size=8)
    assert cm.num_classes == 2 and cm.label_names == ["neg", "pos"]
    b = next(iter(cm.val_dataloader()))
    assert b["labels"].tolist() == [1, 0]
    one_line_error(
        lambda: TextClassificationDataModule(dataset=str(csv_dir), val_split="dev").setup(),
        "no split 'dev'",
        "validation",
    )


def test_text_classification_sst2():
    folder = shared("sst2")
    dm = TextClassificationDataModule(path=str(folder), val_split="val", max_length=64, batch_size=16)
    assert dm.num_classes == 2 and dm.label_names == ["0", "1"]
    assert len(dm._train) == 60_614 and len(dm._val) == 6_735
    b = next(iter(dm.train_dataloader()))
    assert b["input_ids"].dtype == torch.long and b["input_ids"].shape[0] == 16 and b["input_ids"].shape[1] <= 64
    assert b["labels"].shape == (16,) and set(b["labels"].tolist()) <= {0, 1}
    assert (b["attention_mask"].sum(1) >= 1).all()
    v = next(iter(dm.val_dataloader()))
    first = (folder / "val.tsv").read_text().splitlines()[1].split("\t")
    assert ByteTokenizer().decode(v["input_ids"][0][v["attention_mask"][0].bool()]) == first[0][:64]
    assert v["labels"][0] == int(first[1])


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_text_classification_tables(tmp_path, fmt):
    rows = [
        (f'text number {i}, "quoted"' if fmt != "tsv" else f"text number {i}", ["b", "a", "c"][i % 3])
        for i in range(40)
    ]
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "y": y}) for t, y in rows))
    else:
        import csv

        with open(path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
            w.writerow(["text", "y"])
            w.writerows(rows)
    dm = TextClassificationDataModule(path=str(path), text_column="text", label_column="y", max_length=8, batch_size=64)
    assert dm.num_classes == 3 and dm.label_names == ["a", "b", "c"]
    train, val = next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))
    assert train["labels"].shape == (36,) and val["labels"].shape == (4,)  # seeded 90/10 split
    assert train["input_ids"].shape == (36, 8)  # truncated to max_length
    again = TextClassificationDataModule(path=str(path), text_column="text", label_column="y", max_length=8)
    assert torch.equal(next(iter(again.val_dataloader()))["input_ids"], val["input_ids"])


def test_text_bad_sources(tmp_path):
    one_line_error(lambda: TextDataModule(path=str(tmp_path / "missing.txt")), "missing.txt", "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: TextDataModule(path=str(tmp_path / "empty")), "no .txt or .md")
    one_line_error(lambda: TextClassificationDataModule(path=str(tmp_path / "nope")), "nope")
    bad = tmp_path / "t.tsv"
    bad.write_text("sentence\tlabel\nhello\t1\nbye\t0\n")
    one_line_error(
        lambda: TextClassificationDataModule(path=str(bad), text_column="text").setup(), "'text'", "sentence, label"
    )
    xls = tmp_path / "t.xlsx"
    xls.write_text("x")
    one_line_error(lambda: TextClassificationDataModule(path=str(xls)).setup(), "unknown table format", ".tsv")


# ---------------------------------------------------------------------------------------------------------- images
def test_idx_round_trip(tmp_path):
    for name, a in [
        ("a.idx", np.arange(60, dtype=np.uint8).reshape(3, 4, 5)),
        ("b.idx.gz", np.arange(-6, 6, dtype=np.int16).reshape(2, 6)),
        ("c.idx", np.linspace(-1, 1, 7).astype(np.float32)),
        ("d.idx.gz", np.arange(8, dtype=np.int32).reshape(2, 2, 2) * 70000),
    ]:
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
    raw = (tmp_path / "a.idx").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and raw[4:8] == (3).to_bytes(4, "big")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    one_line_error(lambda: read_idx(tmp_path / "bad.idx"), "not an IDX file")


def _write_mnist(folder: Path, n_train: int = 30, n_val: int = 10, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_image_module_idx_folder(tmp_path, gz):
    _write_mnist(tmp_path / "mnist", gz=gz)
    dm = ImageDataModule(path=str(tmp_path / "mnist"), image_size=(28, 28), channels=1, batch_size=8)
    assert dm.num_classes == 10 and len(dm.train_set) == 30 and len(dm.val_set) == 10  # t10k = validation
    b = next(iter(dm.val_dataloader()))
    assert b["images"].shape == (8, 1, 28, 28) and b["images"].dtype == torch.float32
    assert b["labels"].tolist() == list(range(8))
    raw = read_idx(tmp_path / "mnist" / f"t10k-images-idx3-ubyte{'.gz' if gz else ''}")[0] / 255.0
    expected = (torch.from_numpy(raw).float() - dm.mean[0]) / dm.std[0]
    assert torch.allclose(b["images"][0, 0], expected, atol=1e-5)


def test_fashion_mnist_system_package():
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not folder.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    dm = ImageDataModule(path=str(folder), image_size=(28, 28), channels=1)
    dm.setup()
    assert len(dm.train_set) == 60_000 and len(dm.val_set) == 10_000 and dm.num_classes == 10


def test_image_module_digits_default():
    dm = ImageDataModule(batch_size=64)
    assert dm.num_classes == 10 and len(dm.train_set) + len(dm.val_set) == 1797 and len(dm.val_set) == 180
    b = next(iter(dm.train_dataloader()))
    assert b["images"].shape == (64, 3, 32, 32) and b["images"].dtype == torch.float32
    assert b["labels"].dtype == torch.long and b["labels"].min() >= 0 and b["labels"].max() <= 9
    assert torch.equal(b["images"][:, 0], b["images"][:, 2])  # grayscale replicated
    allx = torch.cat([x["images"] for x in dm.train_dataloader()])
    assert abs(float(allx.mean())) < 1e-3 and abs(float(allx.std()) - 1.0) < 1e-2  # train statistics
    raw = ImageDataModule(normalize=False, channels=1, image_size=(8, 8))
    x = next(iter(raw.val_dataloader()))["images"]
    assert x.shape[1:] == (1, 8, 8) and x.min() >= 0 and x.max() <= 1
    from sklearn.datasets import load_digits

    assert any(torch.allclose(x[0, 0], torch.from_numpy(im / 16.0).float()) for im in load_digits().images)


def test_image_module_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            d = tmp_path / "pets" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                a = np.clip(np.array(colour) + rng.integers(-20, 20, (20, 30, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")
    dm = ImageDataModule(path=str(tmp_path / "pets"), image_size=(16, 16), batch_size=4, normalize=False)
    assert dm.num_classes == 2 and dm.class_names == ["cat", "dog"]
    assert len(dm.train_set) == 12 and len(dm.val_set) == 4
    b = next(iter(dm.val_dataloader()))
    assert b["images"].shape == (4, 3, 16, 16) and b["labels"].tolist() == [0, 0, 1, 1]
    assert (b["images"][:2, 0].mean() > 0.8) and (b["images"][2:, 2].mean() > 0.8)  # red cats, blue dogs
    flat = ImageDataModule(path=str(tmp_path / "pets" / "train"), channels=1, image_size=(8, 8), val_fraction=0.25)
    flat.setup()
    assert len(flat.train_set) == 9 and len(flat.val_set) == 3  # no val/ folder: seeded split
    assert next(iter(flat.train_dataloader()))["images"].shape[1:] == (1, 8, 8)
    one_line_error(lambda: ImageDataModule(path=str(tmp_path / "none")), "none", "not a folder")
    (tmp_path / "blank").mkdir()
    one_line_error(lambda: ImageDataModule(path=str(tmp_path / "blank")).setup(), "no class subfolders")


# ------------------------------------------------------------------------------------------------------------ flow
def test_flo_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    assert np.array_equal(read_flo(tmp_path / "a.flo"), flow)
    write_flo(tmp_path / "b.flo", torch.from_numpy(flow).permute(2, 0, 1))  # [2, H, W] accepted
    assert np.array_equal(read_flo(tmp_path / "b.flo"), flow)
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[4:12], "<i4").tolist() == [7, 5]
    (tmp_path / "c.flo").write_bytes(raw[:-4])
    one_line_error(lambda: read_flo(tmp_path / "c.flo"), "does not match")


def test_flow_folder_flyingchairs():
    folder = shared("flow/flyingchairs")
    triples = find_flow_pairs(folder)
    assert len(triples) == 9
    gt = read_flo(triples[0][2])
    assert gt.shape == (384, 512, 2)
    dm = FlowDataModule(path=str(folder), image_size=(64, 96), batch_size=9, val_source="path", num_val=2)
    dm.setup()
    assert len(dm.train_set) == 7 and len(dm.val_set) == 2
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (7, 2, 3, 64, 96) and b["flow"].shape == (7, 2, 64, 96)
    assert b["valid"].shape == (7, 64, 96) and b["valid"].dtype == torch.bool
    assert b["frames"].min() >= -1 and b["frames"].max() <= 1
    # flow vectors are rescaled with the image: crop 384 -> 341 rows (aspect 2:3), then ×96/512 and ×64/341
    item = dm.train_set[0]
    a, _, f = dm.train_set.triples[0]
    crop = read_flo(f)[21 : 21 + 341]
    assert float(item["flow"][0].mean()) == pytest.approx(crop[..., 0].mean() * 96 / 512, rel=0.02, abs=0.02)
    assert float(item["flow"][1].mean()) == pytest.approx(crop[..., 1].mean() * 64 / 341, rel=0.02, abs=0.02)


def test_flow_folder_release_naming_and_errors(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        for k in (1, 2):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i:05d}_img{k}.ppm")
        flow = np.full((12, 16, 2), 2.0, np.float32)
        flow[0, 0] = 1e10  # unknown
        write_flo(tmp_path / f"{i:05d}_flow.flo", flow)
    dm = FlowDataModule(path=str(tmp_path), image_size=(12, 16), batch_size=3)
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (3, 2, 3, 12, 16) and (b["flow"].permute(0, 2, 3, 1)[b["valid"]] == 2.0).all()
    assert not b["valid"][:, 0, 0].any() and b["valid"].sum() == 3 * (12 * 16 - 1)
    one_line_error(lambda: FlowDataModule(path=str(tmp_path / "x")), "not a folder")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: FlowDataModule(path=str(tmp_path / "empty")).setup(), "no frame pairs")
    one_line_error(lambda: FlowDataModule(val_source="kitti"), "val_source")


def test_flow_module_embedded_default_and_middlebury():
    dm = FlowDataModule(num_train=16, num_val=4, batch_size=4, val_source="synthetic")
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (4, 2, 3, 64, 96) and b["frames"].dtype == torch.float32
    assert b["flow"].shape == (4, 2, 64, 96) and b["valid"].shape == (4, 64, 96) and b["valid"].dtype == torch.bool
    assert b["frames"].abs().max() <= 1.0 and b["flow"].abs().max() <= 6.0 + 1e-4
    v = next(iter(dm.val_dataloader()))
    assert v["frames"].shape == (4, 2, 3, 64, 96) and not torch.equal(v["flow"], b["flow"])

    mb = FlowDataModule(val_source="middlebury", image_size=(64, 96))
    v = next(iter(mb.val_dataloader()))
    assert v["frames"].shape == (1, 2, 3, 64, 96) and v["flow"].shape == (1, 2, 64, 96)
    valid = v["valid"][0]
    assert 0.8 < valid.float().mean() <= 1.0
    assert (v["flow"][0, 1] == 0).all() and (v["flow"][0, 0][valid] < 0).all()
    left, right, flow, ok = middlebury_motorcycle()
    _, _, disp = __import__("skimage.data", fromlist=["x"]).stereo_motorcycle()
    assert np.array_equal(flow[..., 0][ok], -disp[ok]) and not ok.all()
    # the pair agrees with its flow: warping the right view by u = -disparity reproduces the left view
    f1, f2 = v["frames"][0]
    good = valid & (torch.arange(96) > 10)
    warped = (warp_frame(f2, v["flow"][0]) - f1).abs().mean(0)[good].mean()
    unwarped = (warp_frame(f2, torch.zeros(2, 64, 96)) - f1).abs().mean(0)[good].mean()
    assert warped < 0.6 * unwarped


# ----------------------------------------------------------------------------------------------------------- video
def _write_video(
    path: Path,
    n_frames: int = 40,
    fps: int = 25,
    size=(24, 32),
    sr: int = 48_000,
    flash: int = 10,
    audio_offset: float = 0.0,
) -> None:
    """A lossless test video: black frames except a white frame ``flash``; silent audio (stereo, starting at
    ``audio_offset`` s) except a burst during the flash frame."""
    av = pytest.importorskip("av")
    h, w = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("ffv1", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv444p"
        aus = c.add_stream("pcm_s16le", rate=sr)
        aus.layout = "stereo"
        spf = sr // fps
        audio = np.zeros(n_frames * spf, np.int16)
        a0 = int(round(audio_offset * sr))
        audio[flash * spf - a0 : (flash + 1) * spf - a0] = 12000
        for k in range(n_frames):
            img = np.full((h, w, 3), 255 if k == flash else 0, np.uint8)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts = k
            for p in vs.encode(fr):
                c.mux(p)
        for s in range(0, len(audio), 1024):
            chunk = np.repeat(audio[s : s + 1024, None], 2, 1).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            af.sample_rate, af.pts = sr, s + a0
            for p in aus.encode(af):
                c.mux(p)
        for stream in (vs, aus):
            for p in stream.encode():
                c.mux(p)


def _check_video_batch(b: dict, names, bsz: int, t: int, size, s: int, k: int) -> None:
    image, audio, label = names
    assert set(b) == set(names)
    assert b[image].shape == (bsz, t, 3, *size) and b[image].dtype == torch.float32
    assert b[image].min() >= 0 and b[image].max() <= 1
    assert b[audio].shape == (bsz, s, 1) and b[audio].dtype == torch.float32 and b[audio].abs().max() <= 1
    assert b[label].shape == (bsz, k) and torch.equal(b[label].sum(1), torch.ones(bsz))


def test_video_embedded_default():
    dm = VideoDataModule(batch_size=4)
    b = next(iter(dm.train_dataloader()))
    _check_video_batch(b, ("image", "audio", "label"), 4, 8, (32, 32), 1920, 10)
    assert b["image"].std() > 0.05 and b["audio"].abs().max() > 1e-3  # real pictures and sound
    assert (b["label"][:, 0] == 1).all()  # a single file is class 0
    v = dm.videos[0]
    assert len(v.frames) == 132 and v.fps == 25 and v.sample_rate == 48_000
    assert abs(len(v.audio) / 48_000 - 5.31) < 0.02
    assert len(dm.val_clips) > 0 and all(start + 8 <= 132 and start >= dm.train_end[0] for _, start in dm.val_clips)
    val1 = [x for x in dm.val_dataloader()]
    val2 = [x for x in dm.val_dataloader()]
    assert all(torch.equal(a[k], c[k]) for a, c in zip(val1, val2) for k in a)


def test_video_shared_webm():
    path = shared("video/big_buck_bunny_0_30.webm")
    dm = VideoDataModule(
        path=str(path),
        num_frames=4,
        image_size=(16, 24),
        audio_samples=7350,
        sample_rate=44_100,
        num_classes=3,
        clips_per_epoch=8,
        batch_size=8,
        modality_names=("rgb", "sound", "caption"),
    )
    b = next(iter(dm.train_dataloader()))
    _check_video_batch(b, ("rgb", "sound", "caption"), 8, 4, (16, 24), 7350, 3)
    v = dm.videos[0]
    assert len(v.frames) == 720 and v.fps == 24 and abs(len(v.audio) / 44_100 - 30.0) < 0.05


def test_video_audio_alignment_and_class_folders(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "clips" / cls).mkdir(parents=True)
    _write_video(tmp_path / "clips" / "a" / "x.mkv", audio_offset=0.2)
    _write_video(tmp_path / "clips" / "b" / "y.mkv", flash=20)
    v = read_video(tmp_path / "clips" / "a" / "x.mkv", (24, 32), 48_000, progress=False)
    assert abs(v.audio_start - 0.2) < 1e-6
    assert v.frames[10].float().mean() > 250 and v.frames[9].float().max() < 5

    dm = VideoDataModule(
        path=str(tmp_path / "clips"), num_frames=4, image_size=(12, 16), audio_samples=3840, num_classes=2, batch_size=2
    )
    assert dm.setup() is None and dm.class_names == ["a", "b"]
    for flash, video in ((10, 0), (20, 1)):
        clip = dm.clip((video, flash))  # the clip starting at the flash: the burst starts at its first sample
        assert clip["image"][0].min() > 0.95 and clip["image"][1].max() < 0.05
        loud = (clip["audio"][:, 0].abs() > 0.1).nonzero()[:, 0]
        assert loud.min() == 0 and loud.max() == 1919  # 1,920 samples per frame at 48 kHz / 25 fps
        assert clip["label"].tolist() == [float(video == 0), float(video == 1)]
        before = dm.clip((video, flash - 1))["audio"][:, 0]  # one frame earlier: the burst starts one frame in
        loud = (before.abs() > 0.1).nonzero()[:, 0]
        assert loud.min() == 1920 and loud.max() == 3839
    b = next(iter(dm.val_dataloader()))
    _check_video_batch(b, ("image", "audio", "label"), 2, 4, (12, 16), 3840, 2)
    one_line_error(lambda: VideoDataModule(path=str(tmp_path / "clips"), num_classes=1).setup(), "2 classes")
    one_line_error(lambda: VideoDataModule(path=str(tmp_path / "missing.mp4")), "missing.mp4", "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(lambda: VideoDataModule(path=str(tmp_path / "empty")).setup(), "no video files")
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    one_line_error(lambda: VideoDataModule(path=str(tmp_path / "fake.mp4")).setup(), "fake.mp4")


# ------------------------------------------------------------------------------------------------------ reproducible
def test_batches_do_not_depend_on_workers_and_datasets_pickle():
    import pickle

    def first(dm):
        return next(iter(dm.train_dataloader()))

    a = first(TextDataModule(seq_len=64, batch_size=8))
    b = first(TextDataModule(seq_len=64, batch_size=8, num_workers=2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for dm in (TextDataModule(seq_len=32), ImageDataModule(), FlowDataModule(num_train=4), VideoDataModule()):
        dm.setup()
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            pickle.loads(pickle.dumps(loader.dataset))  # spawn-started workers receive the dataset pickled
