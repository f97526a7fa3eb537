"""The perceiverio command line: one-line errors, conversion commands, fill-mask, a short fit, failing loudly
(divergence, unwritable folders, default_root_dir, convert --overwrite)."""

import dataclasses
import json
import os
import pickle

import pytest
import torch

from perceiverio import MaskedLanguageModel, MaskedLanguageModelConfig, SequenceClassifier
from perceiverio.cli import fill_mask, main
from perceiverio.weights import to_haiku


def _one_line_exit(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    message = str(e.value.code)
    assert "\n" not in message and message.startswith("perceiverio"), message
    return message


def test_config_typo_is_one_line(capsys):
    assert "max_stepz" in _one_line_exit(capsys, ["fit", "--trainer.max_stepz", "3"])


def test_missing_data_path_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    message = _one_line_exit(capsys, ["fit", "--data.path", str(tmp_path / "nope"), "--trainer.max_steps", "1"])
    assert "nope" in message and "does not exist" in message


def test_unknown_command():
    with pytest.raises(SystemExit, match="unknown command"):
        main(["train"])


def test_convert_hf_reproduces_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.PerceiverConfig(
        num_latents=6,
        d_latents=32,
        d_model=16,
        num_self_attends_per_block=2,
        num_self_attention_heads=4,
        num_cross_attention_heads=2,
        max_position_embeddings=24,
        num_labels=3,
    )
    hf = transformers.PerceiverForSequenceClassification(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    main(["convert", "hf", str(tmp_path / "hf"), str(tmp_path / "ours")])
    ours = SequenceClassifier.from_pretrained(tmp_path / "ours")
    ids = torch.randint(0, 262, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(inputs=ids).logits, atol=1e-5, rtol=0)


def _eight_head_mlm() -> MaskedLanguageModel:
    tiny = MaskedLanguageModelConfig.tiny()  # Haiku arrays do not reveal heads: the released 8/8/8 are assumed
    encoder = dataclasses.replace(tiny.encoder, num_cross_attention_heads=8, num_self_attention_heads=8)
    decoder = dataclasses.replace(tiny.decoder, num_heads=8)
    return MaskedLanguageModel(dataclasses.replace(tiny, encoder=encoder, decoder=decoder)).eval()


def test_convert_haiku_pickle(tmp_path):
    model = _eight_head_mlm()
    (tmp_path / "params.pickle").write_bytes(pickle.dumps(to_haiku(model)))
    main(["convert", "haiku", str(tmp_path / "params.pickle"), str(tmp_path / "out")])
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["model_class"].endswith("MaskedLanguageModel")
    loaded = MaskedLanguageModel.from_pretrained(tmp_path / "out")
    ids = torch.randint(0, 262, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


def test_convert_haiku_with_config_for_other_heads(tmp_path):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()  # 4 heads
    model.save_pretrained(tmp_path / "reference")
    (tmp_path / "params.pickle").write_bytes(pickle.dumps(to_haiku(model)))
    main(
        [
            "convert",
            "haiku",
            str(tmp_path / "params.pickle"),
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "reference" / "config.json"),
        ]
    )
    ids = torch.randint(0, 262, (2, 30))
    with torch.no_grad():
        loaded = MaskedLanguageModel.from_pretrained(tmp_path / "out")
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


def test_convert_errors(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["convert", "hf", str(tmp_path / "missing"), str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no config.json"):
        main(["convert", "hf", str(tmp_path / "empty"), str(tmp_path / "out")])


def test_fill_mask_fills_exactly_the_word(tmp_path, capsys):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    text = "a for loop iterates over a sequence."
    filled = fill_mask(model, text, "sequence")
    assert filled.startswith("a for loop iterates over a ") and filled.endswith(".")
    assert len(filled.encode()) == len(text.encode()) or "\ufffd" in filled
    model.save_pretrained(tmp_path / "m")
    main(["fill-mask", str(tmp_path / "m"), "--text", text, "--word", "loop"])
    assert capsys.readouterr().out.strip().startswith("a for ")
    with pytest.raises(SystemExit, match="does not occur"):
        main(["fill-mask", str(tmp_path / "m"), "--text", text, "--word", "while"])


def test_fill_mask_fills_exactly_the_marked_bytes(tmp_path, capsys):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    text = "a f_r loop it_rates over a seq_ence."
    filled = fill_mask(model, text, mask_char="_")
    assert len(filled) == len(text) or "\ufffd" in filled
    keep = [i for i, ch in enumerate(text) if ch != "_"]
    if len(filled) == len(text):
        assert all(filled[i] == text[i] for i in keep)
    model.save_pretrained(tmp_path / "m")
    main(["fill-mask", str(tmp_path / "m"), "--text", text, "--mask-char", "_"])
    assert capsys.readouterr().out.strip().startswith("a f")
    with pytest.raises(SystemExit, match="no '#' to fill"):
        main(["fill-mask", str(tmp_path / "m"), "--text", text, "--mask-char", "#"])
    with pytest.raises(SystemExit, match="single-byte"):
        main(["fill-mask", str(tmp_path / "m"), "--text", text, "--mask-char", "é"])
    with pytest.raises(SystemExit):  # exactly one of --word / --mask-char
        main(["fill-mask", str(tmp_path / "m"), "--text", text, "--word", "loop", "--mask-char", "_"])


def test_fit_default_config_exports_a_loadable_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--model.encoder.num_latents",
            "16",
            "--trainer.max_steps",
            "4",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--export.dirpath",
            str(tmp_path / "model"),
            "--progress.every_n_steps",
            "2",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.val_check_interval",
            "4",
            "--trainer.check_val_every_n_epoch",
            "null",
        ]
    )
    model = MaskedLanguageModel.from_pretrained(tmp_path / "model")
    assert model.config.max_seq_len == 128
    assert model.config.routing_init == "local"  # the demo recipe (configs/mlm.yaml)
    assert model.config.encoder.num_latents == 16  # the override (the packaged config has 64)
    # without a progress bar, plain progress lines: steps 2 and 4 of 4, then the validation metrics
    lines = capsys.readouterr().out.splitlines()
    steps = [ln for ln in lines if ln.startswith("step ")]
    assert [ln.split()[1] for ln in steps] == ["2/4", "4/4"] and all("loss " in ln for ln in steps)
    assert any(ln.startswith("validation at step 4:") and "val/masked_byte_acc" in ln for ln in lines)
    assert (tmp_path / "runs" / "mlm" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "runs" / "mlm" / "version_0" / "metrics.csv").is_file()
    # the checkpoint's hyper-parameters are the task module's flat arguments, as plain data
    from perceiverio.training import MaskedLanguageModelTask

    task = MaskedLanguageModelTask.load_from_checkpoint(
        tmp_path / "runs" / "mlm" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert task.model.config == model.config and task.optimizer_config.name == "adamw"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in task.model.state_dict().items())
    # `make demo` validates the last checkpoint: its hyper-parameters (16 latents) are parsed back into the config,
    # else the packaged config's 64-latent model could not load the weights
    capsys.readouterr()
    ckpt = tmp_path / "runs" / "mlm" / "version_0" / "checkpoints" / "last.ckpt"
    main(["validate", "--ckpt_path", str(ckpt), "--trainer.logger", "false", "--trainer.limit_val_batches", "2"])
    assert "val/masked_byte_acc" in capsys.readouterr().out


def _print_config(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as e:
        main(["fit", *args, "--print_config"])
    assert e.value.code in (0, None)
    return capsys.readouterr().out


def test_print_config_defaults_to_the_best_accelerator(capsys):
    import yaml

    config = yaml.safe_load(_print_config(capsys))
    assert config["trainer"]["accelerator"] == "auto" and config["trainer"]["devices"] == "auto"
    config = yaml.safe_load(_print_config(capsys, "--trainer.accelerator", "cpu"))
    assert config["trainer"]["accelerator"] == "cpu"


def test_model_options_are_one_level_below_model(capsys):
    """``--model.encoder.num_latents``, not ``--model.init_args.model.encoder...``: the task module takes its model
    config's fields directly, and --print_config shows them there."""
    import yaml

    config = yaml.safe_load(
        _print_config(
            capsys,
            "--model.encoder.num_latents",
            "48",
            "--model.max_seq_len",
            "96",
            "--model.optimizer.lr",
            "3e-4",
            "--data.masking",
            "whole_word",
        )
    )
    model = config["model"]["init_args"]
    assert config["model"]["class_path"].endswith("MaskedLanguageModelTask") and "model" not in model
    assert model["encoder"]["num_latents"] == 48 and model["max_seq_len"] == 96
    assert model["routing_init"] == "local" and model["encoder"]["num_latent_channels"] == 192  # from configs/mlm.yaml
    assert model["optimizer"]["lr"] == pytest.approx(3e-4)
    assert config["data"]["init_args"]["masking"] == "whole_word"
    message = _one_line_exit(capsys, ["fit", "--model.model.encoder.num_latents", "8"])  # the old spelling
    assert "is now --model.encoder.num_latents" in message
    assert "num_latentz" in _one_line_exit(capsys, ["fit", "--model.encoder.num_latentz", "8"])
    assert "max_seq_len" in _one_line_exit(capsys, ["fit", "--model.max_seq_len", "many"])


# ------------------------------------------------------------------------------------------------ failing loudly
TINY_FIT = [
    "fit",
    *("--data.path", "text.txt", "--data.seq_len", "32", "--data.batch_size", "4", "--model.max_seq_len", "32"),
    *("--model.num_input_channels", "32", "--model.encoder.num_latents", "8"),
    *("--model.encoder.num_latent_channels", "32", "--model.encoder.qk_channels", "32"),
    *("--model.encoder.v_channels", "32", "--model.encoder.num_self_attends_per_block", "1"),
    *("--model.decoder.num_query_channels", "32", "--model.decoder.qk_channels", "32"),
    *("--model.decoder.v_channels", "32", "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1"),
    *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
    *("--trainer.accelerator", "cpu", "--trainer.devices", "1"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty current folder holding a small text to train on."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(" ".join(["a for loop iterates over the items of a list"] * 60))
    return tmp_path


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "text.txt")


def test_fit_that_diverges_exits_with_one_line_and_exports_nothing(workdir, capsys):
    message = _one_line_exit(capsys, [*TINY_FIT, "--model.optimizer.lr", "1e30"])
    assert message.startswith("perceiverio fit: training diverged at step 2 at learning rate"), message
    assert "loss nan" in message and "gradient_clip_val" in message and "--nonfinite.action skip" in message
    assert not [f for f in _files(workdir) if f.endswith((".safetensors", ".ckpt"))], _files(workdir)


def test_default_root_dir_holds_every_output(workdir, capsys):
    main([*TINY_FIT, "--trainer.default_root_dir", "out", "--nonfinite.action", "skip"])
    files = _files(workdir)
    assert files and all(f.startswith("out/mlm/version_0/") for f in files), files
    assert {"config.yaml", "checkpoints/last.ckpt", "model/model.safetensors", "model/config.json"} <= {
        f[len("out/mlm/version_0/") :] for f in files
    }
    assert not (workdir / "runs").exists()


def test_output_folders_are_checked_before_the_first_step(workdir, capsys):
    (workdir / "taken").write_text("a file")
    message = _one_line_exit(capsys, [*TINY_FIT, "--export.dirpath", "taken"])
    assert "export.dirpath 'taken' cannot be a folder: a file is in the way" in message, message
    message = _one_line_exit(capsys, [*TINY_FIT, "--trainer.default_root_dir", "taken/runs"])
    assert "trainer.default_root_dir 'taken/runs' cannot be a folder inside 'taken'" in message, message
    assert _files(workdir) == ["taken"] and "step " not in capsys.readouterr().out


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="chmod does not keep root from writing")
def test_a_read_only_checkpoint_folder_fails_before_the_first_step(workdir, capsys):
    (workdir / "ro").mkdir(mode=0o555)
    try:
        message = _one_line_exit(capsys, [*TINY_FIT, "--checkpoint.dirpath", "ro/ckpt"])
    finally:
        (workdir / "ro").chmod(0o755)
    assert "checkpoint.dirpath 'ro/ckpt' cannot be created (Permission denied)" in message, message


def test_convert_refuses_to_replace_a_model_without_overwrite(tmp_path, capsys):
    (tmp_path / "params.pickle").write_bytes(pickle.dumps(to_haiku(_eight_head_mlm())))
    (tmp_path / "empty").mkdir()
    convert = ["convert", "haiku", str(tmp_path / "params.pickle")]
    main([*convert, str(tmp_path / "empty")])  # an empty folder, or a new one, takes the model
    before = (tmp_path / "empty" / "model.safetensors").stat().st_mtime_ns
    message = _one_line_exit(capsys, [*convert, str(tmp_path / "empty")])
    assert "already holds a model (config.json, model.safetensors)" in message and "--overwrite" in message
    assert (tmp_path / "empty" / "model.safetensors").stat().st_mtime_ns == before
    main([*convert, str(tmp_path / "empty"), "--overwrite"])
    assert "wrote MaskedLanguageModel" in capsys.readouterr().out
    assert (tmp_path / "empty" / "model.safetensors").stat().st_mtime_ns != before
    (tmp_path / "file").write_text("x")
    assert "is a file" in _one_line_exit(capsys, [*convert, str(tmp_path / "file")])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "--ckpt_path 'missing.ckpt' is not found; expected a .ckpt file"),
        (b"", "--ckpt_path 'bad.ckpt' is not a readable checkpoint: it is empty or cut short"),
        (b"{not a checkpoint", "--ckpt_path 'bad.ckpt' is not a readable checkpoint: not a torch file"),
        ("plain", "--ckpt_path 'bad.ckpt' is not a Lightning checkpoint (no state_dict)"),
    ],
)
def test_a_bad_ckpt_path_is_named_before_lightning_reads_it(workdir, capsys, content, expected):
    name = "missing.ckpt" if content is None else "bad.ckpt"
    if content == "plain":
        torch.save({"weights": torch.zeros(2)}, workdir / name)
    elif content is not None:
        (workdir / name).write_bytes(content)
    message = _one_line_exit(capsys, ["validate", "--ckpt_path", name, "--trainer.logger", "false"])
    assert expected in message, message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("devices", "10000000000000", "--trainer.devices '10000000000000' is out of range"),  # was a MemoryError
        ("devices", "nan", "--trainer.devices 'nan' is not a device choice"),
        ("devices", "0,1", "the --trainer options do not make a Trainer: `devices` selected with `CPUAccelerator`"),
        ("num_nodes", "0", "--trainer.num_nodes 0 must be a count of machines"),
        ("accumulate_grad_batches", "0", "--trainer.accumulate_grad_batches 0 must be a count of batches"),
    ],
)
def test_bad_trainer_counts_are_one_line(workdir, capsys, option, value, expected):
    assert TINY_FIT[-2:] == ["--trainer.devices", "1"]
    message = _one_line_exit(capsys, [*TINY_FIT[:-2], f"--trainer.{option}", value])
    assert expected in message, message
    assert _files(workdir) == []
