"""CLI entry points: ``perceiverio convert``, ``fill-mask`` and ``fit``/``validate``/``test``/``predict`` driven
with generated argument lists (a bad value for one option, a missing or damaged file). A clear failure is a
``SystemExit`` whose message (or argparse's last stderr line) names the option; a Python traceback is not."""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from pathlib import Path

from fuzz.cases import Arg, EntryPoint, model
from hypothesis import strategies as st

VALUES = ("-1", "0", "nan", "inf", "1e30", "x", "", "[1,", "{}", "null", "true", "10000000000000")


@functools.cache
def _folders() -> dict[str, Path]:
    root = Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-cli-"))
    model("mlm").save_pretrained(root / "mlm")
    import perceiverio as p

    p.CausalLanguageModel(p.CausalLanguageModelConfig.tiny()).save_pretrained(root / "causal")
    (root / "junk").mkdir()
    (root / "junk" / "config.json").write_text("{not json")
    (root / "junk" / "model.safetensors").write_bytes(b"\0" * 100)
    (root / "file.txt").write_text("hello")
    (root / "train.txt").write_text("The perceiver reads bytes and writes any output through queries. " * 300)
    (root / "held_out.txt").write_text("Held-out prose for the test command, never used in training. " * 20)
    (root / "to_fill.txt").write_text("The perceiver re_ds bytes.\nIt writes _ny output.\n")
    return {
        "mlm": root / "mlm",
        "causal": root / "causal",
        "junk": root / "junk",
        "missing": root / "missing",
        "file": root / "file.txt",
        "held_out": root / "held_out.txt",
        "train": root / "train.txt",
        "to_fill": root / "to_fill.txt",
        "root": root,
    }


class CliError(ValueError):
    pass


def run_cli(argv: list[str]) -> str:
    """``perceiverio.cli.main(argv)``, run in a fresh scratch folder (a generated relative path such as ``inf``
    must not land in the checkout, nor one case's outputs in the next case's inputs): stdout on success; a
    ``CliError`` with the one-line message on a clean non-zero exit."""
    from perceiverio.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            tempfile.TemporaryDirectory(prefix="perceiverio-fuzz-cwd-") as cwd,
            contextlib.chdir(cwd),
        ):
            main(argv)
    except SystemExit as e:
        if e.code in (None, 0):
            return out.getvalue()
        message = e.code if isinstance(e.code, str) else (err.getvalue().strip().splitlines() or ["(no message)"])[-1]
        raise CliError(message.strip()) from None
    return out.getvalue()


@st.composite
def fill_mask_argv(draw) -> tuple[str, list[str]]:
    f = _folders()
    argv = ["fill-mask", str(f["mlm"]), "--text", "The perceiver re_ds bytes.", "--mask-char", "_"]
    what = draw(st.sampled_from(["model", "text", "mask-char", "unknown"]))
    if what == "model":
        argv[1] = str(f[draw(st.sampled_from(["junk", "missing", "file", "root"]))])
        return "model", argv
    if what == "text":
        argv[3] = draw(st.sampled_from(["", "no mask here", "_" * 5000, "\0_", "x" * 70 + "_"]))
        return "--text", argv
    if what == "mask-char":
        argv[5] = draw(st.sampled_from(["", "__", "ab", "é"]))
        return "--mask-char", argv
    return "--bogus", [*argv, "--bogus", draw(st.sampled_from(VALUES))]


@st.composite
def generate_argv(draw) -> tuple[str, list[str]]:
    f = _folders()
    argv = ["generate", str(f["causal"]), "--prompt", "The ", "--max-new-tokens", "3", "--seed", "0"]
    what = draw(st.sampled_from(["model", "prompt", "option", "unknown"]))
    if what == "model":
        argv[1] = str(f[draw(st.sampled_from(["junk", "missing", "file", "root", "mlm"]))])
        return "model", argv
    if what == "prompt":
        argv[3] = ""
        return "--prompt", argv
    if what == "option":
        option = draw(st.sampled_from(["--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--stop"]))
        value = draw(st.sampled_from(VALUES))
        return option, [*argv, option, value]
    return "--bogus", [*argv, "--bogus", draw(st.sampled_from(VALUES))]


@st.composite
def convert_argv(draw) -> tuple[str, list[str]]:
    f = _folders()
    out = str(f["root"] / f"out{draw(st.integers(0, 3))}")
    kind = draw(st.sampled_from(["hf", "haiku", "tf", ""]))
    source = str(f[draw(st.sampled_from(["junk", "missing", "file", "mlm"]))])
    argv = ["convert", kind, source, out]
    if draw(st.booleans()):
        argv += ["--task", draw(st.sampled_from(["mlm", "image", "nope", ""]))]
    if draw(st.booleans()):
        argv += ["--config", str(f[draw(st.sampled_from(["junk", "missing", "file"]))] / "config.json")]
    return "convert", argv


@functools.cache
def _runs() -> dict[str, Path]:
    """Run folders for ``plot``: a CSVLogger log, an empty one, a header-only one, a CSV without steps, NaNs only."""
    root = Path(tempfile.mkdtemp(prefix="perceiverio-fuzz-plot-"))
    logs = {
        "run": "epoch,step,train/loss,train/lr,val/acc\n0,0,2.3,0.001,\n0,1,2.1,0.001,\n0,1,,,0.4\n",
        "empty": "",
        "header": "epoch,step,train/loss\n",
        "no-step": "a,b\n1,2\n",
        "nan": "epoch,step,train/loss\n0,0,nan\n0,1,inf\n",
        "binary": "\x00\xff\xfe",
    }
    for name, text in logs.items():
        (root / name / "version_0").mkdir(parents=True)
        (root / name / "version_0" / "metrics.csv").write_text(text, encoding="latin-1")
    (root / "none").mkdir()
    (root / "file.txt").write_text("hello")
    return {**{name: root / name for name in [*logs, "none", "file.txt"]}, "root": root}


@st.composite
def plot_argv(draw) -> tuple[str, list[str]]:
    runs = _runs()
    argv = ["plot", str(runs["run"])]
    what = draw(st.sampled_from(["RUN_DIR", "--out", "--title", "--bogus"]))
    if what == "RUN_DIR":
        argv[1] = str(runs[draw(st.sampled_from(["empty", "header", "no-step", "nan", "binary", "none", "file.txt"]))])
        argv[1] = draw(st.sampled_from([argv[1], argv[1] + "/version_0", str(runs["root"] / "missing"), ""]))
    elif what == "--out":
        argv += ["--out", draw(st.sampled_from(["x.jpg", "", str(runs["root"]), str(runs["file.txt"]) + "/c.png"]))]
    elif what == "--title":
        argv += ["--title", draw(st.sampled_from(["", "é" * 300, "$\\frac{", "\0"]))]
    else:
        argv += ["--bogus", draw(st.sampled_from(VALUES))]
    return what, argv


@st.composite
def export_argv(draw) -> tuple[str, list[str]]:
    """``perceiverio export`` with one damaged argument; every case fails before exporting (fast)."""
    f = _folders()
    argv = ["export", str(f["mlm"]), "--format", "onnx", "--out", str(f["root"] / "exported.onnx")]
    what = draw(st.sampled_from(["model", "--format", "--opset", "--out", "--overwrite", "unknown"]))
    if what == "model":
        argv[1] = str(f[draw(st.sampled_from(["junk", "missing", "file", "root"]))])
    elif what == "--format":
        argv[3] = draw(st.sampled_from(["tf", "", "ONNX", "pt", *VALUES]))
    elif what == "--opset":
        value = draw(st.sampled_from(["17", "24", "-1", "x", "", "18.5", "1e3", "10000000000000"]))
        argv += ["--opset", value] if draw(st.booleans()) else ["--opset", "18"]
        if argv[-1] == "18":
            argv[3] = "pt2"  # an opset for a pt2 export
    elif what == "--out":
        argv[5] = str(draw(st.sampled_from([f["missing"] / "m.onnx", f["file"] / "m.onnx", f["root"]])))
    elif what == "--overwrite":
        argv[5] = str(f["file"])  # an existing file, without --overwrite
    else:
        argv += ["--bogus", draw(st.sampled_from(VALUES))]
        what = "--bogus"
    return what, argv


OPTIONS = (
    "--trainer.max_steps",
    "--trainer.max_epochs",
    "--trainer.precision",
    "--trainer.devices",
    "--trainer.num_nodes",
    "--trainer.accelerator",
    "--trainer.accumulate_grad_batches",
    "--trainer.gradient_clip_val",
    "--trainer.limit_train_batches",
    "--model.init_args.optimizer.lr",
    "--model.init_args.optimizer.name",
    "--data.init_args.batch_size",
    "--data.init_args.seq_len",
    "--data.init_args.path",
    "--data.init_args.val_fraction",
    "--ckpt_path",
    "--config",
    "--model.init_args.encoder.num_latents",
    "--checkpoint.every_n_train_steps",
    "--data.init_args.predict_path",
    "--data.init_args.mask_char",
    "--predictions.dirpath",
    "--predictions.top_k",
)


@st.composite
def lightning_argv(draw) -> tuple[str, list[str]]:
    command = draw(st.sampled_from(["fit", "validate", "test", "predict"]))
    option = draw(st.sampled_from(OPTIONS))
    value = draw(st.sampled_from([*VALUES, str(_folders()["junk"] / "config.json"), str(_folders()["missing"])]))
    root = str(_folders()["root"] / "runs")
    # one step on short windows (fast_dev_run: no checkpoints or loggers), so bad values meet the code that uses them
    small = [
        "--data.init_args.seq_len",
        "64",
        "--model.init_args.max_seq_len",
        "64",
        "--data.init_args.batch_size",
        "4",
    ]
    if option != "--data.init_args.path":  # a short training text: any batch size stays small
        small += ["--data.init_args.path", str(_folders()["train"])]
    if command == "test":  # the embedded text has no test split: a held-out file, so the damaged option decides
        small += ["--data.init_args.test_path", str(_folders()["held_out"])]
    if command == "predict" and option != "--data.init_args.predict_path":  # lines with bytes to fill
        small += ["--data.init_args.predict_path", str(_folders()["to_fill"])]
    return option, [
        command,
        *small,
        option,
        value,
        "--trainer.default_root_dir",
        root,
        "--trainer.fast_dev_run",
        "1",
        "--export.dirpath",
        root + "/model",
    ]


def _names(argv: list[str], target: str) -> tuple[str, ...]:
    names = [target, target.lstrip("-"), target.split(".")[-1]]
    if target in ("model", "convert"):
        names += [a for a in argv if "/" in a] + [
            "config.json",
            "model.safetensors",
            "source",
            "output",
            "task",
            "invalid choice",
            "folder",
        ]
    return tuple(names)


class Argv(list):
    """An argument list that knows which option it damaged (``names``: what the message must mention)."""

    names: tuple[str, ...] = ()


def _argv(strategy) -> st.SearchStrategy:
    def wrap(pair):
        target, argv = pair
        value = Argv(argv)
        value.names = _names(argv, target)
        return f"{target}", value

    return strategy.map(wrap)


CLI_ENTRY_POINTS = [
    EntryPoint(
        "cli fill-mask", run_cli, {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(fill_mask_argv()))}
    ),
    EntryPoint(
        "cli generate", run_cli, {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(generate_argv()))}
    ),
    EntryPoint(
        "cli convert", run_cli, {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(convert_argv()))}
    ),
    EntryPoint("cli plot", run_cli, {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(plot_argv()))}),
    EntryPoint("cli export", run_cli, {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(export_argv()))}),
    EntryPoint(
        "cli fit/validate/test/predict",
        run_cli,
        {"argv": Arg(lambda rng: ["--help"], kind="value", draws=_argv(lightning_argv()))},
    ),
]
