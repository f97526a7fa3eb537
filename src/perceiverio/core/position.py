"""Position encodings: N-dimensional Fourier features (official layout) and trainable tables.

Grid positions are ``linspace(-1, 1, n)`` per dimension, combined with ``meshgrid(indexing="ij")`` and flattened
row-major. Fourier features of positions p ∈ [-1, 1]^d with K bands per dimension:

    f_{i,k} = linspace(1, max_resolution_i / 2, K)_k
    features = [p (if concat_pos)] + [sin(π f_{i,k} p_i) for i, k] + [cos(π f_{i,k} p_i) for i, k (unless sine_only)]

channel order dimension-major (dim 0's K bands first). Width d·(2K+1), or d·(K+1) with ``sine_only``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_range
from .init import trunc_normal_, variance_scaling_


def _dims(index_dims: int | Sequence[int]) -> tuple[int, ...]:
    dims = (index_dims,) if isinstance(index_dims, int) else tuple(int(n) for n in index_dims)
    if not dims or any(n <= 0 for n in dims):
        raise ValueError(f"index_dims must be positive sizes, got {index_dims!r}")
    return dims


def linear_positions(
    index_dims: int | Sequence[int], *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Grid positions in [-1, 1] (both ends included): ``[*index_dims, d]``."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in _dims(index_dims)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def positions_from_indices(indices: torch.Tensor, index_dims: int | Sequence[int]) -> torch.Tensor:
    """Positions of flat output indices (subsampled decoding): ``-1 + 2·i/n`` per unravelled coordinate.

    This is not the grid formula (the end point 1 is excluded), as in the official and transformers code.
    ``indices``: ``[...]`` integer tensor of flat row-major indices -> ``[..., d]`` float32 positions.
    """
    dims = _dims(index_dims)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype}")
    check_range(indices, 0, math.prod(dims), f"indices for index_dims {dims}")
    coords = torch.stack(torch.unravel_index(indices, dims), dim=-1).to(torch.float32)  # [..., d]
    return -1.0 + 2.0 * coords / torch.tensor(dims, dtype=torch.float32, device=indices.device)


def fourier_features(
    pos: torch.Tensor,  # [..., d] positions in [-1, 1]
    num_bands: int,
    max_resolution: Sequence[int],
    concat_pos: bool = True,
    sine_only: bool = False,
) -> torch.Tensor:  # [..., C]
    """Official ``generate_fourier_features`` (channel order documented in the module docstring)."""
    d = pos.shape[-1]
    if len(max_resolution) != d:
        raise ValueError(f"max_resolution has {len(max_resolution)} entries but positions have {d} dimensions")
    freqs = torch.stack(
        [torch.linspace(1.0, r / 2.0, num_bands, device=pos.device, dtype=pos.dtype) for r in max_resolution]
    )  # [d, K]
    x = (pos.unsqueeze(-1) * freqs).flatten(-2)  # [..., d·K], dimension-major
    x = math.pi * x
    parts = [pos] if concat_pos else []
    parts += [torch.sin(x)] if sine_only else [torch.sin(x), torch.cos(x)]
    return torch.cat(parts, dim=-1)


def num_fourier_channels(num_dims: int, num_bands: int, concat_pos: bool = True, sine_only: bool = False) -> int:
    return num_dims * num_bands * (1 if sine_only else 2) + (num_dims if concat_pos else 0)


class FourierPositionEncoding(nn.Module):
    """Fourier features over a grid (``index_dims``) or at explicit positions, broadcast over the batch.

    ``max_resolution`` (default: ``index_dims``) fixes the frequencies; a grid of another size at call time keeps
    them, which is how Fourier models accept any image size.
    """

    def __init__(
        self,
        index_dims: int | Sequence[int],
        num_bands: int,
        max_resolution: Sequence[int] | None = None,
        concat_pos: bool = True,
        sine_only: bool = False,
    ) -> None:
        super().__init__()
        self.index_dims = _dims(index_dims)
        self.max_resolution = tuple(max_resolution) if max_resolution is not None else self.index_dims
        if len(self.max_resolution) != len(self.index_dims):
            raise ValueError(f"max_resolution {self.max_resolution} does not match index_dims {self.index_dims}")
        self.num_bands = num_bands
        self.concat_pos = concat_pos
        self.sine_only = sine_only

    @property
    def num_channels(self) -> int:
        return num_fourier_channels(len(self.index_dims), self.num_bands, self.concat_pos, self.sine_only)

    def forward(
        self,
        batch_size: int,
        index_dims: Sequence[int] | None = None,
        positions: torch.Tensor | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``[B, P, C]`` features of the grid (``index_dims`` or the configured one) or of ``positions``
        (``[P, d]`` or ``[B, P, d]``)."""
        if positions is None:
            positions = linear_positions(index_dims or self.index_dims, device=device).flatten(0, -2)  # [P, d]
        feats = fourier_features(
            positions.float(), self.num_bands, self.max_resolution, self.concat_pos, self.sine_only
        ).to(dtype)
        return feats.expand(batch_size, -1, -1) if feats.dim() == 2 else feats


class TrainablePositionEncoding(nn.Module):
    """A learned ``[P, C]`` table (std 0.02), optionally projected by a Linear (``project_to``).

    Also serves as learned output queries: ``index`` selects rows (``[K]`` or ``[B, K]``) for subset decoding.
    For a 2-D table (``index_dims=(H, W)``), ``forward(..., index_dims=(H', W'))`` interpolates it bicubically.
    """

    def __init__(
        self,
        index_dims: int | Sequence[int],
        num_channels: int,
        project_to: int | None = None,
        init_scale: float = 0.02,
    ) -> None:
        super().__init__()
        self.index_dims = _dims(index_dims)
        self.embeddings = nn.Parameter(torch.empty(math.prod(self.index_dims), num_channels))  # [P, C]
        self.projection = nn.Linear(num_channels, project_to) if project_to is not None else None
        self.init_scale = init_scale
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        trunc_normal_(self.embeddings, self.init_scale)
        if self.projection is not None:
            variance_scaling_(self.projection)

    @property
    def num_positions(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_channels(self) -> int:
        return self.projection.out_features if self.projection is not None else self.embeddings.shape[1]

    def forward(
        self, batch_size: int, index: torch.Tensor | None = None, index_dims: Sequence[int] | None = None
    ) -> torch.Tensor:  # [B, P or K, C]
        table = self.embeddings
        if index_dims is not None and tuple(index_dims) != self.index_dims:
            table = self.interpolate(tuple(index_dims))
        if self.projection is not None:
            table = self.projection(table)
        if index is None:
            return table.expand(batch_size, -1, -1)
        check_range(index, 0, table.shape[0], "position index")
        rows = table[index]  # [K, C] or [B, K, C]
        return rows.expand(batch_size, -1, -1) if rows.dim() == 2 else rows

    def interpolate(self, index_dims: tuple[int, int]) -> torch.Tensor:
        """The table resampled to a new 2-D grid (bicubic, ``align_corners=False``): ``[H'·W', C]``."""
        if len(self.index_dims) != 2 or len(index_dims) != 2:
            raise ValueError(f"interpolation needs a 2-D table and a 2-D size, got {self.index_dims} -> {index_dims}")
        h, w = self.index_dims
        grid = self.embeddings.T.reshape(1, -1, h, w)  # [1, C, H, W]
        grid = F.interpolate(grid, size=index_dims, mode="bicubic", align_corners=False)
        return grid.reshape(grid.shape[1], -1).T  # [H'·W', C]
