"""Warm starts: begin training from the weights of another trained model, e.g. fine-tune a sequence classifier
from a byte MLM pre-trained on unlabelled text (the paper's GLUE recipe: pre-train, then replace the decoder's
queries and output with a classification query).

Every tensor of the source whose name and shape match the new model's is copied; the rest of the new model keeps
its initialisation. For an MLM → classifier warm start that is the input adapter (token and position embeddings)
and the encoder (cross-attention, latents and the latent self-attention), while the decoder starts fresh.

A source with another number of latents (``init_from`` with another ``encoder.num_latents``, to fine-tune the
size of the latent space) has its latent array resized to the new model's (interpolated when growing, neighbours
averaged when shrinking: :meth:`PerceiverIO.resize_latents`) instead of being skipped; the summary says so.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..core.perceiver import PerceiverIO
from ..weights.checkpoint import load_pretrained


@dataclass(frozen=True)
class WarmStart:
    """What :func:`warm_start` copied: parameter/buffer names copied, skipped for a shape mismatch, and those of the
    new model that the source does not have."""

    copied: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    not_in_source: tuple[str, ...]
    latents_resized: tuple[int, int] | None = None  # (source N, new N) when the source's latents were resized

    def summary(self) -> str:
        resized = ""
        if self.latents_resized is not None:
            old, new = self.latents_resized
            how = "interpolated" if new > old else "neighbours averaged"
            resized = f"; latents resized from {old} to {new} ({how}) before copying"
        return (
            f"{len(self.copied)} tensors copied, {len(self.shape_mismatch)} skipped (shape differs: "
            f"{', '.join(self.shape_mismatch[:4]) or 'none'}), {len(self.not_in_source)} kept from initialisation"
            f"{resized}"
        )


def copy_matching(model: nn.Module, source: dict[str, torch.Tensor]) -> WarmStart:
    """Copy every tensor of ``source`` (a state dict) whose name and shape match one of ``model``'s state."""
    copied, mismatch, missing = [], [], []
    with torch.no_grad():
        for name, target in model.state_dict(keep_vars=True).items():
            value = source.get(name)
            if value is None:
                missing.append(name)
            elif tuple(value.shape) != tuple(target.shape):
                mismatch.append(name)
            else:
                target.copy_(value.to(dtype=target.dtype, device=target.device))
                copied.append(name)
    return WarmStart(tuple(copied), tuple(mismatch), tuple(missing))


def warm_start(model: nn.Module, source: str | os.PathLike) -> WarmStart:
    """Copy the matching weights of the model saved at ``source`` (a ``save_pretrained``/training export folder,
    or a Hub repository id) into ``model``. A ValueError when no tensor matches (the wrong model, or a model of
    other sizes: the encoders must have the same widths). A source with another number of latents (same width D)
    has its latent array resized to ``model``'s first."""
    trained = load_pretrained(source)
    resized = None
    old, new = latent_shape(trained), latent_shape(model)
    if old is not None and new is not None and old[1] == new[1] and old[0] != new[0]:
        trained.resize_latents(new[0])
        resized = (old[0], new[0])
    result = dataclasses.replace(copy_matching(model, trained.state_dict()), latents_resized=resized)
    if not result.copied:
        raise ValueError(
            f"init_from={str(source)!r}: no weight of that {type(trained).__name__} matches the "
            f"{type(model).__name__} by name and shape ({len(result.shape_mismatch)} names match with other shapes: "
            "the encoder sizes must agree)"
        )
    return result


def latent_shape(model: nn.Module) -> tuple[int, int] | None:
    """``(N, D)`` of a Perceiver IO model's latent array, None for another module."""
    latents = getattr(getattr(model, "encoder", None), "latents", None)
    if not isinstance(model, PerceiverIO) or not isinstance(latents, torch.Tensor) or latents.dim() != 2:
        return None
    return int(latents.shape[0]), int(latents.shape[1])
