"""Loaders build on the meta device and take the checkpoint's tensors: no initialiser runs on real memory, nothing
is left on meta, tied weights stay tied, and borrowed tensors are copied."""

from __future__ import annotations

import itertools
import pickle

import pytest
import torch

from perceiverio import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultimodalAutoencoder,
    MultimodalAutoencoderConfig,
    MultitaskClassifier,
    MultitaskClassifierConfig,
    OpticalFlow,
    OpticalFlowConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
    SetModel,
    SetModelConfig,
)
from perceiverio.weights import to_haiku

INITIALISERS = (
    "trunc_normal_",
    "normal_",
    "uniform_",
    "kaiming_uniform_",
    "xavier_uniform_",
    "zeros_",
    "ones_",
    "constant_",
)


@pytest.fixture
def no_init(monkeypatch):
    """torch.nn.init's initialisers raise when asked to fill real (non-meta) memory."""

    def guard(name):
        real = getattr(torch.nn.init, name)

        def initialiser(tensor, *args, **kwargs):
            if not tensor.is_meta:
                raise AssertionError(f"torch.nn.init.{name} ran on a real tensor while loading")
            return real(tensor, *args, **kwargs)

        return initialiser

    def arm():
        for name in INITIALISERS:
            monkeypatch.setattr(torch.nn.init, name, guard(name))

    return arm


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _all_real(model: torch.nn.Module) -> bool:
    return not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def test_from_pretrained_does_not_initialise_and_keeps_the_tie(tmp_path, no_init):
    eager = _perturbed(MaskedLanguageModel(MaskedLanguageModelConfig.tiny()))
    eager.save_pretrained(tmp_path)
    no_init()
    with pytest.raises(AssertionError, match="ran on a real tensor"):  # the guard sees an eager build
        MaskedLanguageModel(MaskedLanguageModelConfig.tiny())
    loaded = MaskedLanguageModel.from_pretrained(tmp_path)
    assert _all_real(loaded)
    assert loaded.output_adapter.embedding is loaded.input_adapter.token_embedding  # tied, not a copy
    ids = torch.randint(0, 262, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, eager(ids).logits, rtol=0, atol=0)
        loaded.input_adapter.token_embedding.weight.mul_(2.0)  # the output side sees the input embedding live
        assert not torch.equal(loaded(ids).logits, eager(ids).logits)


MODELS = [
    (MaskedLanguageModel, MaskedLanguageModelConfig),
    (SequenceClassifier, SequenceClassifierConfig),
    (MultitaskClassifier, MultitaskClassifierConfig),
    (ImageClassifier, ImageClassifierConfig),
    (OpticalFlow, OpticalFlowConfig),
    (MultimodalAutoencoder, MultimodalAutoencoderConfig),
    (SetModel, SetModelConfig),
]


@pytest.mark.parametrize("cls, config_cls", MODELS, ids=[m[0].__name__ for m in MODELS])
def test_every_model_loads_without_init(tmp_path, no_init, cls, config_cls):
    eager = _perturbed(cls(config_cls.tiny()))
    eager.save_pretrained(tmp_path)
    no_init()
    loaded = cls.from_pretrained(tmp_path)
    assert _all_real(loaded) and not loaded.training
    for (name, a), (name2, b) in zip(eager.state_dict().items(), loaded.state_dict().items()):
        assert name == name2 and torch.equal(a, b) and a.dtype == b.dtype, name


def test_from_haiku_does_not_initialise(no_init):
    eager = _perturbed(MaskedLanguageModel(MaskedLanguageModelConfig.tiny()))
    params = pickle.loads(pickle.dumps(to_haiku(eager)))
    no_init()
    loaded = MaskedLanguageModel.from_haiku(params, eager.config)
    assert _all_real(loaded) and loaded.output_adapter.embedding is loaded.input_adapter.token_embedding
    ids = torch.randint(0, 262, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, eager(ids).logits, rtol=0, atol=0)


def test_from_transformers_copies_borrowed_tensors_and_casts(no_init):
    transformers = pytest.importorskip("transformers")
    config = transformers.PerceiverConfig(
        num_latents=8, d_latents=32, d_model=16, num_self_attends_per_block=2, vocab_size=30, max_position_embeddings=24
    )
    hf = transformers.PerceiverForMaskedLM(config).eval()
    no_init()
    ours = MaskedLanguageModel.from_transformers(hf)
    assert _all_real(ours)
    before = ours.encoder.latents.detach().clone()
    with torch.no_grad():
        hf.perceiver.embeddings.latents.add_(1.0)  # the transformers model is not ours to share
    assert torch.equal(ours.encoder.latents, before)
    half = {k: v.half() for k, v in hf.state_dict().items()}
    ours = MaskedLanguageModel.from_transformers(half, hf.config)
    assert {p.dtype for p in ours.parameters()} == {torch.float32}
