"""Optical flow (paper §4.2): two frames in, one flow vector per pixel out.

Each frame's zero-padded 3×3 neighbourhood of every pixel (27 values, order (ph, pw, c)) is taken, the two frames'
patches are concatenated as (dt, ph, pw, c) = 54 channels, mapped by Linear(54 → 64) and concatenated with 2D Fourier
features (64 bands, ``max_resolution`` = the training crop 368×496): one 322-channel token per pixel. The decoder's
queries are these same tokens (one query per pixel, official ``FlowDecoder``); a Linear maps each to 2 channels,
which are divided by ``rescale_factor`` (100, inside the official model) and multiplied by ``output_scale`` (20,
outside it, in the official demo) to give pixels.

Images of any size are handled by :meth:`OpticalFlow.predict`: overlapping crops of the training size, blended with
the official distance-to-edge weights. The tiling maths are the pure functions :func:`tile_starts`,
:func:`tile_origins`, :func:`tile_weights`, :func:`blend_weights` and :func:`blend_tiles`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..adapters.flow import FlowInputAdapter, FlowOutputAdapter, num_correlation_channels
from ..adapters.image import ImageAdapterConfig
from ..core.config import DecoderConfig, EncoderConfig, PerceiverConfig, check_positive
from ..core.perceiver import AttentionMaps, PerceiverIO, build_decoder, build_encoder
from ..core.position import num_fourier_channels
from ..core.queries import InputQueries

TRAIN_SIZE = (368, 496)  # (H, W) of the official training crops

# the released model: 2048 × 512 latents, 1 cross-attention head, 24 layers of 16 heads (EncoderConfig defaults
# fill in the rest)
_SINTEL_ENCODER = EncoderConfig(
    num_latents=2048, num_latent_channels=512, num_self_attention_heads=16, num_self_attends_per_block=24
)


@dataclass(frozen=True)
class OpticalFlowConfig(PerceiverConfig):
    """The released optical-flow Perceiver IO (defaults) and its variants.

    train_size: ``(H, W)`` of the training crops: the Fourier features' ``max_resolution`` and the default tile.
    num_patch_channels: output width of the Linear after patching (official ``num_channels``).
    num_bands: Fourier bands per spatial dimension. Tokens have ``num_patch_channels + 2·(2·num_bands + 1)``
        channels, which ``decoder.num_query_channels`` must equal (the queries are the tokens).
    rescale_factor: the decoder output is divided by it (official ``FlowDecoder``, 100).
    output_scale: then multiplied by it to give pixels (the official demo's ``FLOW_SCALE_FACTOR``, 20;
        transformers' ``PerceiverForOpticalFlow`` returns the value before it: set 1 to get that).
    decoder_chunk_size: queries decoded at a time (None: all at once); the result does not depend on it.
    tile_size: crop size of :meth:`OpticalFlow.predict` (None: ``train_size``); min_overlap: its minimum overlap
        (checked against the tile when ``predict`` runs).
    zero_init_output: zero the output Linear's weight at construction (the official colab's
        ``output_w_init=jnp.zeros``; the ``FlowDecoder`` default, used here, is the fan-in initialiser).
    correlation_radius: r > 0 appends to every token the cosine similarities of its 3×3 patch in frame 1 with
        frame 2's patches at ``(2r + 1)²`` displacements (``{-r..r} · correlation_stride`` pixels in x and y), the
        cost volume of correlation-based flow networks. Not in the paper (which learns matching from the patches
        alone); 0, the default, is the official model. It widens the tokens (and the queries) by ``(2r + 1)²``.
    predict_scale: resolution at which :meth:`OpticalFlow.predict` works, in (0, 1]: frames are resized by it
        (antialiased), tiled, and the flow is resized back to the frames' size and divided by it. 1 (the
        official demo) processes the native resolution; a model trained on small crops and small motions reads
        large frames better at 1/2 or 1/4 (the flow is still scored at the native resolution).
    """

    train_size: tuple[int, int] = TRAIN_SIZE
    num_patch_channels: int = 64
    num_bands: int = 64
    encoder: EncoderConfig = _SINTEL_ENCODER
    decoder: DecoderConfig = DecoderConfig(num_query_channels=322, num_output_channels=2)
    rescale_factor: float = 100.0
    output_scale: float = 20.0
    decoder_chunk_size: int | None = 16384
    tile_size: tuple[int, int] | None = None
    min_overlap: int = 20
    zero_init_output: bool = False
    correlation_radius: int = 0
    correlation_stride: int = 1
    predict_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "train_size", _pair(self.train_size, "train_size"))
        if self.tile_size is not None:
            object.__setattr__(self, "tile_size", _pair(self.tile_size, "tile_size"))
        check_positive(self, "num_patch_channels", "num_bands")
        if self.decoder.num_query_channels != self.num_input_channels:
            raise ValueError(
                f"decoder.num_query_channels ({self.decoder.num_query_channels}) must equal the token width "
                f"num_patch_channels + 2·(2·num_bands + 1) (+ (2·correlation_radius + 1)²) = "
                f"{self.num_input_channels}: the queries are the tokens"
            )
        if self.decoder.num_output_channels != 2:
            raise ValueError(f"decoder.num_output_channels must be 2 (u, v), got {self.decoder.num_output_channels}")
        if not self.rescale_factor:
            raise ValueError("rescale_factor must be non-zero")
        if self.decoder_chunk_size is not None and self.decoder_chunk_size <= 0:
            raise ValueError(f"decoder_chunk_size must be positive or None, got {self.decoder_chunk_size}")
        if not isinstance(self.min_overlap, int) or self.min_overlap < 0:
            raise ValueError(f"min_overlap must be a non-negative int, got {self.min_overlap!r}")
        check_scale(self.predict_scale, "predict_scale")
        for name, least in (("correlation_radius", 0), ("correlation_stride", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")

    @property
    def num_input_channels(self) -> int:
        """Token width C (= query width E): patch features + Fourier features (+ correlation volume)."""
        return (
            self.num_patch_channels
            + num_fourier_channels(2, self.num_bands)
            + num_correlation_channels(self.correlation_radius)
        )

    @property
    def tile(self) -> tuple[int, int]:
        return self.tile_size or self.train_size

    def adapter_config(self) -> ImageAdapterConfig:
        """The official ``ImagePreprocessor(prep_type='patches', temporal_downsample=2, conv_after_patching)`` fed
        with the 27-channel patches of two frames (time is squeezed, so the token grid is (H, W))."""
        return ImageAdapterConfig(
            image_shape=(2, *self.train_size),
            num_image_channels=27,
            prep_type="patches",
            temporal_downsample=2,
            num_channels=self.num_patch_channels,
            conv_after_patching=True,
            num_bands=self.num_bands,
            max_resolution=self.train_size,
        )

    @classmethod
    def sintel(cls, **overrides) -> OpticalFlowConfig:
        """The released model (AutoFlow-trained, evaluated on Sintel/KITTI): 2048×512 latents, 24 layers, 41.1M."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> OpticalFlowConfig:
        """A ~28k-parameter model on 24×32 crops for tests and CPU demos."""
        fields = dict(
            train_size=(24, 32),
            num_patch_channels=16,
            num_bands=4,
            decoder_chunk_size=256,
            min_overlap=4,
            encoder=EncoderConfig(
                num_latents=16, num_latent_channels=32, num_self_attention_heads=4, num_self_attends_per_block=2
            ),
            decoder=DecoderConfig(num_query_channels=34, num_output_channels=2),
        )
        return cls(**{**fields, **overrides})


def _pair(value: object, name: str) -> tuple[int, int]:
    try:
        pair = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width), got {value!r}") from None
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"{name} must be two positive sizes (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- tiling (pure functions)
def check_overlap(tile: tuple[int, int], min_overlap: int) -> None:
    if not isinstance(min_overlap, int) or not 0 <= min_overlap < min(tile):
        raise ValueError(f"min_overlap must be an int in [0, {min(tile)}) for tiles of {tile}, got {min_overlap!r}")


def check_scale(scale: object, name: str = "scale") -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {scale!r}")
    return float(scale)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` times ``scale``, rounded, at least 1 pixel."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Frames ``[B, T, 3, H, W]`` -> ``[B, T, 3, h, w]``, bilinear (antialiased when shrinking)."""
    b, t, c, h, w = frames.shape
    out = F.interpolate(frames.reshape(b, t * c, h, w), size=size, mode="bilinear", antialias=True)
    return out.reshape(b, t, c, *size)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow ``[B, 2, h, w]`` (pixels of its grid) -> ``[B, 2, H, W]`` in pixels of the new grid: bilinear
    resampling, then u × W/w and v × H/h."""
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, size=size, mode="bilinear", antialias=size[0] < h or size[1] < w)
    factor = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device)
    return out * factor[:, None, None]


def tile_starts(size: int, tile: int, min_overlap: int = 20) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, size)``, consecutive tiles overlapping by at least
    ``min_overlap``: every ``tile - min_overlap`` from 0, then one tile flush with the end.

    This is the official demo's ``compute_grid_indices`` without its duplicate (``size == tile``) or
    out-of-bounds (e.g. ``size = 700``) tiles; where those are valid the blended result is the same.
    """
    if tile <= 0 or size < tile:
        raise ValueError(f"an image of length {size} cannot be covered by tiles of length {tile} (> 0, <= size)")
    if not 0 <= min_overlap < tile:
        raise ValueError(f"min_overlap must lie in [0, {tile}), got {min_overlap}")
    return [*range(0, size - tile, tile - min_overlap), size - tile]


def tile_origins(image_size: tuple[int, int], tile: tuple[int, int], min_overlap: int = 20) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the tiles covering an ``(H, W)`` image, row-major."""
    ys, xs = (tile_starts(image_size[i], tile[i], min_overlap) for i in (0, 1))
    return [(y, x) for y in ys for x in xs]


def tile_weights(
    tile: tuple[int, int], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The official blending weights of one tile: ``w(y, x) = min(x + 1, W - x, y + 1, H - y)``, ``[H, W]``."""
    h, w = tile
    y, x = torch.arange(h, device=device), torch.arange(w, device=device)
    wy, wx = torch.minimum(y + 1, h - y), torch.minimum(x + 1, w - x)
    return torch.minimum(wy[:, None], wx[None, :]).to(dtype)


def blend_weights(image_size: tuple[int, int], tile: tuple[int, int], origins: list[tuple[int, int]]) -> torch.Tensor:
    """Each tile's normalised weight over the whole image, ``[T, H, W]`` (zero outside the tile); the weights of
    a covered pixel sum to 1. For inspection; :func:`blend_tiles` streams instead."""
    out = torch.zeros(len(origins), *image_size)
    w = tile_weights(tile)
    for i, (y, x) in enumerate(origins):
        out[i, y : y + tile[0], x : x + tile[1]] = w
    return out / out.sum(0, keepdim=True).clamp(min=1e-30)


def blend_tiles(pieces: Iterable[tuple[int, int, torch.Tensor]], image_size: tuple[int, int]) -> torch.Tensor:
    """Weighted average of overlapping tiles: ``pieces`` yields ``(y, x, values [..., h, w])`` (consumed lazily, so
    only one tile's output is alive at a time); returns ``[..., H, W]``. Every pixel must be covered."""
    acc: torch.Tensor | None = None
    total: torch.Tensor | None = None
    h_img, w_img = image_size
    for y, x, piece in pieces:
        h, w = piece.shape[-2:]
        if y < 0 or x < 0 or y + h > h_img or x + w > w_img:
            raise ValueError(f"tile at ({y}, {x}) of size ({h}, {w}) lies outside the image {image_size}")
        wt = tile_weights((h, w), piece.device, piece.dtype)
        if acc is None:
            acc = piece.new_zeros(*piece.shape[:-2], h_img, w_img)
            total = piece.new_zeros(h_img, w_img)
        acc[..., y : y + h, x : x + w] += piece * wt
        total[y : y + h, x : x + w] += wt
    if acc is None or bool((total == 0).any()):
        raise ValueError(f"the tiles do not cover the whole {image_size} image")
    return acc / total


# ------------------------------------------------------------------------------------------------------ the model
class OpticalFlow(PerceiverIO):
    """Perceiver IO optical flow: ``forward(frames [B, 2, 3, H, W] in [-1, 1])`` -> flow ``[B, 2, H, W]`` in pixels
    (channel 0: horizontal u, positive to the right; channel 1: vertical v, positive downwards) from frame 0 to
    frame 1.

    3×3 patches of both frames + Fourier positions → encoder → the same tokens as queries (one per pixel) →
    decoder (+ Linear to 2) → rescaled flow. ``forward`` runs the whole image at once (any size; the model was
    trained on 368×496 crops); :meth:`predict` tiles larger images with crops of ``config.tile`` as the official
    demo does.
    """

    def __init__(self, config: OpticalFlowConfig) -> None:
        adapter = FlowInputAdapter(config.adapter_config(), config.correlation_radius, config.correlation_stride)
        super().__init__(
            input_adapter=adapter,
            encoder=build_encoder(config, adapter.num_input_channels),
            output_queries=InputQueries(),
            decoder=build_decoder(config),
            output_adapter=FlowOutputAdapter(config.rescale_factor, config.output_scale),
            config=config,
        )
        if config.zero_init_output:
            with torch.no_grad():
                self.decoder.projection.weight.zero_()

    check_frames = staticmethod(FlowInputAdapter.check_frames)

    def forward(
        self, frames: torch.Tensor, chunk_size: int | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionMaps]:
        """Flow ``[B, 2, H, W]`` in pixels; ``chunk_size`` overrides ``config.decoder_chunk_size``.

        ``return_attention=True`` returns ``(flow, AttentionMaps)`` (the flow unchanged): ``encoder [B, h, N, H·W]``
        (latents over the input tokens, one per pixel, row-major) and ``decoder [B, h, H·W, N]`` (each pixel's
        query over the latents)."""
        b, _, _, h, w = self.check_frames(frames).shape
        chunk = self.config.decoder_chunk_size if chunk_size is None else chunk_size
        out = super().forward(
            frames.to(self.encoder.latents.dtype), chunk_size=chunk, return_attention=return_attention
        )
        flow, maps = out if return_attention else (out, None)  # [B, H·W, 2]
        flow = flow.transpose(1, 2).reshape(b, 2, h, w)
        return (flow, maps) if return_attention else flow

    @torch.no_grad()
    def predict(
        self,
        frames: torch.Tensor,
        tile: tuple[int, int] | None = None,
        min_overlap: int | None = None,
        progress: bool = False,
        scale: float | None = None,
    ) -> torch.Tensor:
        """Flow ``[B, 2, H, W]`` of an image of any size at least ``tile`` (default ``config.tile``, 368×496):
        crops at :func:`tile_origins` (overlap >= ``min_overlap``, default ``config.min_overlap``), each through
        :meth:`forward`, blended by :func:`blend_tiles`. A smaller image raises ValueError (pad or resize it, or
        call the model directly). ``progress=True`` shows a tqdm bar over the tiles. ``scale`` (default
        ``config.predict_scale``) < 1 runs all this on the frames resized by ``scale`` and returns the flow
        resized back (:func:`resize_flow`), so the image times ``scale`` must cover the tile."""
        h, w = self.check_frames(frames).shape[-2:]
        scale = check_scale(self.config.predict_scale if scale is None else scale)
        if scale != 1.0:
            size = scaled_size((h, w), scale)
            tile_size = _pair(tile, "tile") if tile is not None else self.config.tile
            if size[0] < tile_size[0] or size[1] < tile_size[1]:
                raise ValueError(
                    f"frames of {h}×{w} pixels at scale {scale:g} ({size[0]}×{size[1]}) are smaller than the tile "
                    f"{tile_size[0]}×{tile_size[1]}: raise scale or pass larger frames"
                )
            small = resize_frames(frames, size)
            return resize_flow(self.predict(small, tile, min_overlap, progress, scale=1.0), (h, w))
        tile = _pair(tile, "tile") if tile is not None else self.config.tile
        min_overlap = self.config.min_overlap if min_overlap is None else min_overlap
        check_overlap(tile, min_overlap)
        if h < tile[0] or w < tile[1]:
            raise ValueError(
                f"frames of {h}×{w} pixels are smaller than the tile {tile[0]}×{tile[1]}: pad or resize them "
                "to at least the tile size (as the official demo requires), or call the model directly"
            )
        origins = tile_origins((h, w), tile, min_overlap)
        if progress:
            from tqdm.auto import tqdm

            origins = tqdm(origins, desc="flow tiles", unit="tile")
        pieces = ((y, x, self(frames[..., y : y + tile[0], x : x + tile[1]])) for y, x in origins)
        return blend_tiles(pieces, (h, w))
