"""``perceiverio attention`` on tiny models: the PNGs open, the numbers drawn are the model's maps, bad arguments end
in one ``perceiverio attention: ...`` line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from perceiverio import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    OpticalFlow,
    OpticalFlowConfig,
    SetModel,
    SetModelConfig,
)
from perceiverio.cli import main
from perceiverio.cli.attention import query_attention
from perceiverio.visual.attention import byte_label


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention")
    torch.manual_seed(0)
    ImageClassifier(ImageClassifierConfig.tiny()).save_pretrained(root / "image" / "model")
    MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).save_pretrained(root / "mlm" / "model")
    OpticalFlow(OpticalFlowConfig.tiny()).save_pretrained(root / "flow" / "model")
    SetModel(SetModelConfig.tiny()).save_pretrained(root / "set")
    rng = np.random.default_rng(0)
    for name, size in (("image.png", (40, 30)), ("a.png", (12, 16)), ("b.png", (12, 16))):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / name)
    (root / "text.txt").write_text("Perceiver IO reads bytes: é, tabs\tand newlines\n.")
    return root


def _png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_image_text_and_flow_pictures(files, capsys):
    main(["attention", str(files / "image" / "model"), str(files / "image.png"), "--latents", "0,3,15"])
    w, h = _png(files / "image" / "attention" / "image.attention.png")  # default: attention/ in the run folder
    assert w > 400 and h > 100
    assert "predicted class" in capsys.readouterr().out
    out = files / "out"
    main(["attention", str(files / "mlm" / "model"), str(files / "text.txt"), "--out", str(out), "--head", "2"])
    assert min(_png(out / "text.attention.png")) > 100
    main(["attention", str(files / "flow" / "model"), str(files / "a.png"), str(files / "b.png"), "--out", str(out)])
    assert min(_png(out / "a.query-6-8.png")) > 100  # the centre by default
    main(["attention", str(files / "flow" / "model"), str(files / "a.png"), str(files / "b.png"), "--out", str(out)])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_query_attention_is_the_product_of_the_two_maps():
    torch.manual_seed(0)
    model = OpticalFlow(OpticalFlowConfig.tiny()).eval()
    with torch.no_grad():
        _, maps = model(torch.rand(1, 2, 3, 12, 16) * 2 - 1, return_attention=True)
    dec, pixels = query_attention(maps, 37)
    expected = maps.decoder[0, :, 37].mean(0) @ maps.encoder[0].mean(0)  # [M]
    np.testing.assert_allclose(pixels, expected.numpy(), rtol=1e-5, atol=1e-7)
    assert pixels.shape == (12 * 16,) and abs(float(pixels.sum()) - 1) < 1e-5 and abs(float(dec.sum()) - 1) < 1e-5
    dec0, pixels0 = query_attention(maps, 37, head=0)
    np.testing.assert_allclose(dec0, maps.decoder[0, 0, 37].numpy())
    np.testing.assert_allclose(pixels0, (maps.decoder[0, 0, 37] @ maps.encoder[0, 0]).numpy(), rtol=1e-5, atol=1e-7)


def test_byte_labels():
    assert [byte_label(b) for b in (0x41, 0x20, 0x0A, 0xC3)] == ["A", "␣", "x0A", "xC3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{set}", "{text}"], "holds a SetModel"),
        (["{missing}", "{text}"], "MODEL_DIR"),
        (["{image}", "{missing}"], "INPUT"),
        (["{image}", "{text}"], "cannot read image"),
        (["{image}", "{img}", "--latents", "0,16"], "--latents must lie in [0, 16)"),
        (["{image}", "{img}", "--latents", "a"], "--latents must be"),
        (["{image}", "{img}", "--mean", "0.5"], "--mean and --std go together"),
        (["{image}", "{img}", "--mean", "0.5", "--std", "0,1,1"], "--mean must be 3 finite numbers"),
        (["{image}", "{img}", "--mean", "0.5,0.5,0.5", "--std", "0,1,1"], "--std must be 3 finite positive"),
        (["{image}", "{img}", "--head", "-1"], "--head must be a non-negative"),
        (["{flow}", "{a}"], "takes two frames"),
        (["{flow}", "{a}", "{img}"], "the same size"),
        (["{flow}", "{a}", "{b}", "--query-pixel", "12,0"], "--query-pixel must lie inside the 12×16"),
        (["{mlm}", "{text}", "--max-bytes", "0"], "--max-bytes must be a positive"),
    ],
)
def test_bad_arguments_give_one_line(files, args, message):
    paths = {
        "set": files / "set",
        "missing": files / "missing",
        "text": files / "text.txt",
        "image": files / "image" / "model",
        "img": files / "image.png",
        "flow": files / "flow" / "model",
        "mlm": files / "mlm" / "model",
        "a": files / "a.png",
        "b": files / "b.png",
    }
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    with pytest.raises(SystemExit) as info:
        main(["attention", *argv, "--out", str(files / "bad")])
    assert str(info.value.code).startswith("perceiverio attention: ") and message in str(info.value.code)
    assert "\n" not in str(info.value.code)
