"""``model.export`` and ``perceiverio export``: every task model's ONNX file runs in onnxruntime like PyTorch eager,
at batch sizes and lengths other than the example's; input contracts of the method and the command."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perceiverio import (
    EncoderConfig,
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultimodalAutoencoder,
    MultimodalAutoencoderConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    OpticalFlow,
    OpticalFlowConfig,
    PerceiverIO,
    PerceiverIOConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    SetModel,
    SetModelConfig,
)
from perceiverio.cli import main
from perceiverio.weights import export as export_module
from perceiverio.weights.export import compare_onnx, relative_difference
from perceiverio.weights.export_inputs import ExportModule, signature

TINY = {
    "mlm": lambda: MaskedLanguageModel(MaskedLanguageModelConfig.tiny(max_seq_len=64)),
    "sequence": lambda: SequenceClassifier(SequenceClassifierConfig.tiny(max_seq_len=64)),
    "multitask": lambda: MultitaskClassifier(MultitaskClassifierConfig.tiny(max_seq_len=64)),
    "image": lambda: ImageClassifier(ImageClassifierConfig.tiny()),
    # 64 × 80 = 5,120 tokens: more than one key/value chunk of CPU eager (KV_CHUNK_SIZE); queries decoded in 3 chunks
    "flow": lambda: OpticalFlow(OpticalFlowConfig.tiny(train_size=(64, 80), decoder_chunk_size=2048)),
    "multimodal": lambda: MultimodalAutoencoder(MultimodalAutoencoderConfig.tiny()),
    "set": lambda: SetModel(SetModelConfig.tiny()),
    "plain": lambda: PerceiverIO.from_config(
        PerceiverIOConfig(
            num_input_channels=8,
            num_output_queries=6,
            encoder=EncoderConfig(num_latents=4, num_latent_channels=16, num_self_attention_heads=2),
        )
    ),
}


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return TINY[name]().eval()


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_export_matches_eager_at_other_batch_sizes_and_lengths(name, tmp_path):
    model = _build(name)
    path = tmp_path / "model.onnx"
    result = model.export(path)
    assert result.path == path and path.is_file() and result.size_bytes == path.stat().st_size
    assert result.max_relative_difference is not None and result.max_relative_difference <= 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left behind

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    sig = signature(model)
    assert [i.name for i in proto.graph.input] == list(sig.inputs)
    assert [o.name for o in proto.graph.output] == list(sig.outputs)
    for value in proto.graph.input:  # the dynamic axes are symbolic in the file, the others fixed
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            assert bool(dim.dim_param) == (axis in sig.dynamic[value.name]), (value.name, axis)

    # an independent run at batch 1 and a short length, neither of which the export or its check saw
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    args = sig.example(1, 5 if sig.has_length else None)
    with torch.no_grad():
        expected = [t.numpy() for t in ExportModule(model, sig)(*args)]
    got = session.run(None, {n: a.numpy() for n, a in zip(sig.inputs, args)})
    assert len(got) == len(expected) == len(sig.outputs)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert relative_difference(e, g) <= 1e-4
    if "attention_mask" in sig.inputs:  # the mask is an input of the graph, not a constant: padding changes outputs
        ids, mask = sig.example(2, 20)
        feeds = [{"input_ids": ids.numpy(), "attention_mask": m.numpy()} for m in (torch.ones_like(mask), mask)]
        full, padded = (session.run(None, f)[0] for f in feeds)
        assert np.abs(full - padded).max() > 1e-3


def test_the_check_detects_a_wrong_file(tmp_path):
    model = _build("set")
    path = tmp_path / "set.onnx"
    model.export(path)
    other = _build("set")
    with torch.no_grad():  # a slightly different model: the file no longer matches it
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sig = signature(other)
    assert compare_onnx(path, ExportModule(other, sig), ((2, 7),)) > 1e-2


def test_pt2_export_runs_at_another_batch_size(tmp_path):
    model = _build("mlm")
    path = tmp_path / "mlm.pt2"
    result = model.export(path, format="pt2")
    assert result.opset is None and result.max_relative_difference <= 1e-5
    program = torch.export.load(str(path)).module()
    ids = torch.randint(0, 262, (1, 9))
    mask = torch.ones(1, 9, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(program(ids, mask)[0], model(ids, mask).logits, rtol=1e-5, atol=1e-5)


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "compare_program", lambda *a: 0.5)
    path = tmp_path / "set.pt2"
    with pytest.raises(ValueError, match="differs from PyTorch eager by 0.5"):
        _build("set").export(path, format="pt2")
    assert list(tmp_path.iterdir()) == []


def test_export_contracts(tmp_path):
    model = _build("set")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "old.onnx").write_text("x")
    bad = [
        (dict(path=tmp_path / "m.onnx", format="tf"), ValueError, "format must be one of onnx, pt2"),
        (dict(path=tmp_path / "m.onnx", opset=17), ValueError, r"opset must be an int in \[18, 23\], got 17"),
        (dict(path=tmp_path / "m.onnx", opset=24), ValueError, "opset must be an int"),
        (dict(path=tmp_path / "m.onnx", opset="18"), ValueError, "opset must be an int"),
        (dict(path=tmp_path / "m.pt2", format="pt2", opset=18), ValueError, "opset applies to format='onnx' only"),
        (dict(path=3), TypeError, "path must be a file path"),
        (dict(path=tmp_path), ValueError, "is a folder"),
        (dict(path=tmp_path / "missing" / "m.onnx"), FileNotFoundError, "does not exist"),
        (dict(path=tmp_path / "file.txt" / "m.onnx"), ValueError, "is not a folder"),
        (dict(path=tmp_path / "old.onnx"), ValueError, "already exists; pass overwrite=True"),
        (dict(path=tmp_path / "m.onnx", tolerance=0), ValueError, "tolerance must be a positive number"),
    ]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            model.export(**kwargs)
    with pytest.raises(ValueError, match="needs a float32 model"):
        _build("set").half().export(tmp_path / "h.onnx")
    with pytest.raises(TypeError, match="PerceiverIO model"):
        export_module.export_model(torch.nn.Linear(2, 2), tmp_path / "l.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "old.onnx"]


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        main(argv)
    except SystemExit as e:
        return (e.code if isinstance(e.code, int) else 1), str(e.code) + capsys.readouterr().err
    return 0, capsys.readouterr().out


def test_cli_export_writes_a_checked_onnx_file(tmp_path, capsys):
    folder = tmp_path / "image"
    _build("image").save_pretrained(folder)
    code, out = _cli(["export", str(folder), "--format", "onnx", "--opset", "20"], capsys)
    assert code == 0, out
    assert "ONNX opset 20" in out and "images (dynamic {0: batch})" in out and "outputs: logits" in out
    assert "onnxruntime vs PyTorch eager (batch 2, batch 3): max relative difference" in out
    diff = float(out.split("max relative difference ")[1].split()[0])
    assert diff <= 1e-4
    proto = onnx.load(str(folder / "model.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 20
    # refuses to overwrite without --overwrite; the file is untouched
    before = (folder / "model.onnx").stat().st_mtime_ns
    code, out = _cli(["export", str(folder), "--format", "onnx"], capsys)
    assert code == 1 and "already exists; pass --overwrite" in out and "--out" in out
    assert (folder / "model.onnx").stat().st_mtime_ns == before


def test_cli_export_contracts(tmp_path, capsys):
    folder = tmp_path / "set"
    _build("set").save_pretrained(folder)
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (["export", str(tmp_path / "missing"), "--format", "onnx"], "does not exist"),
        (["export", str(tmp_path / "file.txt"), "--format", "onnx"], "MODEL_DIR"),
        (["export", str(tmp_path / "empty"), "--format", "onnx"], "has no config.json or model.safetensors"),
        (["export", str(folder), "--format", "tf"], "--format"),
        (["export", str(folder)], "--format"),
        (["export", str(folder), "--format", "onnx", "--opset", "99"], "--opset: opset must be an int in [18, 23]"),
        (["export", str(folder), "--format", "onnx", "--opset", "x"], "--opset"),
        (["export", str(folder), "--format", "pt2", "--opset", "18"], "--opset: opset applies to format='onnx'"),
        (["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")], "--out"),
        (["export", str(folder), "--format", "onnx", "--out", str(tmp_path / "file.txt" / "m.onnx")], "--out"),
        (["export", str(folder), "--format", "onnx", "--out", str(tmp_path)], "is a folder"),
    ]
    for argv, message in cases:
        code, out = _cli(argv, capsys)
        assert code in (1, 2) and message in out, (argv, out)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
