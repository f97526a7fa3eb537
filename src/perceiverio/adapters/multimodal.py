"""Several modalities in one Perceiver IO (official ``MultimodalPreprocessor`` and ``MultimodalDecoder.decoder_query``).

Inputs: every modality's adapter gives tokens ``[B, M_m, C_m]``; each is padded to the common width
``C = max_m C_m + min_padding_size`` with a learned per-modality vector ``[1, C - C_m]`` (the same vector on every
token), optionally replaced token-wise by a learned per-modality mask token (``x = (1 - m)·x + m·mask_token`` with
``m ~ Bernoulli(p_m)``), and the modalities are concatenated in sorted name order.

Queries: every modality's query builder gives ``[B, n_m, E_m]`` (Fourier features of output positions, or a learned
vector); each is padded the same way to ``E = max_m E_m + min_padding_size`` (2 in the official decoder) and the
modalities are concatenated in sorted name order, so that one shared decoder cross-attention serves them all.

Modality names are the caller's (any non-empty string without ``.``); nothing here knows "audio" or "image".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..core.init import trunc_normal_
from ..core.position import fourier_features, num_fourier_channels, positions_from_indices


def check_modality_names(names: Sequence[str], what: str = "modalities") -> list[str]:
    """Sorted names; ValueError for an empty set, a non-string, an empty name or one containing ``.``."""
    names = list(names)
    if not names:
        raise ValueError(f"{what}: at least one modality is needed")
    for n in names:
        if not isinstance(n, str) or not n or "." in n:
            raise ValueError(f"{what}: modality names must be non-empty strings without '.', got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: duplicate modality names in {names}")
    return sorted(names)


def _learned(shape: tuple[int, ...], std: float = 0.02) -> nn.Parameter:
    p = nn.Parameter(torch.empty(shape))
    with torch.no_grad():
        trunc_normal_(p, std)
    return p


# ------------------------------------------------------------------------------------------------ query builders
class FourierQueries(nn.Module):
    """Fourier features of output points of a grid ``output_index_dims`` (no parameters).

    ``forward(batch_size, index)``: ``index`` holds flat row-major indices (``[n]`` or ``[B, n]``; None = every
    point); each is unravelled and mapped to ``-1 + 2·i/n_d`` per dimension (the official subsampled-decoding
    formula, also used for "every point" so that any chunking gives the same queries).
    """

    def __init__(
        self,
        output_index_dims: Sequence[int],
        num_bands: int,
        max_resolution: Sequence[int],
        concat_pos: bool = True,
        sine_only: bool = False,
    ) -> None:
        super().__init__()
        self.output_index_dims = tuple(int(n) for n in output_index_dims)
        self.max_resolution = tuple(int(r) for r in max_resolution)
        if len(self.max_resolution) != len(self.output_index_dims):
            raise ValueError(
                f"query max_resolution {self.max_resolution} must have one entry per output dimension "
                f"{self.output_index_dims}"
            )
        self.num_bands, self.concat_pos, self.sine_only = num_bands, concat_pos, sine_only

    @property
    def num_channels(self) -> int:
        return num_fourier_channels(len(self.output_index_dims), self.num_bands, self.concat_pos, self.sine_only)

    @property
    def num_points(self) -> int:
        return math.prod(self.output_index_dims)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:  # [B, n, C]
        """``x`` gives the batch size and device (any ``[B, ...]`` tensor: the inputs or the latents)."""
        if index is None:
            index = torch.arange(self.num_points, device=x.device)
        pos = positions_from_indices(index, self.output_index_dims)  # [n, d] or [B, n, d]
        feats = fourier_features(pos, self.num_bands, self.max_resolution, self.concat_pos, self.sine_only)
        return feats.expand(x.shape[0], -1, -1) if feats.dim() == 2 else feats


class ProjectionOutputAdapter(nn.Module):
    """Decoder output ``[B, n, E]`` -> ``[B, n, out]`` by a Linear (official ``ProjectionPostprocessor``)."""

    def __init__(self, num_decoder_channels: int, num_output_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_decoder_channels, num_output_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


# ------------------------------------------------------------------------------------------------- input side
class MultimodalInputAdapter(nn.Module):
    """``{name: raw input}`` -> tokens ``[B, M, C]`` and ``{name: M_m}`` (sorted name order).

    Args:
        adapters: ``{name: adapter}``; each adapter maps its raw input to ``[B, M_m, C_m]`` and has
            ``num_input_channels``.
        min_padding_size: every modality gets at least this many learned padding channels.
        mask_probs: ``{name: p}``; those modalities get a learned mask token ``[1, C]`` (also for p = 0, as in the
            official code) that replaces each of their tokens with probability p.
        apply_mask_in_eval: mask in eval mode too. The official code masks whenever it runs (there is no train/eval
            switch); here masking happens in training mode, and also in eval mode when this is True.
    """

    def __init__(
        self,
        adapters: Mapping[str, nn.Module],
        min_padding_size: int = 2,
        mask_probs: Mapping[str, float] | None = None,
        apply_mask_in_eval: bool = False,
    ) -> None:
        super().__init__()
        names = check_modality_names(adapters, "MultimodalInputAdapter")
        if not isinstance(min_padding_size, int) or min_padding_size < 0:
            raise ValueError(f"min_padding_size must be a non-negative int, got {min_padding_size!r}")
        mask_probs = dict(mask_probs or {})
        for name, p in mask_probs.items():
            if name not in adapters:
                raise ValueError(f"mask_probs names {name!r}, which is not a modality ({names})")
            if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"mask_probs[{name!r}] must be a probability in [0, 1], got {p!r}")
        self.adapters = nn.ModuleDict({n: adapters[n] for n in names})
        self.num_input_channels = max(a.num_input_channels for a in self.adapters.values()) + min_padding_size
        c = self.num_input_channels
        self.padding = nn.ParameterDict({n: _learned((1, c - a.num_input_channels)) for n, a in self.adapters.items()})
        self.mask_probs = {n: float(mask_probs[n]) for n in sorted(mask_probs)}
        self.mask_tokens = nn.ParameterDict({n: _learned((1, c)) for n in self.mask_probs})
        self.apply_mask_in_eval = apply_mask_in_eval

    @property
    def names(self) -> list[str]:
        return list(self.adapters)

    def check_inputs(self, inputs: object) -> int:
        """Validates the dict of inputs; returns the batch size."""
        if not isinstance(inputs, Mapping):
            raise ValueError(
                f"inputs must be a dict {{modality: tensor}} with keys {self.names}, got {type(inputs).__name__}"
            )
        missing = [n for n in self.names if n not in inputs]
        unknown = sorted(str(k) for k in inputs if k not in self.adapters)
        if missing or unknown:
            raise ValueError(
                f"inputs must have exactly the modalities {self.names}: missing {missing}, unknown {unknown}"
            )
        sizes = {
            n: inputs[n].shape[0] for n in self.names if isinstance(inputs[n], torch.Tensor) and inputs[n].dim() > 0
        }  # no int(): a symbolic batch size stays symbolic under torch.export
        first = next(iter(sizes.values()), 0)
        if any(size != first for size in sizes.values()):
            raise ValueError(f"all modalities need the same batch size, got {sizes}")
        return first

    def masking_active(self, apply_mask: bool | None = None) -> bool:
        return (self.training or self.apply_mask_in_eval) if apply_mask is None else bool(apply_mask)

    def pad(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``[B, M_m, C_m]`` -> ``[B, M_m, C]`` with the modality's padding vector."""
        pad = self.padding[name].to(x.dtype)
        return torch.cat([x, pad.expand(x.shape[0], x.shape[1], -1)], dim=-1)

    def mask(self, name: str, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace tokens by the mask token with probability ``mask_probs[name]`` (p = 0: returned unchanged; p = 1:
        every token replaced, without a random draw)."""
        p = self.mask_probs.get(name, 0.0)
        if p == 0.0:
            return x
        if p == 1.0:  # every token masked: no random draw (an exported graph has no sampling then)
            return self.mask_tokens[name].to(x.dtype).expand_as(x)
        probs = torch.full(x.shape[:2], p, device=x.device, dtype=x.dtype)
        m = torch.bernoulli(probs, generator=generator).unsqueeze(-1)  # [B, M_m, 1]
        return (1 - m) * x + m * self.mask_tokens[name].to(x.dtype)

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        apply_mask: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, int]]:
        self.check_inputs(inputs)
        masking = self.masking_active(apply_mask)
        parts, sizes = [], {}
        for name, adapter in self.adapters.items():  # sorted names
            x = adapter.check_input(inputs[name], f"inputs[{name!r}]")
            if x.dtype.is_floating_point:  # any float dtype: computed in the model's
                x = x.to(self.padding[name].dtype)
            x = self.pad(name, adapter(x))
            if masking:
                x = self.mask(name, x, generator)
            parts.append(x)
            sizes[name] = x.shape[1]
        return torch.cat(parts, dim=1), sizes


# ------------------------------------------------------------------------------------------------ output side
class MultimodalQueries(nn.Module):
    """Per-modality decoder queries padded to a common width ``E`` and concatenated in sorted name order.

    ``builders``: ``{name: module}`` with ``num_channels``, ``num_points`` and the query protocol
    ``forward(x, index)`` (:class:`FourierQueries`, :class:`perceiverio.core.queries.LearnedQueries`).
    Called as ``forward(x, points)``: ``points = {name: flat indices [n] / [B, n], or None for every point}``
    selects the modalities (sorted) and their points; ``x`` gives batch size, device and dtype.
    """

    def __init__(self, builders: Mapping[str, nn.Module], min_padding_size: int = 2) -> None:
        super().__init__()
        names = check_modality_names(builders, "MultimodalQueries")
        if not isinstance(min_padding_size, int) or min_padding_size < 0:
            raise ValueError(f"min_padding_size must be a non-negative int, got {min_padding_size!r}")
        self.builders = nn.ModuleDict({n: builders[n] for n in names})
        self.num_query_channels = max(b.num_channels for b in self.builders.values()) + min_padding_size
        e = self.num_query_channels
        self.padding = nn.ParameterDict({n: _learned((1, e - b.num_channels)) for n, b in self.builders.items()})

    def sizes(self, points: Mapping[str, torch.Tensor | None]) -> dict[str, int]:
        """``{name: number of queries}`` of ``points``, in sorted name order."""
        return {n: self.builders[n].num_points if points[n] is None else points[n].shape[-1] for n in sorted(points)}

    def modality(self, name: str, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Padded queries of one modality ``[B, n, E]``."""
        q = self.builders[name](x, index).to(x.dtype)
        pad = self.padding[name].to(x.dtype)
        return torch.cat([q, pad.expand(q.shape[0], q.shape[1], -1)], dim=-1)

    def forward(self, x: torch.Tensor, points: Mapping[str, torch.Tensor | None]) -> torch.Tensor:  # [B, O, E]
        return torch.cat([self.modality(name, x, points[name]) for name in sorted(points)], dim=1)


class MultimodalOutputAdapter(nn.ModuleDict):
    """Decoder output ``[B, O, F]`` (modalities concatenated in sorted name order, ``sizes = {name: n_m}``) ->
    ``{name: that modality's output adapter applied to its n_m rows}``."""

    def forward(self, h: torch.Tensor, sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
        outputs, start = {}, 0
        for name in sorted(sizes):
            outputs[name] = self[name](h[:, start : start + sizes[name]])
            start += sizes[name]
        return outputs
