"""``perceiverio export MODEL_DIR --format onnx|pt2``: a saved model as one ONNX file or ``torch.export`` program,
checked against PyTorch.

``perceiverio export MODEL_DIR --format onnx|pt2 [--out FILE] [--opset N] [--overwrite]`` exports the model of a
folder written by ``save_pretrained`` (``config.json`` + ``model.safetensors``): ONNX through the dynamo exporter
(opset 18 by default, 18-23) or a ``torch.export`` program, with a dynamic batch axis (and length for text and sets).

The written file is run on the model's example inputs at two batch sizes (and lengths) with onnxruntime (ONNX) or
``torch.export.load`` (pt2) and compared with PyTorch eager; a relative difference above 1e-4 fails with exit
status 1 and writes nothing. ``--out`` defaults to ``MODEL_DIR/model.onnx`` (``model.pt2``); an existing file is
replaced only with ``--overwrite``. Inputs, outputs and dynamic axes of each model: docs/export.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import MODEL_FILES

PROG = "perceiverio export"
_OPTIONS = {"path": "--out", "opset": "--opset", "format": "--format"}  # argument of export_model -> option


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: {message}")


def _option_message(error: Exception) -> str:
    """An export_model contract message with its argument renamed to the command's option."""
    text = str(error)
    first = text.split(" ", 1)[0].rstrip(":")
    option = _OPTIONS.get(first)
    if option is None:
        return text
    return f"{option}: {text.replace('overwrite=True (CLI: --overwrite)', '--overwrite')}"


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a folder with model.safetensors + config.json (save_pretrained)")
    parser.add_argument("--format", required=True, choices=["onnx", "pt2"], help="onnx: ONNX file; pt2: torch.export")
    parser.add_argument("--out", type=Path, help="file to write (default: MODEL_DIR/model.onnx or model.pt2)")
    parser.add_argument("--opset", type=int, help="ONNX opset, 18 (default) to 23; onnx only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)

    from ..weights.export import SUFFIXES, check_export_args, export_model

    folder: Path = args.model
    if not folder.exists():
        raise _fail(f"MODEL_DIR {str(folder)!r} does not exist; expected a folder written by save_pretrained")
    if not folder.is_dir():
        raise _fail(f"MODEL_DIR {str(folder)!r} is a file; expected a folder written by save_pretrained")
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise _fail(
            f"MODEL_DIR {str(folder)!r} has no {' or '.join(missing)}; expected a folder written by save_pretrained"
        )
    out = args.out if args.out is not None else folder / f"model{SUFFIXES[args.format]}"
    try:  # before loading the model: a bad --out or --opset fails at once
        check_export_args(out, args.format, args.opset, args.overwrite)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _fail(_option_message(e)) from None

    from ..core.perceiver import PerceiverIO

    try:
        model = PerceiverIO.from_pretrained(folder)
    except (ValueError, KeyError, OSError) as e:
        raise _fail(f"MODEL_DIR {str(folder)!r}: {e}") from None
    print(f"{type(model).__name__}: {model.num_parameters():,} parameters", flush=True)
    try:
        result = export_model(model, out, args.format, opset=args.opset, overwrite=args.overwrite, progress=True)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _fail(_option_message(e)) from None
    except OSError as e:
        raise _fail(f"--out {str(out)!r}: cannot write: {e}") from None
    dims = {n: ", ".join(f"{a}: {d}" for a, d in axes.items()) for n, axes in result.dynamic_axes.items()}
    what = f"ONNX opset {result.opset}" if result.format == "onnx" else "torch.export program"
    print(f"wrote {result.path} ({what}, {result.size_bytes / 1e6:.1f} MB) in {result.export_seconds:.1f} s")
    inputs = ", ".join(f"{n} (dynamic {{{dims[n]}}})" for n in result.inputs)
    print(f"inputs: {inputs}; outputs: {', '.join(result.outputs)}")
    runner = "onnxruntime" if result.format == "onnx" else "torch.export.load"
    shapes = ", ".join(f"batch {b}" + (f" length {n}" if n else "") for b, n in result.checked_shapes)
    print(
        f"{runner} vs PyTorch eager ({shapes}): max relative difference {result.max_relative_difference:.2e} "
        f"(tolerance 1e-04; {result.check_seconds:.1f} s)"
    )
