"""Resizing the latent array ``z0 ∈ R^{N×D}`` to another number of latents n (fine-tuning the size of the latent
space, the paper's N, for a task).

The latents form a set, not a sequence, but a trained array is still a good starting point: the new rows are
convex combinations of neighbouring trained rows, so they keep the trained rows' scale and lie where the
cross-attention has learnt to read from. Along N the rows are treated like samples of a 1-D signal at the centres
``i + 0.5``:

* **growing** (n > N): linear interpolation at the new centres, ``t = (i + 0.5)·N/n − 0.5`` clamped to
  ``[0, N − 1]``, ``z'_i = (1 − f)·z_⌊t⌋ + f·z_⌊t⌋+1`` with ``f = t − ⌊t⌋`` (``F.interpolate(mode="linear",
  align_corners=False)``, the half-sample convention the position tables use). Doubling gives each trained row two
  distinct offspring, ``¾·z_k + ¼·z_{k−1}`` and ``¾·z_k + ¼·z_{k+1}`` (the end rows are copied once): no two new
  latents are equal, which matters because two equal latents would get equal gradients and stay equal forever.
* **shrinking** (n < N): each new row is the mean of the trained rows its share ``[i·N/n, (i+1)·N/n)`` of the axis
  covers (adaptive average pooling, so no row is dropped); halving averages neighbour pairs,
  ``z'_i = (z_{2i} + z_{2i+1}) / 2``.
* n == N: the array itself (a copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import MAX_SIZE


def check_num_latents(n: object, what: str = "num_latents") -> int:
    """``n`` as an int, or a ValueError naming ``what`` unless it is a positive int of at most ``MAX_SIZE``."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_SIZE:
        raise ValueError(f"{what} must be a positive int (at most 2^31 - 1), got {n!r}")
    return n


def resize_latent_array(latents: torch.Tensor, n: int) -> torch.Tensor:
    """A new ``[n, D]`` array from ``latents: [N, D]`` (see the module docstring for the rule); same dtype and
    device, no gradient history. Half-precision arrays are resized in float32 and cast back."""
    if not isinstance(latents, torch.Tensor) or latents.dim() != 2 or not latents.is_floating_point():
        got = f"a {latents.dim()}-d {latents.dtype} tensor" if isinstance(latents, torch.Tensor) else type(latents)
        raise ValueError(f"latents must be a 2-d floating-point tensor [N, D], got {got}")
    n = check_num_latents(n, "n")
    size = latents.shape[0]
    z = latents.detach()
    if n == size:
        return z.clone()
    work = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    signal = work.t().unsqueeze(0)  # [1, D, N]: one channel per latent channel, N samples
    if n > size:
        out = F.interpolate(signal, size=n, mode="linear", align_corners=False)  # [1, D, n]
    else:
        out = F.adaptive_avg_pool1d(signal, n)  # [1, D, n]
    return out[0].t().contiguous().to(z.dtype)  # [n, D]
