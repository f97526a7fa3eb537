"""Entry points of the attention maps: task models' ``forward(..., return_attention=True)`` (every other argument
fuzzed as in entry_points.py, and the flag itself) and ``perceiverio attention`` driven with damaged argument lists
(a bad value for one option, a missing or wrong file, a model it cannot draw)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from fuzz.cases import Arg, EntryPoint, model
from fuzz.cli import VALUES, Argv, run_cli
from fuzz.entry_points import CHUNK, TEXT_IDS, TEXT_MASK, B
from hypothesis import strategies as st


def _randn(*shape: int):
    return lambda rng: torch.randn(*shape, generator=rng)


FLAG = Arg(lambda rng: True, kind="value", names=("return_attention",), bad=(1, 0, "yes", None, torch.tensor(True)))


def _mlm(input_ids, attention_mask, chunk_size, return_attention):
    return model("mlm")(input_ids, attention_mask, chunk_size=chunk_size, return_attention=return_attention)


def _classifier(input_ids, attention_mask, return_attention):
    return model("classifier")(input_ids, attention_mask, return_attention=return_attention)


def _image(images, return_attention):
    return model("image")(images, return_attention=return_attention)


def _flow(frames, chunk_size, return_attention):
    return model("flow")(frames, chunk_size=chunk_size, return_attention=return_attention)


@functools.cache
def _folders() -> dict[str, Path]:
    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-attention-"))
    for name in ("image", "flow", "classifier"):
        model(name).save_pretrained(root / name)
    model("set").save_pretrained(root / "set")
    (root / "junk").mkdir()
    (root / "junk" / "config.json").write_text("{not json")
    (root / "junk" / "model.safetensors").write_bytes(b"\0" * 100)
    rng = np.random.default_rng(0)
    for name, size in (
        ("image.png", (40, 30)),
        ("frame1.png", (20, 24)),
        ("frame2.png", (20, 24)),
        ("odd.png", (9, 7)),
    ):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / name)
    (root / "text.txt").write_text("The perceiver reads bytes and writes any output through queries.")
    (root / "empty.txt").write_bytes(b"")
    (root / "bytes.bin").write_bytes(bytes(range(256)))
    return {p.name: p for p in root.iterdir()} | {"missing": root / "missing.png", "root": root}


ATTENTION_OPTIONS = {
    "--latents": ("0,99", "-1", "a,b", "", "1,,2", "3.5"),
    "--head": ("-1", "99", "x", "1.5"),
    "--query-pixel": ("1", "99,0", "0,99", "a,b", "-1,2", "1,2,3"),
    "--mean": ("0.5", "x", "nan", "0.1,0.2,0.3,0.4"),
    "--std": ("0", "-1", "inf", "x"),
    "--max-bytes": ("0", "-5", "x"),
}


@st.composite
def attention_argv(draw) -> tuple[str, list[str]]:
    f = _folders()
    kind = draw(st.sampled_from(["image", "flow", "classifier"]))
    inputs = {"image": ["image.png"], "flow": ["frame1.png", "frame2.png"], "classifier": ["text.txt"]}[kind]
    argv = ["attention", str(f[kind]), *(str(f[i]) for i in inputs), "--out", str(f["root"] / "out")]
    what = draw(st.sampled_from(["model", "inputs", "option", "out", "unknown"]))
    if what == "model":
        argv[1] = str(f[draw(st.sampled_from(["junk", "missing", "text.txt", "root", "set"]))])
        return Argv(argv), ("MODEL_DIR", "config.json", "model.safetensors", "SetModel", argv[1])
    if what == "inputs":
        bad = draw(st.sampled_from(["missing", "text.txt", "bytes.bin", "empty.txt", "odd.png", "root", "none", "3"]))
        names = [str(f["image.png"]), str(f["odd.png"])]
        if bad == "none":
            argv = argv[:2] + argv[2 + len(inputs) :]
        elif bad == "3":
            argv = argv[:2] + [str(f["frame1.png"])] * 3 + argv[2 + len(inputs) :]
        else:
            argv[2 + draw(st.integers(0, len(inputs) - 1))] = str(f[bad])
            names.append(str(f[bad]))
        return Argv(argv), ("INPUT", "frames", "inputs", "image", "takes", *names)
    if what == "option":
        option = draw(st.sampled_from(sorted(ATTENTION_OPTIONS)))
        value = draw(st.sampled_from(ATTENTION_OPTIONS[option] + VALUES))
        extra = [option, value]
        if option in ("--mean", "--std"):  # they go together
            other = "--std" if option == "--mean" else "--mean"
            extra += [other, draw(st.sampled_from(["0.5,0.5,0.5", "1"]))] if draw(st.booleans()) else []
            return Argv(argv + extra), ("--mean", "--std", "mean", "std")
        return Argv(argv + extra), (option, option.lstrip("-"))
    if what == "out":
        argv[argv.index("--out") + 1] = str(f[draw(st.sampled_from(["text.txt", "bytes.bin"]))] / "sub")
        return Argv(argv), ("--out", "out")
    return Argv([*argv, "--bogus", draw(st.sampled_from(VALUES))]), ("--bogus", "unrecognized")


def _with_names(pair) -> tuple[str, Argv]:
    argv, names = pair
    argv.names = names
    return "attention", argv


ATTENTION_ENTRY_POINTS = [
    EntryPoint(
        "MaskedLanguageModel.forward(return_attention)",
        _mlm,
        {"input_ids": TEXT_IDS, "attention_mask": TEXT_MASK, "chunk_size": CHUNK, "return_attention": FLAG},
    ),
    EntryPoint(
        "SequenceClassifier.forward(return_attention)",
        _classifier,
        {"input_ids": TEXT_IDS, "attention_mask": TEXT_MASK, "return_attention": FLAG},
    ),
    EntryPoint(
        "ImageClassifier.forward(return_attention)",
        _image,
        {"images": Arg(_randn(B, 3, 32, 32), names=("images",)), "return_attention": FLAG},
    ),
    EntryPoint(
        "OpticalFlow.forward(return_attention)",
        _flow,
        {"frames": Arg(_randn(B, 2, 3, 24, 32), names=("frames",)), "chunk_size": CHUNK, "return_attention": FLAG},
    ),
    EntryPoint(
        "cli attention",
        run_cli,
        {"argv": Arg(lambda rng: ["attention", "--help"], kind="value", draws=attention_argv().map(_with_names))},
    ),
]
