"""``model.export(path, format="onnx"|"pt2")``: one file that runs the model without this library.

* ``onnx``: the dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``), ONNX opset 18 by default
  (:data:`MIN_OPSET` to :data:`MAX_OPSET`); the file is then run with onnxruntime and compared with PyTorch eager.
* ``pt2``: a ``torch.export`` program (``torch.export.save``; load with ``torch.export.load(path).module()``),
  compared with eager the same way.

The graph reads and writes the plain tensors of :mod:`.export_inputs` (e.g. ``input_ids``/``attention_mask`` ->
``logits`` for text), with a dynamic batch axis (and a dynamic length for text, sets and the plain model). The
check runs the example inputs and a second batch size and length (so that the dynamic axes are really exercised)
and fails, writing nothing, when an output differs from eager by more than ``tolerance`` relative to the largest
eager value (1e-4 by default, float32). The file appears atomically (temporary file, then rename).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from ..files import atomic_write
from .export_inputs import BATCH, EXAMPLE_BATCH, LENGTH, ExportModule, ExportSignature, signature

FORMATS = ("onnx", "pt2")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 18  # the dynamo exporter's torchlib is written for opset 18
TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote: the file, its interface and how closely it matches eager."""

    path: Path
    format: str
    opset: int | None  # None for pt2
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    checked_shapes: tuple[tuple[int, int | None], ...]  # (batch, length) of each comparison with eager
    max_relative_difference: float | None  # None when not checked
    export_seconds: float  # tracing, conversion and writing
    check_seconds: float  # the comparison with eager (0 when not checked)
    size_bytes: int


def check_export_args(path: object, format: object, opset: object, overwrite: bool) -> tuple[Path, str, int | None]:
    """The validated ``(path, format, opset)``: ValueError/TypeError/FileNotFoundError naming the argument."""
    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if opset is not None:
        if format != "onnx":
            raise ValueError(f"opset applies to format='onnx' only, got opset={opset!r} with format={format!r}")
        if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
            raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")
    elif format == "onnx":
        opset = DEFAULT_OPSET
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r}")
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"path {str(out)!r} is a folder; expected a file name such as model{SUFFIXES[format]}")
    parent = out.parent
    if not parent.exists():
        raise FileNotFoundError(f"path: the folder {str(parent)!r} of {str(out)!r} does not exist")
    if not parent.is_dir():
        raise ValueError(f"path: {str(parent)!r} (the folder of {str(out)!r}) is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"path: the folder {str(parent)!r} is not writable")
    if out.exists() and not overwrite:
        raise ValueError(f"path {str(out)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    return out, format, opset


def relative_difference(expected: np.ndarray, got: np.ndarray) -> float:
    """``max |expected - got| / max |expected|`` (inf on a shape mismatch or a non-finite output)."""
    if expected.shape != got.shape or not np.isfinite(got).all():
        return float("inf")
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-12)
    return float(np.abs(expected.astype(np.float64) - got.astype(np.float64)).max(initial=0.0)) / scale


def _check_model(model: object) -> None:
    from ..core.perceiver import PerceiverIO

    if not isinstance(model, PerceiverIO):
        raise TypeError(f"model must be a perceiverio PerceiverIO model, got {type(model).__name__}")
    dtypes = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if dtypes:
        raise ValueError(
            f"export needs a float32 model (the check compares float32 outputs), got {dtypes}: call .float()"
        )


def _dynamic_shapes(sig: ExportSignature) -> tuple[tuple[dict[int, Dim], ...]]:
    """torch.export's ``dynamic_shapes`` for :class:`ExportModule` (one ``*inputs`` argument: a tuple in a tuple)."""
    batch = Dim(BATCH, min=1)
    length = Dim(LENGTH, min=1, max=sig.max_length) if sig.max_length else Dim(LENGTH, min=1)
    dims = {BATCH: batch, LENGTH: length}
    return (tuple({axis: dims[name] for axis, name in sig.dynamic.get(n, {}).items()} for n in sig.inputs),)


def check_shapes(sig: ExportSignature) -> tuple[tuple[int, int | None], ...]:
    """The ``(batch, length)`` at which an export is compared with eager: the example's, then another batch size and
    (for models with a length axis) another length."""
    if not sig.has_length:
        return ((EXAMPLE_BATCH, None), (EXAMPLE_BATCH + 1, None))
    other = max(1, sig.example_length // 2 + 1)
    return ((EXAMPLE_BATCH, sig.example_length), (EXAMPLE_BATCH + 1, other))


def _inputs(sig: ExportSignature, batch: int, length: int | None, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in sig.example(batch, length))


def _eager(module: ExportModule, args: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.detach().float().cpu().numpy() for t in module(*args)]


def compare_onnx(path: str | os.PathLike, module: ExportModule, shapes, device: torch.device | None = None) -> float:
    """Run the ONNX file at ``path`` with onnxruntime (CPU) on the signature's inputs at every ``(batch, length)``
    of ``shapes``; the largest :func:`relative_difference` to eager over all outputs."""
    import onnxruntime as ort

    sig, device = module.signature, device or torch.device("cpu")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, length in shapes:
        args = _inputs(sig, batch, length, device)
        expected = _eager(module, args)
        got = session.run(list(sig.outputs), {n: a.cpu().numpy() for n, a in zip(sig.inputs, args)})
        worst = max([worst, *(relative_difference(e, g) for e, g in zip(expected, got, strict=True))])
    return worst


def compare_program(path: str | os.PathLike, module: ExportModule, shapes, device: torch.device) -> float:
    """Like :func:`compare_onnx` for a saved ``torch.export`` program."""
    with open(path, "rb") as f:
        program = torch.export.load(f).module()
    worst = 0.0
    for batch, length in shapes:
        args = _inputs(module.signature, batch, length, device)
        expected = _eager(module, args)
        with torch.no_grad():
            got = [t.detach().float().cpu().numpy() for t in program(*args)]
        worst = max([worst, *(relative_difference(e, g) for e, g in zip(expected, got, strict=True))])
    return worst


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's notices that concern no user (optional torchvision ops, renamed axes, deprecations)."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        log.setLevel(level)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    opset: int | None = None,
    overwrite: bool = False,
    check: bool = True,
    tolerance: float = TOLERANCE,
    progress: bool = False,
) -> ExportResult:
    """Export ``model`` (any task model) to ``path`` as ONNX or a ``torch.export`` program (see the module docstring).

    Args:
        format: ``"onnx"`` or ``"pt2"``. opset: ONNX opset, 18 (default) to 23; ONNX only.
        overwrite: replace an existing file (otherwise ValueError). check: compare the written file with eager at
            two batch sizes (and lengths); a difference above ``tolerance`` raises ValueError and writes nothing.
        progress: print each stage with its time to stderr.

    The model is exported in eval mode (its mode is restored afterwards); value-reading input checks are off while
    tracing, so the graph holds no data-dependent branch. Returns an :class:`ExportResult`.
    """
    out, format, opset = check_export_args(path, format, opset, overwrite)
    _check_model(model)
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    sig = signature(model)
    device = next(model.parameters()).device
    module = ExportModule(model, sig).eval()
    was_training = model.training
    model.eval()
    shapes = check_shapes(sig)
    args = _inputs(sig, *shapes[0], device)
    worst: float | None = None
    seconds = {"export": 0.0, "check": 0.0}

    def write(tmp: str) -> None:
        nonlocal worst
        start = time.perf_counter()
        _say(progress, f"exporting {type(model).__name__} to {format} (inputs {', '.join(sig.inputs)}) ...")
        with torch.no_grad(), _quiet_exporter():
            if format == "onnx":
                program = torch.onnx.export(
                    module, args, dynamo=True, opset_version=opset, input_names=list(sig.inputs),
                    output_names=list(sig.outputs), dynamic_shapes=_dynamic_shapes(sig), verbose=False,
                )  # fmt: skip
                program.save(tmp)
            else:
                program = torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(sig))
                with open(tmp, "wb") as f:  # a file object: torch.export.save wants a name ending in .pt2 otherwise
                    torch.export.save(program, f)
        del program
        seconds["export"] = time.perf_counter() - start
        _say(progress, f"exported in {seconds['export']:.1f} s")
        if check:
            start = time.perf_counter()
            _say(progress, f"comparing with eager at (batch, length) {list(shapes)} ...")
            compare = compare_onnx if format == "onnx" else compare_program
            worst = compare(tmp, module, shapes, device)
            seconds["check"] = time.perf_counter() - start
            if not worst <= tolerance:
                raise ValueError(
                    f"the {format} export differs from PyTorch eager by {worst:.3g} (relative), more than the "
                    f"tolerance {tolerance:g}; nothing was written to {str(out)!r}"
                )

    try:
        atomic_write(out, write)
    finally:
        model.train(was_training)
    return ExportResult(
        path=out, format=format, opset=opset, inputs=sig.inputs, outputs=sig.outputs, dynamic_axes=sig.dynamic,
        checked_shapes=shapes if check else (), max_relative_difference=worst,
        export_seconds=seconds["export"], check_seconds=seconds["check"], size_bytes=out.stat().st_size,
    )  # fmt: skip


def export(self: nn.Module, path: str | os.PathLike, format: str = "onnx", **options) -> ExportResult:
    """Export this model to ``path`` (``format="onnx"`` or ``"pt2"``), checked against eager; see
    :func:`perceiverio.weights.export.export_model` for the options (opset, overwrite, check, tolerance,
    progress) and docs/export.md for each model's inputs, outputs and dynamic axes."""
    return export_model(self, path, format, **options)
