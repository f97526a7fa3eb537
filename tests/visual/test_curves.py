"""perceiverio plot: training curves from a CSVLogger log, drawn to a PNG of the stated size."""

import os
import time

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from perceiverio.cli import main
from perceiverio.visual.curves import family, figure_size, group, read_metrics


def _log(root, version: int, steps: int = 30) -> str:
    """A run logged by Lightning's own CSVLogger: train/loss and train/lr every step, val/loss and val/acc every
    10 steps (rows of their own, as validation logs them)."""
    logger = CSVLogger(root, name="demo", version=version)
    for step in range(steps):
        logger.log_metrics({"train/loss": 2.0 / (step + 1), "train/lr": 1e-3 * (step + 1) / steps}, step)
        if step % 10 == 9:
            logger.log_metrics({"val/loss": 1.5 / (step + 1), "val/acc": step / steps, "epoch": step // 10}, step)
    logger.save()
    return logger.log_dir


def test_read_metrics_keeps_each_metric_with_its_steps(tmp_path):
    run = _log(tmp_path, 0)
    curves = {c.name: c for c in read_metrics(os.path.join(run, "metrics.csv"))}
    assert set(curves) == {"train/loss", "train/lr", "val/loss", "val/acc"}
    assert curves["train/loss"].steps == tuple(float(s) for s in range(30))
    assert curves["train/loss"].values[4] == pytest.approx(0.4)
    assert curves["val/acc"].steps == (9.0, 19.0, 29.0)
    assert curves["val/acc"].values == pytest.approx((0.3, 19 / 30, 29 / 30))
    panels = group(list(curves.values()))
    assert list(panels) == ["loss", "acc", "learning rate"]
    assert [c.name for c in panels["loss"]] == ["train/loss", "val/loss"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("train/loss", "loss"),
        ("val/loss", "loss"),
        ("val_loss", "loss"),
        ("train_acc_epoch", "acc"),
        ("val/acc", "acc"),
        ("train/lr", "learning rate"),
        ("lr-AdamW", "learning rate"),
        ("learning_rate", "learning rate"),
        ("train/epe", "epe"),
        ("trainer_speed", "trainer_speed"),
    ],
)
def test_metric_families(name, expected):
    assert family(name) == expected


def test_plot_writes_a_png_of_the_stated_size_from_the_newest_run(tmp_path, capsys):
    old = _log(tmp_path, 0, steps=12)
    new = _log(tmp_path, 1)
    past = time.time() - 100
    os.utime(os.path.join(old, "metrics.csv"), (past, past))
    main(["plot", str(tmp_path)])  # a folder above the runs: the newest version is drawn, and named
    out = capsys.readouterr().out
    assert f"drawing the newest, {new}" in out
    png = os.path.join(new, "curves.png")
    assert f"wrote {png} (1440×320 pixels)" in out and "4 curves up to step 29" in out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == figure_size(3) == (1440, 320)
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels.std(axis=(0, 1)) > 10).all()  # lines and text, not a blank picture
    target = tmp_path / "pictures" / "curves.png"
    main(["plot", old, "--out", str(target), "--title", "twelve steps"])  # a version folder itself
    with Image.open(target) as image:
        assert image.size == (1440, 320)
    assert not [f for f in os.listdir(tmp_path / "pictures") if f.endswith(".tmp")]  # written through a rename


def _exit(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = e.value.code if isinstance(e.value.code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_plot_errors_are_one_line(tmp_path, capsys):
    assert "RUN_DIR" in _exit(capsys, ["plot", str(tmp_path / "missing")])
    message = _exit(capsys, ["plot", str(tmp_path)])
    assert message.startswith("perceiverio plot: RUN_DIR") and "has no metrics.csv" in message
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "metrics.csv").write_text("")
    assert "is empty" in _exit(capsys, ["plot", str(tmp_path / "v")])
    (tmp_path / "v" / "metrics.csv").write_text("epoch,step,train/loss\n")
    assert "holds no logged value" in _exit(capsys, ["plot", str(tmp_path / "v")])
    (tmp_path / "v" / "metrics.csv").write_text("a,b\n1,2\n")
    assert "has no 'step' column" in _exit(capsys, ["plot", str(tmp_path / "v")])
    run = _log(tmp_path, 3)
    assert "--out must name a .png file" in _exit(capsys, ["plot", run, "--out", "curves.jpg"])
    assert "unrecognized arguments: --nope" in _exit(capsys, ["plot", run, "--nope"])
