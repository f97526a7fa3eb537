"""Whole task models under bf16 autocast and with chunked key/value reading: the same outputs as float32 one-pass."""

from __future__ import annotations

import pytest
import torch

from perceiverio import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    OpticalFlow,
    OpticalFlowConfig,
)
from perceiverio.core.blocks import CrossAttentionBlock


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _models_and_inputs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    mlm = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    ids = torch.randint(6, 262, (2, 200), generator=g)
    image = ImageClassifier(ImageClassifierConfig.tiny()).eval()
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    flow = OpticalFlow(OpticalFlowConfig.tiny(train_size=(64, 80))).eval()  # 5,120 tokens: more than a kv chunk
    frames = torch.rand(1, 2, 3, 64, 80, generator=g) * 2 - 1
    return {
        "mlm": (mlm, lambda m: m(ids).logits),
        "image": (image, lambda m: m(pixels).logits),
        "flow": (flow, lambda m: m(frames)),
    }


@pytest.mark.parametrize("name", ["mlm", "image", "flow"])
def test_bf16_autocast_inference_within_2e_2(name):
    model, run = _models_and_inputs()[name]
    with torch.inference_mode():
        ref = run(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = run(model)
    assert _rel(low, ref) < 2e-2


def test_chunked_kv_reading_equals_one_pass_in_a_whole_model():
    model, run = _models_and_inputs()["flow"]
    blocks = [m for m in model.modules() if isinstance(m, CrossAttentionBlock)]
    assert blocks[0].kv_chunk_size == 4096
    with torch.inference_mode():
        chunked = run(model)
        for block in blocks:
            block.kv_chunk_size = None
        one_pass = run(model)
    assert _rel(chunked, one_pass) < 1e-5
