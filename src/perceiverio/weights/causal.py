"""Official Perceiver AR (google-research/perceiver-ar, Haiku) parameters -> :class:`CausalLanguageModel` weights.

The official ``PerceiverAR`` module (Haiku prefix ``perceiver_ar``) names its parameters by creation order:

* ``~/embed/embeddings`` -> ``embedding.weight``; ``~/linear`` (the latents' input projection) -> ``to_latents``;
* ``~/cross_attention``: ``layer_norm``/``layer_norm_1``/``layer_norm_2`` -> ``q_norm``/``kv_norm``/``mlp_norm``,
  ``attention/linear{,_1,_2,_3}`` -> ``attention.{q,k,v,o}_proj``, ``dense/linear{,_1}`` -> ``mlp.fc{1,2}``;
* ``~/self_attention[_i]``: ``layer_norm``/``layer_norm_1`` -> ``norm``/``mlp_norm``, attention and dense as above,
  into ``self_attention.{i}``;
* ``layer_norm`` (the final one, outside ``~/``) -> ``norm``; ``~/logits`` -> ``head`` (untied output).

Haiku ``Linear`` stores ``w`` as ``[in, out]``; it is transposed for ``torch.nn.Linear``. Usage::

    model = causal_model_from_haiku("params.npz", config)     # config: sizes and head counts of the official model
    state = causal_from_haiku("params.npz")                     # or just the state dict

The official model's positions (``use_positions_from_data=True``, the training configuration) are what our
window positions give; tests/tasks/test_causal_golden.py matches its logits to 1e-5.
"""

from __future__ import annotations

from typing import Any

import torch

from ..tasks.causal import CausalLanguageModel, CausalLanguageModelConfig
from .build import assign_weights
from .haiku import Converted, HaikuParams, attention, haiku_name, layer_norm, linear, mlp, put, read_haiku

PREFIX = "perceiver_ar"


def causal_from_haiku(source: Any, prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    """A :class:`~perceiverio.tasks.causal.CausalLanguageModel` state dict (float32, untied output) from official
    Perceiver AR Haiku params: a ``.npz``/``.pickle`` path or a mapping, in any form
    :func:`~perceiverio.weights.haiku.read_haiku` reads. Every Haiku array must be used and every expected one
    present (ValueError naming them otherwise); :func:`causal_model_from_haiku` also checks the shapes."""
    return {name: t for name, (_, t) in convert(source, prefix).items()}


def causal_model_from_haiku(
    source: Any, config: CausalLanguageModelConfig, prefix: str = PREFIX
) -> CausalLanguageModel:
    """A :class:`~perceiverio.tasks.causal.CausalLanguageModel` of ``config`` (eval mode) with the official params
    of ``source`` (see :func:`causal_from_haiku`); head counts, rotary fraction and wavelength are not visible in
    the arrays and come from ``config``. A missing, unexpected or misshapen array raises ValueError naming it."""
    if not isinstance(config, CausalLanguageModelConfig):
        raise TypeError(f"config must be a CausalLanguageModelConfig, got {type(config).__name__}")
    if config.tied_output:
        raise ValueError("config.tied_output must be False: the official model has its own ~/logits projection")
    mapped = convert(source, prefix)
    with torch.device("meta"):
        model = CausalLanguageModel(config)
    expected = model.state_dict()
    for name, (hk, t) in mapped.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise ValueError(
                f"Haiku param {hk} has shape {tuple(t.shape)}, but {name} needs {tuple(expected[name].shape)}"
            )
    layers = len({name.split(".")[1] for name in mapped if name.startswith("self_attention.")})
    if layers != config.num_self_attention_layers:
        wanted = config.num_self_attention_layers
        first = f"{prefix}/~/{haiku_name('self_attention', min(layers, wanted))}"
        raise ValueError(
            f"config.num_self_attention_layers is {wanted}, but the Haiku params have {layers} self-attention "
            f"layers ({first} is {'absent' if layers < wanted else 'extra'})"
        )
    uncovered = sorted(set(expected) - set(mapped))
    if uncovered:
        raise ValueError(f"config wants parameters the Haiku params lack: {', '.join(uncovered)}")
    return assign_weights(model, {name: t for name, (_, t) in mapped.items()}).eval()


def convert(source: Any, prefix: str = PREFIX) -> Converted:
    """``{torch name: (Haiku key, tensor)}`` of :func:`causal_from_haiku`."""
    params, _ = read_haiku(source)
    hp = HaikuParams(params)
    root = f"{prefix}/~"
    if not hp.has(f"{root}/cross_attention"):
        raise ValueError(f"not an official Perceiver AR checkpoint: no module {root}/cross_attention")
    out: Converted = {}
    put(hp, f"{root}/embed/embeddings", "embedding.weight", out)
    linear(hp, f"{root}/linear", "to_latents", out)
    ca = f"{root}/cross_attention"
    for i, name in enumerate(("q_norm", "kv_norm", "mlp_norm")):
        layer_norm(hp, f"{ca}/{haiku_name('layer_norm', i)}", f"cross_attention.{name}", out)
    attention(hp, f"{ca}/attention", "cross_attention.attention", out)
    mlp(hp, f"{ca}/dense", "cross_attention.mlp", out)
    i = 0
    while hp.has(f"{root}/{haiku_name('self_attention', i)}"):
        sa, pt = f"{root}/{haiku_name('self_attention', i)}", f"self_attention.{i}"
        layer_norm(hp, f"{sa}/layer_norm", f"{pt}.norm", out)
        layer_norm(hp, f"{sa}/layer_norm_1", f"{pt}.mlp_norm", out)
        attention(hp, f"{sa}/attention", f"{pt}.attention", out)
        mlp(hp, f"{sa}/dense", f"{pt}.mlp", out)
        i += 1
    layer_norm(hp, f"{prefix}/layer_norm", "norm", out)
    linear(hp, f"{root}/logits", "head", out)
    problems = []
    if hp.missing:
        problems.append(f"missing Haiku keys: {', '.join(hp.missing)}")
    if hp.unused():
        problems.append(f"unexpected Haiku keys: {', '.join(hp.unused())}")
    if problems:
        raise ValueError("cannot convert the Perceiver AR Haiku params: " + "; ".join(problems))
    return out
