"""``perceiverio test`` and ``perceiverio predict`` for every shipped config: a tiny model of each is trained for
two steps, tested, then run on user files; the written files open (PNGs of the stated size, MP4/WAV through PyAV,
``.flo`` round-trips, JSON lines with sorted probabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perceiverio.cli import main
from perceiverio.data.readers.flow import read_flo, write_flo

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = [
    *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
    *("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.default_root_dir", "runs"),
]
TINY_TEXT = [
    *("--model.num_input_channels", "32", "--model.encoder.num_latents", "8"),
    *("--model.encoder.num_latent_channels", "32", "--model.encoder.qk_channels", "32"),
    *("--model.encoder.v_channels", "32", "--model.encoder.num_self_attends_per_block", "1"),
]
TINY_MLM = [
    *TINY_TEXT,
    *("--model.max_seq_len", "32", "--data.seq_len", "32", "--data.batch_size", "4"),
    *("--model.decoder.num_query_channels", "32", "--model.decoder.qk_channels", "32"),
    *("--model.decoder.v_channels", "32", "--data.path", "text.txt", "--data.test_path", "text.txt"),
]
TINY_LATENTS = [
    *("--model.encoder.num_latents", "8", "--model.encoder.num_latent_channels", "32"),
    *("--model.encoder.num_self_attends_per_block", "1"),
]


def _run(capsys, config: str, options: list[str], predict: list[str], steps: int = 2) -> tuple[Path, str]:
    """Fit ``config`` for ``steps`` steps, test and predict from its last checkpoint; returns the predictions
    folder and what ``predict`` printed."""
    common = ["--config", str(CONFIGS / f"{config}.yaml"), *QUIET, *options]
    fit = ["--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "1", "--trainer.max_time", "null"]
    fit += ["--trainer.val_check_interval", "null", "--trainer.check_val_every_n_epoch", "1"]
    main(["fit", *common, *fit])
    ckpt = sorted(Path("runs").rglob("last.ckpt"))[-1]
    capsys.readouterr()
    main(["test", *common, "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "2"])
    assert "test/" in capsys.readouterr().out  # the test metrics are printed
    out = Path("predictions")
    main(["predict", *common, "--ckpt_path", str(ckpt), "--predictions.dirpath", str(out), *predict])
    printed = capsys.readouterr().out
    assert "examples/s" in printed, printed
    return out, printed


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def _check_top_k(lines: list[dict], k: int, labels: set[str]) -> None:
    for line in lines:
        p = line["probabilities"]
        assert len(p) == len(line["labels"]) == k and set(line["labels"]) <= labels, line
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-5, line


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(" ".join(["a for loop iterates over the items of a list"] * 60))
    return tmp_path


@pytest.mark.parametrize("config", ["mlm", "sst2-mlm"])
def test_mlm_fills_masked_bytes(workdir, capsys, config):
    (workdir / "in").mkdir()
    (workdir / "in" / "a.txt").write_text("a for l__p iterates\n\n" + "x" * 40 + "_\n")
    (workdir / "in" / "b.txt").write_text("over the _tems\n")
    extra = ["--data.dataset", "null", "--data.add_embedded", "false"] if config == "sst2-mlm" else []
    out, _ = _run(capsys, config, [*TINY_MLM, *extra], ["--data.predict_path", "in"])
    lines = _lines(out)
    assert [x["input"] for x in lines] == ["a.txt:1", "a.txt:3", "b.txt:1"]
    assert lines[0]["text"] == "a for l__p iterates" and lines[0]["masked"] == 2
    first = lines[0]["filled"].encode("utf-8", "replace")
    assert len(lines[0]["filled"]) >= 17 and "__" not in lines[0]["filled"] and first.startswith(b"a for l")
    assert lines[1]["truncated"] and lines[1]["masked"] == 0 and lines[1]["filled"] == "x" * 32  # cut to seq_len
    assert (out / "filled.txt").read_text().splitlines() == [x["filled"] for x in lines]


def test_sst2_classifier_writes_top_k(workdir, capsys):
    data = workdir / "sst2"
    data.mkdir()
    rows = "".join(f"{s}\t{y}\n" for s, y in [("a good film", 1), ("a bad film", 0)] * 8)
    for name in ("train.tsv", "val.tsv", "glue_dev.tsv"):
        (data / name).write_text("sentence\tlabel\n" + rows)
    (workdir / "reviews.txt").write_text("a good film\nan awful bore\n")
    tiny = [*TINY_TEXT, "--model.max_seq_len", "32", "--data.max_length", "32", "--data.batch_size", "4"]
    tiny += ["--model.decoder.num_query_channels", "32", "--data.path", str(data)]
    out, _ = _run(capsys, "sst2", tiny, ["--data.predict_path", "reviews.txt", "--predictions.top_k", "2"])
    lines = _lines(out)
    assert [x["input"] for x in lines] == ["reviews.txt:1", "reviews.txt:2"]
    _check_top_k(lines, 2, {"0", "1"})
    assert all(abs(sum(x["probabilities"]) - 1) < 1e-5 for x in lines)  # both classes listed: they sum to 1


def _write_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


@pytest.mark.parametrize("config", ["digits", "fashion-mnist"])
def test_image_classifier_writes_top_k(workdir, capsys, config):
    if config == "fashion-mnist" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("the Fashion-MNIST IDX files are not installed")
    _write_images(workdir / "photos" / "sub", 3, (20, 30))
    tiny = [*TINY_LATENTS, "--model.decoder.num_query_channels", "32", "--data.batch_size", "8"]
    if config == "digits":  # the digits have no test split: hold one out (in fit and test alike)
        tiny += ["--data.test_fraction", "0.1"]
    out, printed = _run(capsys, config, tiny, ["--data.predict_path", "photos", "--predictions.top_k", "3"])
    lines = _lines(out)
    assert [x["input"] for x in lines] == ["sub/img0.png", "sub/img1.png", "sub/img2.png"]
    _check_top_k(lines, 3, {str(i) for i in range(10)})
    assert "predicted 3 examples" in printed


def _chairs(folder: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(1)
    flows = []
    for i in range(n):
        for j in range(2):
            img = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{i:05d}-img{j}.ppm")
        flows.append(rng.normal(0, 2, (*size, 2)).astype(np.float32))
        write_flo(folder / f"{i:05d}-gt.flo", flows[-1])
    return flows


# no correlation volume (its cost dominates a tiny model): the queries are 32 patch + 66 Fourier channels
TINY_FLOW = [*TINY_LATENTS, "--model.correlation_radius", "0", "--model.decoder.num_query_channels", "98"]


def test_flow_writes_flo_and_pictures(workdir, capsys):
    _chairs(workdir / "chairs", 2, (64, 96))
    tiny = [*TINY_FLOW, "--data.num_train", "4", "--data.num_val", "1", "--data.batch_size", "2"]
    tiny += ["--data.test_path", "chairs"]
    out, _ = _run(capsys, "flow-synthetic", tiny, ["--data.predict_path", "chairs"])
    from PIL import Image

    lines = _lines(out)
    assert [x["input"] for x in lines] == ["00000-img0.ppm", "00001-img0.ppm"]
    for line in lines:
        flow = read_flo(out / line["flo"])
        assert flow.shape == (64, 96, 2) and np.isfinite(flow).all()
        assert line["epe"] > 0
        for key in ("png", "truth_png"):
            with Image.open(out / line[key]) as im:
                assert im.format == "PNG" and im.size == (96 + 96, 96), im.size  # 64 rows padded to the legend's 96


def test_flow_pairs_consecutive_frames(workdir, capsys):
    from PIL import Image

    (workdir / "frames").mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 96, 3), 40 * i, np.uint8)).save(workdir / "frames" / f"f{i}.png")
    tiny = [*TINY_FLOW, "--data.num_train", "4", "--data.num_val", "1", "--data.batch_size", "2"]
    _run_predict_only = ["predict", "--config", str(CONFIGS / "flow-synthetic.yaml"), *QUIET, *tiny]
    main([*_run_predict_only, "--data.predict_path", "frames", "--predictions.dirpath", "out"])
    lines = _lines(workdir / "out")
    assert [x["input"] for x in lines] == ["f0.png", "f1.png"] and "epe" not in lines[0]
    assert read_flo(workdir / "out" / "f1.flo").shape == (64, 96, 2)


def test_multimodal_writes_video_audio_and_strip(workdir, capsys):
    import av

    from perceiverio.visual.media import write_mp4

    frames = (np.random.default_rng(2).random((17, 32, 32, 3)) * 255).astype(np.uint8)
    write_mp4(workdir / "clip.mp4", frames, fps=24)
    tiny = ["--model.encoder.num_latents", "8", "--model.encoder.num_latent_channels", "32"]
    tiny += ["--model.encoder.num_self_attends_per_block", "1", "--data.batch_size", "2"]
    tiny += ["--data.clips_per_epoch", "4"]
    out, _ = _run(capsys, "multimodal", tiny, ["--data.predict_path", "clip.mp4"])
    (line,) = _lines(out)
    assert line["input"] == "clip.mp4" and line["clips"] == 2  # 17 frames: two clips of 8
    assert np.isfinite(line["psnr_image"]) and line["psnr_audio"] is None  # the file has no audio: silence
    _check_top_k([line["label"]], 5, {str(i) for i in range(10)})
    with av.open(str(out / "clip.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 16 and decoded[0].shape == (32, 32, 3)
    with av.open(str(out / "clip.wav")) as c:
        assert sum(f.samples for f in c.decode(audio=0)) == 2 * 1920
    from PIL import Image

    with Image.open(out / "clip-strip.png") as im:
        assert im.size == tuple(line["strip_size"]) == (8 * 64 + 14, 2 * (64 + 14) + 14)


@pytest.mark.parametrize(
    ("config", "options", "expected"),
    [
        ("mlm", ["--data.path", "text.txt"], "TextDataModule has no predict_path: give --data.predict_path"),
        ("digits", [], "ImageDataModule has no predict_path"),
    ],
)
def test_predict_without_predict_path_says_so_in_one_line(workdir, capsys, config, options, expected):
    with pytest.raises(SystemExit) as e:
        main(["predict", "--config", str(CONFIGS / f"{config}.yaml"), *QUIET, *options])
    assert str(e.value).startswith(f"perceiverio predict: {expected}") and "\n" not in str(e.value), e.value
    assert not Path("runs").exists()  # nothing written before the check
