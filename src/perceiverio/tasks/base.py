"""What every task model shares: weight loading from transformers and Haiku, parameter counting."""

from __future__ import annotations

from typing import Any

from torch import nn


class TaskModel(nn.Module):
    """Base class of the task models. ``config`` is the model's frozen config dataclass."""

    config: Any

    @classmethod
    def from_transformers(cls, source: Any, config: Any = None, **overrides: Any):
        """Build this model from a Hugging Face transformers Perceiver.

        ``source``: a ``transformers`` model object of the matching head, its ``state_dict()``, or a local
        checkpoint folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``). The config is read
        from the model or folder (or inferred from a bare state dict, with the released head counts) unless
        ``config`` is given. The result reproduces transformers' outputs (``masking="transformers"``,
        ``activation="gelu"``); ``overrides`` replace config fields, e.g. ``masking="official"``.
        """
        from ..io.transformers import load_from_transformers

        return load_from_transformers(cls, source, config, **overrides)

    @classmethod
    def from_haiku(cls, source: Any, config: Any = None, **overrides: Any):
        """Build this model from DeepMind's Haiku parameters.

        ``source``: a nested ``{module: {param: array}}`` dict, a flat ``{"module/param": array}`` dict, a
        ``{"params": ..., "state": ...}`` dict, or a path to a ``.pickle`` (read by an unpickler that accepts only
        plain containers and numpy arrays) or ``.npz`` file. Sizes are inferred from the arrays; head counts
        (which no array shape reveals) come from ``config`` or default to the released model's.
        """
        from ..io.haiku import load_from_haiku

        return load_from_haiku(cls, source, config, **overrides)

    def save_pretrained(self, directory: Any) -> Any:
        """Write ``model.safetensors`` + ``config.json`` (atomically) into ``directory``; reload with
        :meth:`from_pretrained`, no Lightning needed."""
        from ..io.checkpoint import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory: Any, map_location: Any = "cpu"):
        """Load a folder written by :meth:`save_pretrained` (or by training); returns the model in eval mode."""
        from ..io.checkpoint import load_pretrained

        return load_pretrained(directory, expected=cls, map_location=map_location)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
