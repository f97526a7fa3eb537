"""Generated bad (and good) inputs for every public entry point, shared by the property suite (test_contracts.py,
bounded for ``make test``) and the fuzz report (run.py, as many cases as asked, with any seed).

An entry point is a function of keyword arguments plus a valid value for each argument. A case corrupts one
argument (or none) with a mutation drawn from the argument's kind: a wrong type, a wrong rank, a wrong or empty
size, another dtype, NaN or infinity, out-of-range values, a huge or tiny scale. The contract (:func:`outcome`):

- the call succeeds, and when every input is finite so is every floating output; or
- it raises ``ValueError``, ``TypeError`` or ``FileNotFoundError`` with a one-line message that names the argument.

Anything else (``IndexError`` from deep inside torch, a ``RuntimeError`` about a matmul, a NaN from finite input) is
an unclear failure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hypothesis import strategies as st

CLEAR = (ValueError, TypeError, FileNotFoundError)
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPES = (*FLOATS, torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64)
OTHER_TYPES = (None, 3, 2.5, "text", b"bytes", [1, 2, 3], {"a": 1}, ("x",))


@dataclasses.dataclass(frozen=True)
class Arg:
    """One argument: ``make(rng)`` a valid value; ``kind`` picks the mutations (``float``: float tensors, ``ids``:
    integer tensors in [0, high), ``mask``, ``int``, ``value``: any other value, whose bad values come from
    ``bad``); ``names``: what an error message may call it; ``optional``: None is a valid value."""

    make: Callable[[torch.Generator], Any]
    kind: str = "float"
    names: tuple[str, ...] = ()
    optional: bool = False
    high: int = 0
    bad: tuple[Any, ...] = ()
    draws: Any = None  # a strategy of (label, bad value), for arguments whose bad values are generated


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    name: str
    call: Callable[..., Any]
    args: Mapping[str, Arg]


@dataclasses.dataclass(frozen=True)
class Case:
    entry: EntryPoint
    target: str | None  # the corrupted argument (None: all valid)
    mutation: str
    kwargs: Mapping[str, Any]
    finite: bool  # every input finite

    def __repr__(self) -> str:
        return f"{self.entry.name}({self.target}: {self.mutation})"


# ----------------------------------------------------------------------------------------------- mutations
def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor) and (value.dtype.is_floating_point or value.dtype.is_complex):
        return bool(torch.isfinite(value).all())
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _tensor_mutations(draw: st.DrawFn, arg: Arg, valid: torch.Tensor) -> tuple[str, Any]:
    how = draw(
        st.sampled_from(
            ["type", "rank", "size", "empty", "dtype", "float_dtype", "nonfinite", "range", "scale", "valid"]
        )
    )
    if how == "type":
        value = draw(st.sampled_from([*OTHER_TYPES, "list", "numpy"]))
        if value == "list":
            return "type:list", valid.tolist()
        if value == "numpy":
            return "type:numpy", valid.numpy()
        return f"type:{type(value).__name__}", value
    if how == "rank":
        if draw(st.booleans()) and valid.dim() > 0:
            return "rank:-1", valid.reshape(*valid.shape[:-2], -1) if valid.dim() > 1 else valid[0]
        return "rank:+1", valid.unsqueeze(draw(st.integers(0, valid.dim())))
    if how in ("size", "empty") and valid.dim() > 0:
        dim = draw(st.integers(0, valid.dim() - 1))
        size = (
            0
            if how == "empty"
            else draw(st.integers(1, 2 * valid.shape[dim] + 3).filter(lambda s: s != valid.shape[dim]))
        )
        shape = list(valid.shape)
        shape[dim] = size
        index = torch.arange(size) % max(valid.shape[dim], 1)
        return f"{how}:dim{dim}={size}", valid.index_select(dim, index) if valid.shape[dim] else valid.new_zeros(shape)
    if how == "float_dtype" and valid.dtype.is_floating_point:  # any float dtype: cast to the model's or refused
        dtype = draw(st.sampled_from(FLOATS))
        return f"dtype:{dtype}", valid.to(dtype)
    if how == "dtype":
        dtype = draw(st.sampled_from(DTYPES))
        return f"dtype:{dtype}", valid.to(dtype)
    if how == "nonfinite" and valid.dtype.is_floating_point and valid.numel():
        out = valid.clone().flatten()
        out[draw(st.integers(0, out.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return "nonfinite", out.reshape(valid.shape)
    if how == "range" and not valid.dtype.is_floating_point and valid.numel() and valid.dtype != torch.bool:
        out = valid.clone().flatten()
        bad = draw(st.sampled_from([-1, -(2**40), arg.high, arg.high + 7, 2**40]))
        out[draw(st.integers(0, out.numel() - 1))] = bad
        return f"range:{bad}", out.reshape(valid.shape)
    if how == "scale" and valid.dtype.is_floating_point:
        scale = draw(st.sampled_from([0.0, 1e-30, 1e-6, 1e3, 1e6]))
        return f"scale:{scale:g}", valid * scale
    return "valid", valid


def _value_mutation(draw: st.DrawFn, arg: Arg, valid: Any) -> tuple[str, Any]:
    choices = [*arg.bad, *OTHER_TYPES] if arg.bad else list(OTHER_TYPES)
    if arg.kind == "int":
        choices += [0, -1, -(2**40), 2**40, 1.5, True]
    value = draw(st.sampled_from(choices))
    return f"value:{value!r}"[:60], value


@st.composite
def cases(draw: st.DrawFn, entry: EntryPoint) -> Case:
    """One case of ``entry``: valid values from a drawn seed, one argument (or none) corrupted."""
    rng = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    kwargs = {name: arg.make(rng) for name, arg in entry.args.items()}
    target = draw(st.sampled_from([None, *entry.args]))
    mutation = "valid"
    if target is not None:
        arg, valid = entry.args[target], kwargs[target]
        if arg.draws is not None:
            mutation, kwargs[target] = draw(arg.draws)
        elif isinstance(valid, torch.Tensor) and arg.kind in ("float", "ids", "mask"):
            mutation, kwargs[target] = _tensor_mutations(draw, arg, valid)
        else:
            mutation, kwargs[target] = _value_mutation(draw, arg, valid)
        if kwargs[target] is None and arg.optional:
            mutation = "valid:None"
    return Case(entry, target, mutation, kwargs, all(_finite(v) for v in kwargs.values()))


# ----------------------------------------------------------------------------------------------- the contract
def _outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _outputs(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _outputs(v)]
    if dataclasses.is_dataclass(value):
        return [t for f in dataclasses.fields(value) for t in _outputs(getattr(value, f.name))]
    return []


def outcome(case: Case) -> tuple[str, str]:
    """``("ok" | "clear" | "unclear" | "nan", detail)`` for one case."""
    try:
        with torch.no_grad():
            result = case.entry.call(**case.kwargs)
    except CLEAR as e:
        message = str(e)
        arg = case.entry.args.get(case.target) if case.target else None
        names = (case.target, *arg.names, *getattr(case.kwargs[case.target], "names", ())) if arg else ()
        if "\n" in message.strip():
            return "unclear", f"multi-line {type(e).__name__}: {message[:200]}"
        if case.target is not None and not any(n in message for n in names):
            return "unclear", f"{type(e).__name__} not naming {case.target}: {message[:200]}"
        return "clear", f"{type(e).__name__}: {message[:120]}"
    except Exception as e:  # noqa: BLE001  (the point: any other exception is a failure of the contract)
        return "unclear", f"{type(e).__name__}: {str(e)[:200]}"
    if case.finite:
        for t in _outputs(result):
            if (t.dtype.is_floating_point or t.dtype.is_complex) and not bool(torch.isfinite(t).all()):
                return "nan", f"non-finite output of shape {tuple(t.shape)}"
    return "ok", ""


@functools.cache
def model(name: str) -> torch.nn.Module:
    """The tiny model of each task (built once per process), in eval mode."""
    import perceiverio as p

    builders = {
        "mlm": lambda: p.MaskedLanguageModel(p.MaskedLanguageModelConfig.tiny(max_seq_len=64)),
        "classifier": lambda: p.SequenceClassifier(p.SequenceClassifierConfig.tiny(num_classes=3, max_seq_len=64)),
        "multitask": lambda: p.MultitaskClassifier(p.MultitaskClassifierConfig.tiny(max_seq_len=64)),
        "image": lambda: p.ImageClassifier(p.ImageClassifierConfig.tiny(num_classes=10)),
        "flow": lambda: p.OpticalFlow(p.OpticalFlowConfig.tiny()),
        "multimodal": lambda: p.MultimodalAutoencoder(p.MultimodalAutoencoderConfig.tiny()),
        "set": lambda: p.SetModel(p.SetModelConfig.tiny()),
        "generic": lambda: p.PerceiverIO.from_config(
            p.PerceiverIOConfig(
                num_input_channels=8,
                num_output_queries=12,
                encoder=p.EncoderConfig(
                    num_latents=4,
                    num_latent_channels=16,
                    num_self_attends_per_block=1,
                    num_self_attention_heads=2,
                    num_cross_attention_heads=1,
                ),
                decoder=p.DecoderConfig(num_query_channels=8, num_output_channels=3, num_heads=1),
            )
        ),
    }
    torch.manual_seed(0)
    return builders[name]().eval()
