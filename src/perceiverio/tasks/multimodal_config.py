"""The multimodal autoencoder's configuration (paper §4.3): its modalities, the derived query width, the Kinetics-700
and tiny presets, and the loss weights. The model is in :mod:`perceiverio.tasks.multimodal`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from ..adapters.audio import AudioAdapterConfig
from ..adapters.image import ImageAdapterConfig
from ..adapters.label import LabelAdapterConfig
from ..adapters.multimodal import check_modality_names
from ..core.config import DecoderConfig, EncoderConfig, PerceiverConfig
from ..core.position import num_fourier_channels

ModalityConfig = AudioAdapterConfig | ImageAdapterConfig | LabelAdapterConfig
_KINDS = {AudioAdapterConfig: "audio", ImageAdapterConfig: "image", LabelAdapterConfig: "label"}
LOSS_WEIGHTS = {"image": 0.03, "audio": 1.0, "label": 1e-4}  # paper: 0.03·L1(video) + L1(audio) + 1e-4·CE(label)

# the released model: 784 × 512 latents, 1 cross-attention head, 8 layers of 8 heads (heads: EncoderConfig defaults)
_KINETICS_ENCODER = EncoderConfig(num_latents=784, num_latent_channels=512, num_self_attends_per_block=8)


def modality_kind(config: object) -> str:
    """``"audio"``, ``"image"`` (image or video) or ``"label"`` for a modality config."""
    kind = _KINDS.get(type(config))
    if kind is None:
        raise ValueError(
            f"a modality config must be an AudioAdapterConfig, ImageAdapterConfig or "
            f"LabelAdapterConfig, got {type(config).__name__}"
        )
    return kind


def _query_channels(cfg: ModalityConfig) -> int:
    if isinstance(cfg, ImageAdapterConfig):
        return num_fourier_channels(len(cfg.image_shape), cfg.num_bands, cfg.concat_pos, cfg.sine_only)
    if isinstance(cfg, AudioAdapterConfig):
        return cfg.num_position_channels
    return cfg.num_query_channels


@dataclass(frozen=True, kw_only=True)
class MultimodalAutoencoderConfig(PerceiverConfig):
    """A multimodal autoencoder.

    modalities: ``{name: AudioAdapterConfig | ImageAdapterConfig | LabelAdapterConfig}`` (a mapping or pairs;
        stored sorted by name). An image modality needs Fourier positions: its ``num_bands``/``max_resolution``
        (default: the token grid) also build its output queries over the pixel grid ``image_shape``.
    encoder: latents and latent stack. decoder: the shared decoder; None derives it (1 head, no query residual,
        512 output channels, query width E = max query width + ``query_padding_size``).
    min_padding_size: minimum learned padding channels of every input modality (official default 2; Kinetics 4).
    mask_probs: ``{name: p}``: those modalities get a learned mask token replacing each token with probability p.
    apply_mask_in_eval: also mask in eval mode. The official code always masks; the Kinetics preset sets True so
        that the label (p = 1) is hidden at inference, as in DeepMind's demo.
    """

    modalities: tuple[tuple[str, ModalityConfig], ...]
    encoder: EncoderConfig = _KINETICS_ENCODER
    decoder: DecoderConfig | None = None
    min_padding_size: int = 2
    query_padding_size: int = 2
    mask_probs: tuple[tuple[str, float], ...] = ()
    apply_mask_in_eval: bool = False

    def __post_init__(self) -> None:
        pairs = (
            tuple(self.modalities.items())
            if isinstance(self.modalities, Mapping)
            else tuple(tuple(p) for p in self.modalities)
        )
        names = check_modality_names([n for n, _ in pairs], "MultimodalAutoencoderConfig.modalities")
        mods = dict(pairs)
        object.__setattr__(self, "modalities", tuple((n, mods[n]) for n in names))
        for name, cfg in self.modalities:
            modality_kind(cfg)
            if isinstance(cfg, ImageAdapterConfig) and (cfg.position_encoding != "fourier" or cfg.project_pos_dim):
                raise ValueError(
                    f"image modality {name!r} needs position_encoding='fourier' without project_pos_dim: "
                    "its output queries are Fourier features of pixel positions"
                )
        probs = self.mask_probs.items() if isinstance(self.mask_probs, Mapping) else self.mask_probs
        probs = tuple(sorted((str(n), float(p)) for n, p in probs))
        object.__setattr__(self, "mask_probs", probs)
        for name, p in probs:
            if name not in mods:
                raise ValueError(f"mask_probs names {name!r}, which is not a modality ({names})")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"mask_probs[{name!r}] must lie in [0, 1], got {p}")
        for name in ("min_padding_size", "query_padding_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative int, got {getattr(self, name)!r}")
        e = self.num_query_channels
        if self.decoder is None:
            object.__setattr__(self, "decoder", DecoderConfig(num_query_channels=e, num_output_channels=512))
        elif self.decoder.num_query_channels != e:
            raise ValueError(
                f"decoder.num_query_channels must be {e} (widest modality query + query_padding_size), "
                f"got {self.decoder.num_query_channels}; pass decoder=None to derive it"
            )
        super().__post_init__()

    @property
    def modality_configs(self) -> dict[str, ModalityConfig]:
        return dict(self.modalities)

    @property
    def kinds(self) -> dict[str, str]:
        return {n: modality_kind(c) for n, c in self.modalities}

    @property
    def num_query_channels(self) -> int:
        return max(_query_channels(c) for _, c in self.modalities) + self.query_padding_size

    @classmethod
    def kinetics(cls, **overrides) -> MultimodalAutoencoderConfig:
        """DeepMind's Kinetics-700 autoencoder (16×224×224 video, 30,720 audio samples, 700 classes; 19.9M params).

        52,097 input tokens × 704 channels (audio 1,920 × 401, video 50,176 × 243, label 1 × 700, each padded to
        700 + 4), 784 × 512 latents, 8 self-attention layers; queries padded to 1024 + 2 = 1026.
        """
        fields = dict(
            modalities={
                "audio": AudioAdapterConfig(max_resolution=30_720),
                "image": ImageAdapterConfig(
                    image_shape=(16, 224, 224),
                    prep_type="patches",
                    spatial_downsample=4,
                    num_bands=32,
                    max_resolution=(16, 56, 56),
                ),
                "label": LabelAdapterConfig(),
            },
            encoder=_KINETICS_ENCODER,
            min_padding_size=4,
            query_padding_size=2,
            mask_probs={"audio": 0.0, "image": 0.0, "label": 1.0},
            apply_mask_in_eval=True,
        )
        return cls(**{**fields, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> MultimodalAutoencoderConfig:
        """The small model of the golden case: 4×16×16 video, 128 samples, 5 classes, 16 × 32 latents."""
        fields = dict(
            modalities={
                "audio": AudioAdapterConfig(num_samples=128, samples_per_patch=8, num_bands=8, max_resolution=128),
                "image": ImageAdapterConfig(
                    image_shape=(4, 16, 16),
                    prep_type="patches",
                    spatial_downsample=4,
                    num_bands=3,
                    max_resolution=(4, 4, 4),
                ),
                "label": LabelAdapterConfig(num_classes=5, num_query_channels=24),
            },
            encoder=EncoderConfig(
                num_latents=16, num_latent_channels=32, num_self_attention_heads=4, num_self_attends_per_block=2
            ),
            decoder=DecoderConfig(num_query_channels=26, num_output_channels=16),
            min_padding_size=4,
            mask_probs={"audio": 0.0, "image": 0.0, "label": 1.0},
            apply_mask_in_eval=True,
        )
        return cls(**{**fields, **overrides})


def with_modality_names(config: MultimodalAutoencoderConfig, names: Mapping[str, str]) -> MultimodalAutoencoderConfig:
    """``config`` with modalities renamed (``{old: new}``), e.g. to ``{"image": "rgb", "audio": "sound"}``."""
    return dataclasses.replace(
        config,
        modalities=tuple((names.get(n, n), c) for n, c in config.modalities),
        mask_probs=tuple((names.get(n, n), p) for n, p in config.mask_probs),
    )
