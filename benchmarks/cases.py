"""What each benchmark configuration builds, per implementation.

``build(case, impl, size)`` returns a ``Case``: the model, an inference forward, a training loss, the parameter count
and a fingerprint of the output (to check that implementations sharing weights compute the same thing).

Implementations:
- ``ours``: perceiverio. For the presets it is converted from the transformers model built with the same seed, so
  both hold the same weights (the converter is the one users run).
- ``hf``: transformers' Perceiver classes (eager attention).
- ``lucidrains``: ``perceiver_pytorch.PerceiverIO``, only in the M/O sweeps: its blocks have a fixed 4× GEGLU
  feed-forward and one head width for q, k and v, so the released presets do not map onto it; in the sweeps it gets
  the same latent array, heads and head width, and its larger feed-forward is counted in its FLOPs.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from cases_ar import ar_case
from torch import nn

PRESETS = ("mlm", "imagenet", "flow", "kinetics")
SWEEPS = ("sweep_m", "sweep_o")
AR = ("ar",)  # Perceiver AR against perceiver-ar-pytorch and a decoder-only Transformer: cases_ar.py
IMPLS = {
    "ar": ("ours", "lucidrains", "transformer"),
    "mlm": ("ours", "hf"),
    "imagenet": ("ours", "hf"),
    "flow": ("ours", "hf"),
    "kinetics": ("ours", "hf"),
    "sweep_m": ("ours", "hf", "lucidrains"),
    "sweep_o": ("ours", "hf", "lucidrains"),
}

# the sweeps' small Perceiver: C-channel inputs and queries, N x D latents, L self-attention layers of 8 heads;
# both cross-attentions have one head of C query/key and value channels (the official default for the encoder's)
SWEEP = dict(c=64, n=128, d=256, layers=1, heads=8, o_inputs=4096, m_outputs=1)
KINETICS_CHUNKS = 128  # transformers' documented reconstruction loop: 128 chunks, one full forward each


@dataclass
class Case:
    model: nn.Module
    forward: Callable[[], torch.Tensor]  # one inference pass
    loss: Callable[[], torch.Tensor] | None  # one training forward, scalar
    params: int
    note: str = ""
    scale: float = 1.0  # measured time x scale = the configuration's time (transformers' chunked Kinetics loop)
    # further modes: name -> (call, items it makes); the time is reported per item (generation: per new byte)
    extra: dict[str, tuple[Callable[[], torch.Tensor], int]] = field(default_factory=dict)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(case: str, impl: str, size: int | None = None) -> Case:
    torch.manual_seed(0)
    built = {
        "mlm": _mlm,
        "imagenet": _imagenet,
        "flow": _flow,
        "kinetics": _kinetics,
        "sweep_m": _sweep_m,
        "sweep_o": _sweep_o,
        "ar": _ar,
    }[case](impl, size)
    gc.collect()
    return built


def _ar(impl: str, size: int | None) -> Case:
    return ar_case(Case, impl, size, _params)


# ------------------------------------------------------------------------------------------------ presets
def _hf_mlm():
    import transformers

    return transformers.PerceiverForMaskedLM(transformers.PerceiverConfig(qk_channels=256, v_channels=1280))


def _mlm(impl: str, size: int | None) -> Case:
    """The released 201M byte MLM, batch 2 x 2048 bytes; training on 15% masked bytes."""
    from perceiverio import MaskedLanguageModel

    b, length = 2, 2048
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(6, 262, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    picked = torch.rand(b, length, generator=g) < 0.15
    labels = torch.where(picked, ids, torch.full_like(ids, -100))
    inputs = ids.masked_fill(picked, 3)
    hf = _hf_mlm()
    if impl == "hf":
        return Case(
            hf,
            lambda: hf(inputs=inputs, attention_mask=mask).logits,
            lambda: hf(inputs=inputs, attention_mask=mask, labels=labels).loss,
            _params(hf),
        )
    model = MaskedLanguageModel.from_transformers(hf)
    hf = None  # only our model is measured: free transformers' copy of the weights
    return Case(
        model,
        lambda: model(inputs, mask).logits,
        lambda: model(inputs, mask, labels=labels, decode_labeled_only=True).loss,
        _params(model),
        note="training decodes only the masked bytes (decode_labeled_only)",
    )


def _imagenet(impl: str, size: int | None) -> Case:
    """ImageNet-Fourier at 224 x 224, batch 1."""
    import transformers

    from perceiverio import ImageClassifier

    config = transformers.PerceiverConfig(
        d_latents=1024,
        num_latents=512,
        num_blocks=8,
        num_self_attends_per_block=6,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        image_size=224,
        num_labels=1000,
    )
    hf = transformers.PerceiverForImageClassificationFourier(config)
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([7])
    if impl == "hf":
        return Case(hf, lambda: hf(inputs=pixels).logits, lambda: hf(inputs=pixels, labels=labels).loss, _params(hf))
    model = ImageClassifier.from_transformers(hf)
    hf = None  # only our model is measured: free transformers' copy of the weights
    return Case(model, lambda: model(pixels).logits, lambda: model(pixels, labels=labels).loss, _params(model))


def _flow(impl: str, size: int | None) -> Case:
    """The Sintel optical-flow model on one 368 x 496 frame pair."""
    import transformers

    from perceiverio import OpticalFlow
    from perceiverio.adapters.image import extract_patches_3x3

    config = transformers.PerceiverConfig(
        num_latents=2048,
        d_latents=512,
        d_model=322,
        num_blocks=1,
        num_self_attends_per_block=24,
        num_self_attention_heads=16,
        num_cross_attention_heads=1,
        train_size=[368, 496],
    )
    hf = transformers.PerceiverForOpticalFlow(config)
    frames = torch.rand(1, 2, 3, 368, 496, generator=torch.Generator().manual_seed(1)) * 2 - 1
    target = torch.randn(1, 2, 368, 496, generator=torch.Generator().manual_seed(2))
    if impl == "hf":
        patches = extract_patches_3x3(frames).movedim(-1, 2)  # [1, 2, 27, H, W], transformers' input

        def forward() -> torch.Tensor:  # pixels, like ours: transformers returns the flow before the demo's x20
            return hf(inputs=patches).logits.permute(0, 3, 1, 2) * 20

        return Case(hf, forward, lambda: (forward() - target).norm(dim=1).mean(), _params(hf))
    model = OpticalFlow.from_transformers(hf)
    hf = None  # only our model is measured: free transformers' copy of the weights
    return Case(model, lambda: model(frames), lambda: (model(frames) - target).norm(dim=1).mean(), _params(model))


def _kinetics(impl: str, size: int | None) -> Case:
    """The Kinetics-700 video + audio + label autoencoder, full reconstruction of one clip (802,817 queries)."""
    import transformers

    from perceiverio import MultimodalAutoencoder

    config = transformers.PerceiverConfig(
        num_latents=784,
        d_latents=512,
        d_model=704,
        num_blocks=1,
        num_self_attends_per_block=8,
        num_self_attention_heads=8,
        num_cross_attention_heads=1,
        num_labels=700,
        num_frames=16,
        image_size=224,
        audio_samples_per_frame=1920,
        samples_per_patch=16,
        output_shape=[1, 16, 224, 224],
    )
    hf = transformers.PerceiverForMultimodalAutoencoding(config)
    g = torch.Generator().manual_seed(1)
    inputs = {
        "image": torch.rand(1, 16, 3, 224, 224, generator=g),
        "audio": torch.randn(1, 30_720, 1, generator=g),
        "label": torch.zeros(1, 700),
    }
    # training as in the paper: every input, 512 random pixels + 512 random audio patches + the label decoded
    points = {
        "image": torch.randperm(16 * 224 * 224, generator=g)[:512],
        "audio": torch.randperm(30_720 // 16, generator=g)[:512],
        "label": None,
    }

    def loss_of(out: dict) -> torch.Tensor:  # the paper's weights; L1 against zero targets (the work is the same)
        return 0.03 * out["image"].abs().mean() + out["audio"].abs().mean() + 1e-4 * out["label"].square().mean()

    if impl == "hf":
        image_chunk = 16 * 224 * 224 // KINETICS_CHUNKS
        audio_chunk = 30_720 // 16 // KINETICS_CHUNKS
        chunk = {"image": torch.arange(image_chunk), "audio": torch.arange(audio_chunk), "label": None}
        return Case(
            hf,
            lambda: hf(inputs=inputs, subsampled_output_points=chunk).logits["image"],
            lambda: loss_of(hf(inputs=inputs, subsampled_output_points=points).logits),
            _params(hf),
            note=f"forward: one of the {KINETICS_CHUNKS} chunks of transformers' documented loop "
            f"(each a full forward), time x {KINETICS_CHUNKS}",
            scale=KINETICS_CHUNKS,
        )
    model = MultimodalAutoencoder.from_transformers(hf)
    hf = None  # only our model is measured: free transformers' copy of the weights
    # the video as transformers lays out its image queries: [B, T*H*W, 3]
    return Case(
        model,
        lambda: model.reconstruct(inputs)["image"].movedim(2, -1).reshape(1, -1, 3),
        lambda: loss_of(model(inputs, points)),
        _params(model),
        note="forward: encode once, decode 16,384 queries per chunk",
    )


# ------------------------------------------------------------------------------------------------- sweeps
def _ours_small(num_queries: int):
    from perceiverio import DecoderConfig, EncoderConfig, PerceiverIO, PerceiverIOConfig

    s = SWEEP
    config = PerceiverIOConfig(
        num_input_channels=s["c"],
        num_output_queries=num_queries,
        encoder=EncoderConfig(
            num_latents=s["n"],
            num_latent_channels=s["d"],
            num_cross_attention_heads=1,
            num_self_attention_heads=s["heads"],
            num_self_attends_per_block=s["layers"],
        ),
        decoder=DecoderConfig(
            num_query_channels=s["c"], num_heads=1, qk_channels=s["c"], v_channels=s["c"], use_query_residual=False
        ),
    )
    return PerceiverIO.from_config(config)


def _hf_small(num_queries: int):
    import transformers
    from transformers.models.perceiver.modeling_perceiver import PerceiverBasicDecoder, PerceiverModel

    s = SWEEP
    config = transformers.PerceiverConfig(
        num_latents=s["n"],
        d_latents=s["d"],
        d_model=s["c"],
        num_blocks=1,
        num_self_attends_per_block=s["layers"],
        num_self_attention_heads=s["heads"],
        num_cross_attention_heads=1,
    )
    decoder = PerceiverBasicDecoder(
        config,
        output_num_channels=s["c"],
        position_encoding_type="trainable",
        output_index_dims=num_queries,
        num_channels=s["c"],
        qk_channels=s["c"],
        v_channels=s["c"],
        num_heads=1,
        use_query_residual=False,
        final_project=False,
        trainable_position_encoding_kwargs=dict(num_channels=s["c"], index_dims=num_queries),
    )
    return PerceiverModel(config, decoder=decoder)


def _lucidrains_small():
    from perceiver_pytorch import PerceiverIO

    s = SWEEP
    return PerceiverIO(
        depth=s["layers"],
        dim=s["c"],
        queries_dim=s["c"],
        logits_dim=s["c"],
        num_latents=s["n"],
        latent_dim=s["d"],
        cross_heads=1,
        latent_heads=s["heads"],
        cross_dim_head=s["c"],
        latent_dim_head=s["d"] // s["heads"],
    )


def _sweep_m(impl: str, size: int | None) -> Case:
    """Inputs [1, M, 64] -> 128 x 256 latents -> one output query: the cost of reading M elements."""
    m = int(size)
    x = torch.randn(1, m, SWEEP["c"], generator=torch.Generator().manual_seed(1))
    return _small(impl, x, SWEEP["m_outputs"])


def _sweep_o(impl: str, size: int | None) -> Case:
    """4,096 inputs -> latents -> O learned queries [1, O, 64]: the cost of writing O outputs."""
    x = torch.randn(1, SWEEP["o_inputs"], SWEEP["c"], generator=torch.Generator().manual_seed(1))
    return _small(impl, x, int(size))


def _small(impl: str, x: torch.Tensor, num_queries: int) -> Case:
    if impl == "ours":
        model = _ours_small(num_queries)
        chunk = 16_384 if num_queries > 16_384 else None
        return Case(
            model,
            lambda: model(x, chunk_size=chunk),
            lambda: model(x).square().mean(),
            _params(model),
            note="forward: decoder chunks of 16,384 queries" if num_queries > 16_384 else "",
        )
    if impl == "hf":
        model = _hf_small(num_queries)
        return Case(
            model, lambda: model(inputs=x).logits, lambda: model(inputs=x).logits.square().mean(), _params(model)
        )
    model = _lucidrains_small()
    queries = torch.randn(num_queries, SWEEP["c"], generator=torch.Generator().manual_seed(2))
    if num_queries > 1:  # learned queries, as in the other two
        model.register_parameter("bench_queries", nn.Parameter(queries))
        queries = model.bench_queries
    return Case(
        model,
        lambda: model(x, queries=queries),
        lambda: model(x, queries=queries).square().mean(),
        _params(model),
        note="4x GEGLU feed-forward (fixed in perceiver_pytorch)",
    )
