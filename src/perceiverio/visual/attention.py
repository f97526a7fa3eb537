"""Pictures of attention maps (matplotlib): latents over image pixels, a bytes × latents heat map, and what one
query pixel of the flow model attends to. Arrays in (NumPy, float), PNG files out, written atomically (temporary
file in the same folder, then renamed).

The arrays are probabilities as :class:`perceiverio.core.AttentionMaps` holds them, already reduced by the caller
(heads averaged or one head picked); these functions only draw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import files

CMAP = "inferno"


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """``fig`` as a PNG at ``path`` (tight bounding box), written atomically; the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        return files.save_figure(fig, path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _show_image(ax, image: np.ndarray) -> None:  # [H, W] or [H, W, 3] in [0, 1]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_attention_png(
    image: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike,
    suptitle: str = "",
    alpha: float = 0.6,
) -> Path:
    """The image, then one panel per map: ``maps [K, h, w]`` (each over the token grid, e.g. one latent's
    attention over the pixels) stretched over the ``[H, W(, 3)]`` image (values in [0, 1]) and drawn on it with
    ``alpha``, each map scaled to its own maximum (the title gives that maximum)."""
    if maps.ndim != 3 or len(titles) != maps.shape[0]:
        raise ValueError(f"maps must be [K, h, w] with K titles, got shape {maps.shape} and {len(titles)} titles")
    k = maps.shape[0]
    cols = min(k + 1, 5)
    rows = -(-(k + 1) // cols)
    fig, axes = _figure(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    height, width = image.shape[:2]
    for ax in axes.flat:
        ax.axis("off")
    _show_image(axes.flat[0], image)
    axes.flat[0].axis("on")
    axes.flat[0].set_title("input", fontsize=9)
    for i in range(k):
        ax = axes.flat[i + 1]
        ax.axis("on")
        _show_image(ax, image)
        top = float(maps[i].max())
        ax.imshow(
            maps[i], cmap=CMAP, alpha=alpha, extent=(-0.5, width - 0.5, height - 0.5, -0.5), vmin=0.0, vmax=top or 1.0
        )
        ax.set_title(f"{titles[i]} (max {top:.2g})", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return save_figure(fig, path)


def byte_label(byte: int) -> str:
    """A tick label for one byte: the character for printable ASCII, ``␣`` for a space, else ``xNN``."""
    if byte == 0x20:
        return "␣"
    return chr(byte) if 0x20 < byte < 0x7F else f"x{byte:02X}"


def text_attention_png(
    labels: Sequence[str], maps: np.ndarray, latents: Sequence[int], path: str | os.PathLike, title: str = ""
) -> Path:
    """A heat map ``maps [K, L]``: one row per latent of ``latents``, one column per byte (tick ``labels``);
    the colour scale is shared by all rows (a colour bar gives it)."""
    if maps.ndim != 2 or maps.shape != (len(latents), len(labels)):
        raise ValueError(f"maps must be [{len(latents)}, {len(labels)}] (latents × bytes), got {maps.shape}")
    k, length = maps.shape
    fig, ax = _figure(figsize=(max(4.0, 0.16 * length + 1.5), max(2.0, 0.22 * k + 1.2)))
    image = ax.imshow(maps, cmap=CMAP, aspect="auto", interpolation="nearest", vmin=0.0)
    ax.set_xticks(range(length), labels, fontsize=7, family="monospace")
    ax.set_yticks(range(k), [str(n) for n in latents], fontsize=7)
    ax.set_xlabel("input byte")
    ax.set_ylabel("latent")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="attention probability")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def query_attention_png(
    image: np.ndarray,
    latent_weights: np.ndarray,
    pixel_map: np.ndarray,
    query: tuple[int, int],
    path: str | os.PathLike,
    title: str = "",
    alpha: float = 0.6,
) -> Path:
    """Two panels for one query pixel ``(y, x)``: its attention over the latents (``latent_weights [N]``, bars)
    and ``pixel_map [H, W]`` drawn over ``image [H, W, 3]`` in [0, 1], the query pixel marked with a cross."""
    height, width = image.shape[:2]
    if pixel_map.shape != (height, width):
        raise ValueError(f"pixel_map must be [{height}, {width}] like the image, got {pixel_map.shape}")
    fig, (bars, ax) = _figure(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    bars.bar(np.arange(latent_weights.shape[0]), latent_weights, width=1.0, color="#c43c39")
    bars.set_xlabel("latent")
    bars.set_ylabel("decoder attention of the query")
    bars.set_xlim(-0.5, latent_weights.shape[0] - 0.5)
    _show_image(ax, image)
    top = float(pixel_map.max())
    shown = ax.imshow(pixel_map, cmap=CMAP, alpha=alpha, vmin=0.0, vmax=top or 1.0, interpolation="nearest")
    ax.plot([query[1]], [query[0]], marker="x", color="cyan", markersize=10, mew=2)
    fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.01, label="attention (sums to 1 over pixels)")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
