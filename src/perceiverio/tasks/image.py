"""Image classification (paper §4.5, ImageNet): pixels in, one learned query out.

An :class:`~perceiverio.adapters.image.ImageInputAdapter` turns ``[B, C, H, W]`` images into tokens (raw pixels,
a 1×1 conv or a conv stem, plus Fourier or learned positions), the encoder reads them into latents, and a single
learned query decodes them into class logits (official ``ClassificationDecoder``: ``BasicDecoder`` with one trainable
query, then ``[:, 0]``). The three released ImageNet models are presets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..adapters.classification import ClassificationOutputAdapter
from ..adapters.image import ImageAdapterConfig, ImageInputAdapter
from ..core.config import DecoderConfig, EncoderConfig, PerceiverConfig, check_positive
from ..core.perceiver import PerceiverIO, build_decoder, build_encoder
from ..core.queries import LearnedQueries
from .outputs import ClassifierOutput, class_cross_entropy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# the three released ImageNet models share the encoder: 512 × 1024 latents, 1 cross-attention head, 8 blocks × 6
# shared self-attends of 8 heads (the last three are EncoderConfig defaults)
_IMAGENET_ENCODER = EncoderConfig(num_latents=512, num_latent_channels=1024, num_blocks=8)


def _imagenet_decoder(use_query_residual: bool) -> DecoderConfig:
    return DecoderConfig(num_query_channels=1024, use_query_residual=use_query_residual)


@dataclass(frozen=True)
class ImageClassifierConfig(PerceiverConfig):
    """Image adapter + encoder + one learned query (``decoder.num_query_channels`` wide) + Linear to the classes.

    ``decoder.num_output_channels`` is set to ``num_classes`` by the model (leave it None). ``label_smoothing`` is
    applied by the loss (the paper trains ImageNet with 0.1).
    """

    adapter: ImageAdapterConfig = field(default_factory=ImageAdapterConfig)
    encoder: EncoderConfig = _IMAGENET_ENCODER
    decoder: DecoderConfig = field(default_factory=lambda: _imagenet_decoder(True))
    num_classes: int = 1000
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.adapter, ImageAdapterConfig) or self.adapter.is_video:
            raise ValueError(
                f"ImageClassifierConfig.adapter must be an ImageAdapterConfig for images (H, W), got {self.adapter!r}"
            )
        check_positive(self, "num_classes")
        if self.decoder.num_output_channels not in (None, self.num_classes):
            raise ValueError(
                f"decoder.num_output_channels ({self.decoder.num_output_channels}) must be None or "
                f"num_classes ({self.num_classes}): the final Linear maps to the classes"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")

    # ------------------------------------------------------------------------------------------------- presets
    @classmethod
    def imagenet_fourier(cls, num_classes: int = 1000, **overrides) -> ImageClassifierConfig:
        """Raw pixels + 2D Fourier features (64 bands, max resolution 224²): 50,176 tokens × 261 channels.
        Decoder with query residual. 48.4M parameters (79.0% top-1 in the paper)."""
        adapter = ImageAdapterConfig(max_resolution=(224, 224))
        return cls(**{"adapter": adapter, "num_classes": num_classes, **overrides})

    @classmethod
    def imagenet_learned(cls, num_classes: int = 1000, **overrides) -> ImageClassifierConfig:
        """Conv1x1(3→256) + learned positions (50,176 × 256) projected by Linear(256→256), concatenated: 512
        channels. Decoder without query residual (official). 62.3M parameters (72.7% top-1)."""
        adapter = ImageAdapterConfig(
            prep_type="conv1x1", num_channels=256, position_encoding="trainable", project_pos_dim=256
        )
        return cls(**{"adapter": adapter, "decoder": _imagenet_decoder(False), "num_classes": num_classes, **overrides})

    @classmethod
    def imagenet_conv(cls, num_classes: int = 1000, **overrides) -> ImageClassifierConfig:
        """Conv stem (7×7/2, 64 channels, BatchNorm, ReLU, max-pool 3×3/2, TF SAME padding) → 56×56, + 2D Fourier
        features (64 bands, max resolution 56²): 3,136 tokens × 322 channels. Query residual. 48.6M parameters
        (82.1% top-1)."""
        adapter = ImageAdapterConfig(prep_type="conv", spatial_downsample=4, num_channels=64, max_resolution=(56, 56))
        return cls(**{"adapter": adapter, "num_classes": num_classes, **overrides})

    @classmethod
    def tiny(cls, num_classes: int = 10, **overrides) -> ImageClassifierConfig:
        """A 25k-parameter model on 32×32 pixels (4 Fourier bands) for tests and CPU demos."""
        fields = dict(
            adapter=ImageAdapterConfig(image_shape=(32, 32), num_bands=4, max_resolution=(32, 32)),
            encoder=EncoderConfig(
                num_latents=16,
                num_latent_channels=32,
                num_self_attention_heads=4,
                num_self_attends_per_block=2,
                num_blocks=2,
            ),
            decoder=DecoderConfig(num_query_channels=32, use_query_residual=True),
            num_classes=num_classes,
        )
        return cls(**{**fields, **overrides})

    @classmethod
    def from_official(
        cls,
        input_preprocessor: Mapping[str, Any],
        encoder: Mapping[str, Any],
        decoder: Mapping[str, Any],
        num_classes: int,
        image_shape: tuple[int, int] = (224, 224),
        **overrides,
    ) -> ImageClassifierConfig:
        """The config of an official model from its constructor kwargs (the dicts of DeepMind's ImageNet colab
        ``CONFIGS[...]``: ``ImagePreprocessor``, ``PerceiverEncoder`` and ``ClassificationDecoder`` kwargs).

        ``image_shape`` is the input size (the official modules build their encodings lazily from the first input).
        """
        p = {k: v for k, v in input_preprocessor.items() if k != "name"}
        if p.get("n_extra_pos_mlp", 0) or not p.get("conv2d_use_batchnorm", True):
            raise ValueError("n_extra_pos_mlp and conv2d_use_batchnorm=False are not supported")
        pos_type = p.get("position_encoding_type", "fourier")
        fourier = dict(p.get("fourier_position_encoding_kwargs") or {})
        trainable = dict(p.get("trainable_position_encoding_kwargs") or {})
        project = p.get("project_pos_dim", -1)
        uses_channels = p.get("prep_type", "conv") in ("conv", "conv1x1") or p.get("conv_after_patching", False)
        adapter = ImageAdapterConfig(
            image_shape=tuple(image_shape),
            prep_type=p.get("prep_type", "conv"),
            spatial_downsample=p.get("spatial_downsample", 4),
            temporal_downsample=p.get("temporal_downsample", 1),
            num_channels=p.get("num_channels", 64) if uses_channels else None,
            conv_after_patching=p.get("conv_after_patching", False),
            position_encoding=pos_type,
            num_bands=fourier.get("num_bands", 64),
            max_resolution=tuple(fourier["max_resolution"]) if fourier.get("max_resolution") else None,
            concat_pos=fourier.get("concat_pos", True),
            sine_only=fourier.get("sine_only", False),
            num_pos_channels=trainable.get("num_channels", 256),
            project_pos_dim=project if project > 0 else None,
            concat_or_add_pos=p.get("concat_or_add_pos", "concat"),
        )
        e = encoder
        if e.get("cross_attention_shape_for_attn", "kv") not in ("kv", "q"):
            raise ValueError(f"unknown cross_attention_shape_for_attn {e['cross_attention_shape_for_attn']!r}")
        qk = e.get("qk_channels")
        if qk is None and e.get("cross_attention_shape_for_attn", "kv") == "q":
            qk = e.get("num_z_channels", 1024)  # cross qk = latent width, self-attention's default is the same
        enc = EncoderConfig(
            num_latents=e.get("z_index_dim", 512),
            num_latent_channels=e.get("num_z_channels", 1024),
            num_cross_attention_heads=e.get("num_cross_attend_heads", 1),
            num_self_attention_heads=e.get("num_self_attend_heads", 8),
            num_self_attends_per_block=e.get("num_self_attends_per_block", 6),
            num_blocks=e.get("num_blocks", 8),
            qk_channels=qk,
            v_channels=e.get("v_channels"),
            cross_attention_widening_factor=e.get("cross_attend_widening_factor", 1),
            self_attention_widening_factor=e.get("self_attend_widening_factor", 1),
            use_query_residual=e.get("use_query_residual", True),
            dropout=e.get("dropout_prob", 0.0),
        )
        d = decoder
        if d.get("position_encoding_type", "trainable") != "trainable":
            raise ValueError("the classification decoder's query must be trainable")
        dec = DecoderConfig(
            num_query_channels=(d.get("trainable_position_encoding_kwargs") or {}).get("num_channels", 1024),
            num_heads=d.get("num_heads", 1),
            qk_channels=d.get("qk_channels"),
            v_channels=d.get("v_channels"),
            use_query_residual=d.get("use_query_residual", False),
        )
        return cls(**{"adapter": adapter, "encoder": enc, "decoder": dec, "num_classes": num_classes, **overrides})


def normalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> ImageNet-normalised, as the released models expect (the official colab
    computes ``(x - mean·255) / (std·255)`` on 0..255 pixels, which is the same)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


class ImageClassifier(PerceiverIO):
    """``forward(images [B, C, H, W], labels=None)`` -> :class:`~perceiverio.tasks.outputs.ClassifierOutput` with
    ``logits [B, num_classes]`` and, given labels, the mean cross-entropy (``config.label_smoothing`` applied).

    ``labels``: class ids ``[B]`` (-100 = ignored) or class probabilities ``[B, num_classes]`` (MixUp/CutMix).
    Fourier models accept any image size (the frequencies stay those of ``max_resolution``); the learned-position
    model resamples its position table bicubically to the new token grid.
    """

    def __init__(self, config: ImageClassifierConfig) -> None:
        adapter = ImageInputAdapter(config.adapter)
        super().__init__(
            input_adapter=adapter,
            encoder=build_encoder(config, adapter.num_input_channels),
            output_queries=LearnedQueries(1, config.decoder.num_query_channels),
            decoder=build_decoder(config, dataclasses.replace(config.decoder, num_output_channels=config.num_classes)),
            output_adapter=ClassificationOutputAdapter(),
            config=config,
        )

    def check_images(self, images: object) -> torch.Tensor:
        """Validated images in the model's dtype (ValueError on a wrong rank, layout, dtype or size)."""
        x = self.input_adapter.check_input(images)
        h, w = x.shape[-2:]
        grid = self.input_adapter.token_grid((h, w))
        if h == 0 or w == 0 or min(grid) <= 0:
            raise ValueError(f"images of {h}×{w} pixels are too small for this model (token grid {grid})")
        return x.to(self.encoder.latents.dtype)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> latents ``[B, N, D]``."""
        return self.encoder(self.input_adapter(self.check_images(images)))

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, return_attention: bool = False
    ) -> ClassifierOutput:
        """``return_attention=True`` also fills ``encoder_attention [B, h, N, M]`` (latents over the M tokens of
        ``input_adapter.token_grid``, row-major) and ``decoder_attention [B, h, 1, N]``; logits unchanged."""
        out = super().forward(self.check_images(images), return_attention=return_attention)
        logits, maps = out if return_attention else (out, None)  # [B, K]
        loss = None if labels is None else self.loss(logits, labels)
        if maps is None:
            return ClassifierOutput(logits=logits, loss=loss)
        return ClassifierOutput(
            logits=logits, loss=loss, encoder_attention=maps.encoder, decoder_attention=maps.decoder
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labelled examples (0 when none is), with ``config.label_smoothing``."""
        b, k = logits.shape
        smoothing = self.config.label_smoothing
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels must be a tensor of shape [{b}] or [{b}, {k}], got {type(labels).__name__}")
        if labels.dtype.is_floating_point:
            if tuple(labels.shape) != (b, k):
                raise ValueError(f"soft labels must have shape [{b}, {k}] for {b} images, got {list(labels.shape)}")
            return F.cross_entropy(logits.float(), labels.float(), label_smoothing=smoothing)
        if labels.dtype == torch.bool or labels.is_complex() or tuple(labels.shape) != (b,):
            raise ValueError(
                f"labels must be integer class ids of shape [{b}] (or probabilities [{b}, {k}]) for the batch of "
                f"{b} images, got "
                f"dtype {labels.dtype} and shape {list(labels.shape)}"
            )
        return class_cross_entropy(logits, labels, smoothing)
