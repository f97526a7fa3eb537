"""Haiku checkpoint loading: safe pickles, source formats, key/shape errors, and the classifier naming."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import GOLDEN, assert_close_rel

from perceiverio import (
    DecoderConfig,
    EncoderConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    MultitaskClassifier,
    PerceiverIO,
    PerceiverIOConfig,
    SequenceClassifier,
    SequenceClassifierConfig,
)
from perceiverio.weights import load_pickle, read_haiku, to_haiku


# ------------------------------------------------------------------------------------------------- safe pickle
class _RunsShell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _RunsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    with open(path, "wb") as f:
        pickle.dump({"embed": {"embeddings": np.zeros((2, 2), np.float32)}, "x": _RunsShell(str(marker))}, f)
    with pytest.raises(ValueError, match=r"refusing to unpickle (os|posix)\.system: only plain containers"):
        load_pickle(path)
    with pytest.raises(ValueError, match=r"(os|posix)\.system"):
        MaskedLanguageModel.from_haiku(path)
    assert not marker.exists()

    with open(path, "wb") as f:
        pickle.dump([_RunsEval()], f)
    with pytest.raises(ValueError, match=r"builtins\.eval.*numpy arrays are accepted"):
        load_pickle(path)


def test_pickle_refuses_foreign_classes(tmp_path):
    path = tmp_path / "flat_mapping.pickle"
    # GLOBAL haiku._src.data_structures.FlatMapping, EMPTY_TUPLE, REDUCE, STOP: a Haiku FlatMapping container
    path.write_bytes(b"chaiku._src.data_structures\nFlatMapping\n)R.")
    with pytest.raises(ValueError, match=r"haiku\._src\.data_structures\.FlatMapping"):
        load_pickle(path)
    path.write_bytes(b"cjax\nArray\n)R.")
    with pytest.raises(ValueError, match=r"jax\.Array"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_reads_numpy_containers(tmp_path, protocol):
    from collections import OrderedDict

    tree = OrderedDict(
        m={"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(2.5), "i": np.arange(3, dtype=np.int32)},
        lst=[1, (2.0, "x")],
    )
    path = tmp_path / "ok.pickle"
    with open(path, "wb") as f:
        pickle.dump(tree, f, protocol=protocol)
    got = load_pickle(path)
    np.testing.assert_array_equal(got["m"]["w"], tree["m"]["w"])
    assert got["m"]["s"] == np.float32(2.5) and got["lst"] == [1, (2.0, "x")]


# ------------------------------------------------------------------------------------- golden MLM from a pickle
@pytest.fixture
def mlm_params(golden):
    arrays, _ = golden("b_language_mlm")
    nested: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if key.startswith("params/"):
            module, name = key[len("params/") :].rsplit("/", 1)
            nested.setdefault(module, {})[name] = value
    return nested, arrays


def test_mlm_from_pickle_file(tmp_path, mlm_params):
    nested, arrays = mlm_params
    path = tmp_path / "language_perceiver_io_bytes.pickle"
    with open(path, "wb") as f:
        pickle.dump(nested, f)
    model = MaskedLanguageModel.from_haiku(path)
    with torch.no_grad():
        logits = model(torch.from_numpy(arrays["input/token_ids"]), torch.from_numpy(arrays["input/input_mask"]))
    assert_close_rel(logits.logits, arrays["output/logits"])


def test_source_formats_agree(mlm_params):
    nested, _ = mlm_params
    flat = {f"{m}/{p}": v for m, ps in nested.items() for p, v in ps.items()}
    reference, state = read_haiku(GOLDEN / "b_language_mlm.npz")
    assert state == {} and set(reference) == set(flat)
    for source in (
        nested,
        flat,
        {"params": nested, "state": {}},
        {k: {p: torch.from_numpy(v) for p, v in ps.items()} for k, ps in nested.items()},
    ):
        params, _ = read_haiku(source)
        assert set(params) == set(reference)
        for k, v in params.items():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, reference[k], rtol=0, atol=0)


def test_missing_and_unexpected_keys_are_named(mlm_params):
    nested, _ = mlm_params
    broken = {m: dict(ps) for m, ps in nested.items()}
    del broken["perceiver_encoder/~/self_attention_1/mlp/linear_1"]["b"]
    broken["basic_decoder/extra"] = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError) as err:
        MaskedLanguageModel.from_haiku(broken)
    msg = str(err.value)
    assert "missing Haiku keys: perceiver_encoder/~/self_attention_1/mlp/linear_1/b" in msg
    assert "unexpected Haiku keys: basic_decoder/extra/w" in msg


def test_shape_mismatch_with_given_config(mlm_params):
    nested, _ = mlm_params
    config = MaskedLanguageModelConfig(
        vocab_size=262,
        max_seq_len=64,
        num_input_channels=32,
        encoder=EncoderConfig(
            num_latents=8,
            num_latent_channels=48,
            num_cross_attention_heads=8,
            num_self_attention_heads=8,
            num_self_attends_per_block=3,
            qk_channels=48,
            v_channels=48,
        ),
        decoder=DecoderConfig(num_query_channels=32, num_heads=8, qk_channels=32, v_channels=32),
    )
    with pytest.raises(ValueError, match=r"perceiver_encoder/~/cross_attention/attention/linear/w has shape"):
        MaskedLanguageModel.from_haiku(nested, config)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        MaskedLanguageModel.from_haiku(tmp_path / "nope.pickle")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="expected .pickle, .pkl or .npz"):
        MaskedLanguageModel.from_haiku(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="must be a mapping"):
        MaskedLanguageModel.from_haiku([1, 2])
    with pytest.raises(ValueError, match="no 'embed/embeddings'"):
        MaskedLanguageModel.from_haiku({"foo": {"w": np.zeros(2)}})
    with pytest.raises(ValueError, match="needs a config"):
        PerceiverIO.from_haiku({"foo": {"w": np.zeros(2)}}, None)
    assert not hasattr(MultitaskClassifier, "from_haiku")  # no converter, no method (tests/weights/test_registry.py)
    with pytest.raises(AttributeError, match="MultitaskClassifier has no from_haiku"):
        MultitaskClassifier.from_haiku({})


# ------------------------------------------------------------------------------- round trips in Haiku naming
def _perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Random non-trivial values everywhere (biases and LayerNorm affines are 0/1 after init)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _ids(vocab: int, b: int = 2, length: int = 40):
    ids = torch.randint(0, vocab, (b, length))
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 25:] = 0
    return ids, mask


def test_sequence_classifier_official_naming():
    encoder = EncoderConfig(
        num_latents=8,
        num_latent_channels=32,
        num_cross_attention_heads=8,
        num_self_attention_heads=8,
        num_self_attends_per_block=2,
        qk_channels=16,
        v_channels=32,
    )
    config = SequenceClassifierConfig(
        max_seq_len=48,
        num_input_channels=24,
        num_classes=3,
        encoder=encoder,
        decoder=DecoderConfig(num_query_channels=32, num_heads=1, use_query_residual=True),
    )
    model = _perturb(SequenceClassifier(config))
    params = to_haiku(model)
    assert "classification_decoder/~/basic_decoder/output" in params
    assert params["classification_decoder/~/basic_decoder/~/trainable_position_encoding"]["pos_embs"].shape == (1, 32)
    assert params["perceiver_encoder/~/self_attention_1/attention/linear"]["w"].shape == (32, 16)  # [in, out]
    ids, mask = _ids(config.vocab_size)
    with torch.no_grad():
        expected = model(ids, mask).logits
        inferred = SequenceClassifier.from_haiku(params)  # sizes from shapes, heads = released defaults (8/8, 1)
        assert inferred.config.num_classes == 3 and inferred.config.encoder == encoder
        torch.testing.assert_close(inferred(ids, mask).logits, expected, rtol=0, atol=0)
        explicit = SequenceClassifier.from_haiku(params, config)
        torch.testing.assert_close(explicit(ids, mask).logits, expected, rtol=0, atol=0)


def test_mlm_roundtrip_with_explicit_config():
    config = MaskedLanguageModelConfig.tiny()
    model = _perturb(MaskedLanguageModel(config))
    params = to_haiku(model)
    assert set(params["embedding_decoder"]) == {"bias"}
    ids, mask = _ids(config.vocab_size)
    loaded = MaskedLanguageModel.from_haiku(params, config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).logits, model(ids, mask).logits, rtol=0, atol=0)


def test_perceiver_io_roundtrip_and_encoder_prefix():
    config = PerceiverIOConfig(
        num_input_channels=6,
        num_output_queries=3,
        encoder=EncoderConfig(num_latents=4, num_latent_channels=16, num_self_attends_per_block=1),
        decoder=DecoderConfig(num_query_channels=8, num_output_channels=2),
    )
    model = _perturb(PerceiverIO.from_config(config))
    params = to_haiku(model)
    renamed = {k.replace("perceiver_encoder", "encoder", 1): v for k, v in params.items()}  # the other official name
    x = torch.randn(2, 5, 6)
    loaded = PerceiverIO.from_haiku(renamed, config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
