"""Converted transformers Perceivers reproduce transformers' logits (MLM and sequence classification).

Tiny random HF models (every weight perturbed, LayerNorm affines and the MLM output bias included, so a dropped or
misplaced tensor shows), compared in eval mode, float32, with padded batches, through all three source kinds.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import safetensors.torch
import torch

transformers = pytest.importorskip("transformers")

from perceiverio import MaskedLanguageModel, SequenceClassifier  # noqa: E402 (after importorskip)
from perceiverio.weights.transformers import HF_CONFIG_DEFAULTS  # noqa: E402 (after importorskip)

TOL = 1e-5
L = 10  # input length (< max_position_embeddings: transformers decodes all positions, we decode L)
LENGTHS = (10, 7, 3)  # padded batch: a different number of real tokens per example

BASE = dict(
    num_latents=8,
    d_latents=32,
    d_model=16,
    num_blocks=1,
    num_self_attends_per_block=2,
    num_self_attention_heads=8,
    num_cross_attention_heads=8,
    vocab_size=30,
    max_position_embeddings=24,
)
CONFIGS = {
    # released head counts (8/8), so a bare state dict without config is also exact
    "released_heads": {},
    # weight sharing, qk != v, other head counts, widening factors, no encoder query residual
    "shared_qk16": dict(
        num_blocks=3,
        num_self_attends_per_block=2,
        qk_channels=16,
        v_channels=32,
        num_cross_attention_heads=4,
        num_self_attention_heads=2,
        cross_attention_widening_factor=2,
        self_attention_widening_factor=3,
        use_query_residual=False,
    ),
    # cross-attention qk follows the latent width; tanh GELU
    "shape_q_gelu_new": dict(
        cross_attention_shape_for_attention="q",
        d_model=24,
        d_latents=16,
        num_blocks=2,
        num_cross_attention_heads=1,
        num_self_attention_heads=4,
        hidden_act="gelu_new",
    ),
}
HEADS = {
    "mlm": (transformers.PerceiverForMaskedLM, MaskedLanguageModel),
    "cls": (transformers.PerceiverForSequenceClassification, SequenceClassifier),
}
NUM_LABELS = {"released_heads": 3, "shared_qk16": 1, "shape_q_gelu_new": 5}


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random and non-trivial (transformers inits LayerNorms to 1/0 and the MLM bias to 0)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
            elif "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    return model.eval()


def _hf_model(head: str, name: str) -> torch.nn.Module:
    config = transformers.PerceiverConfig(**{**BASE, **CONFIGS[name]}, num_labels=NUM_LABELS[name])
    return _randomize(HEADS[head][0](config))


def _batch(vocab_size: int, padded: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, vocab_size, (len(LENGTHS), L))
    mask = torch.ones(len(LENGTHS), L, dtype=torch.long)
    if padded:
        for i, n in enumerate(LENGTHS):
            mask[i, n:] = 0
    return ids, mask


@torch.no_grad()
def _logits(hf, ours, ids, mask) -> tuple[torch.Tensor, torch.Tensor]:
    ref = hf(inputs=ids, attention_mask=mask).logits
    if ref.dim() == 3:  # MLM: transformers decodes all max_position_embeddings positions; queries are independent
        ref = ref[:, : ids.shape[1]]
    return ours(ids, mask).logits, ref


def _source(kind: str, hf, tmp_path):
    if kind == "model":
        return hf, None
    if kind == "state_dict_hf_config":
        return hf.state_dict(), hf.config
    hf.save_pretrained(tmp_path)
    return str(tmp_path), None


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("kind", ["model", "state_dict_hf_config", "folder"])
def test_logits_match_transformers(head, name, kind, tmp_path):
    hf = _hf_model(head, name)
    source, config = _source(kind, hf, tmp_path)
    ours = HEADS[head][1].from_transformers(source, config)
    assert ours.config.masking == "transformers"
    assert ours.config.activation == ("gelu_tanh" if CONFIGS[name].get("hidden_act") == "gelu_new" else "gelu")
    out, ref = _logits(hf, ours, *_batch(hf.config.vocab_size))
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    print(f"{head}/{name}/{kind}: max |diff| = {err:.2e} (max |logit| {ref.abs().max().item():.2f})")
    assert err <= TOL


@pytest.mark.parametrize("head", list(HEADS))
def test_bare_state_dict_inferred(head):
    """A bare state dict without config: sizes inferred from shapes, released head counts."""
    hf = _hf_model(head, "released_heads")
    inferred = HEADS[head][1].from_transformers(hf.state_dict())
    assert inferred.config == HEADS[head][1].from_transformers(hf).config
    out, ref = _logits(hf, inferred, *_batch(hf.config.vocab_size))
    assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("head", list(HEADS))
def test_our_config_with_state_dict(head):
    """A bare state dict with our own config (non-released heads); numerics are reset to transformers'."""
    hf = _hf_model(head, "shared_qk16")
    config = HEADS[head][1].from_transformers(hf).config
    config = dataclasses.replace(config, activation="gelu_tanh", masking="official")
    ours = HEADS[head][1].from_transformers(hf.state_dict(), config)  # numerics reset to transformers'
    assert (ours.config.activation, ours.config.masking) == ("gelu", "transformers")
    out, ref = _logits(hf, ours, *_batch(hf.config.vocab_size))
    assert (out - ref).abs().max().item() <= TOL


def test_activation_matters():
    """Negative control: the tolerance is tight enough to see tanh vs exact GELU."""
    hf = _hf_model("mlm", "released_heads")
    ours = MaskedLanguageModel.from_transformers(hf, activation="gelu_tanh")
    out, ref = _logits(hf, ours, *_batch(hf.config.vocab_size))
    assert (out - ref).abs().max().item() > 10 * TOL


@pytest.mark.parametrize("name", ["released_heads", "shared_qk16"])
def test_official_masking(name):
    """Official masking equals transformers' without padding and on real tokens; padded MLM positions differ
    (official wipes masked decoder queries to the attention output bias; transformers ignores the query mask)."""
    hf_mlm, hf_cls = _hf_model("mlm", name), _hf_model("cls", name)
    mlm = MaskedLanguageModel.from_transformers(hf_mlm, masking="official")
    cls = SequenceClassifier.from_transformers(hf_cls, masking="official")
    assert mlm.config.masking == "official"
    ids, full = _batch(hf_mlm.config.vocab_size, padded=False)
    for hf, ours in ((hf_mlm, mlm), (hf_cls, cls)):
        out, ref = _logits(hf, ours, ids, full)
        assert (out - ref).abs().max().item() <= TOL

    ids, mask = _batch(hf_mlm.config.vocab_size)
    out, ref = _logits(hf_mlm, mlm, ids, mask)
    real = mask.bool()
    assert (out - ref)[real].abs().max().item() <= TOL
    assert (out - ref)[~real].abs().amax(-1).min().item() > 1e-2  # every padded position differs
    out, ref = _logits(hf_cls, cls, ids, mask)  # the classifier has no query mask: no difference
    assert (out - ref).abs().max().item() <= TOL


def test_fully_padded_example_transformers_semantics():
    """transformers attends uniformly over an all-padding example; masking="transformers" reproduces it."""
    hf = _hf_model("cls", "released_heads")
    ids, mask = _batch(hf.config.vocab_size)
    mask[-1] = 0
    out, ref = _logits(hf, SequenceClassifier.from_transformers(hf), ids, mask)
    assert (out - ref).abs().max().item() <= TOL
    official, _ = _logits(hf, SequenceClassifier.from_transformers(hf, masking="official"), ids, mask)
    assert (official[:-1] - ref[:-1]).abs().max().item() <= TOL
    assert (official[-1] - ref[-1]).abs().max().item() > 1e-3


def test_wrong_head_is_a_clear_error():
    cls_state = _hf_model("cls", "released_heads").state_dict()
    with pytest.raises(ValueError, match=r"PerceiverForMaskedLM.*missing keys.*embedding_decoder\.bias"):
        MaskedLanguageModel.from_transformers(cls_state)
    with pytest.raises(ValueError, match=r"PerceiverForSequenceClassification.*final_layer"):
        SequenceClassifier.from_transformers(_hf_model("mlm", "released_heads"))


def test_extra_or_missing_keys_are_errors(monkeypatch):
    from perceiverio.weights import transformers as conversion

    # reported from the config and the key names alone: no model is built first
    monkeypatch.setattr(conversion, "empty_model", lambda *a, **k: pytest.fail("model built before the key check"))
    state = _hf_model("mlm", "released_heads").state_dict()
    with pytest.raises(ValueError, match=r"unexpected keys.*extra\.weight"):
        MaskedLanguageModel.from_transformers({**state, "extra.weight": torch.zeros(1)})
    del state["perceiver.encoder.self_attends.0.mlp.dense2.bias"]
    with pytest.raises(ValueError, match=r"missing keys.*self_attends\.0\.mlp\.dense2\.bias"):
        MaskedLanguageModel.from_transformers(state)


def test_bad_folders_and_sources(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        MaskedLanguageModel.from_transformers(tmp_path)
    hf = _hf_model("mlm", "released_heads")
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no model.safetensors"):
        MaskedLanguageModel.from_transformers(tmp_path)
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        MaskedLanguageModel.from_transformers(tmp_path / "missing")
    with pytest.raises(ValueError, match="source must be"):
        MaskedLanguageModel.from_transformers(42)
    with pytest.raises(ValueError, match="hidden_act"):
        MaskedLanguageModel.from_transformers(hf.state_dict(), {**hf.config.to_dict(), "hidden_act": "relu"})


def test_pytorch_model_bin_folder_with_minimal_config(tmp_path):
    """pytorch_model.bin + a config.json holding only the non-default fields (older transformers write those)."""
    hf = _hf_model("cls", "shape_q_gelu_new")
    defaults = transformers.PerceiverConfig().to_dict()
    minimal = {k: v for k, v in hf.config.to_dict().items() if k not in defaults or v != defaults[k]}
    assert "use_query_residual" not in minimal and "cross_attention_widening_factor" not in minimal
    (tmp_path / "config.json").write_text(json.dumps({**minimal, "model_type": "perceiver"}))
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    out, ref = _logits(hf, SequenceClassifier.from_transformers(tmp_path), *_batch(hf.config.vocab_size))
    assert (out - ref).abs().max().item() <= TOL


def test_defaults_table_matches_transformers():
    defaults = transformers.PerceiverConfig().to_dict()
    assert {k: defaults[k] for k in HF_CONFIG_DEFAULTS} == HF_CONFIG_DEFAULTS


def test_sharded_safetensors_folder(tmp_path):
    hf = _hf_model("mlm", "shared_qk16")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    out, ref = _logits(hf, MaskedLanguageModel.from_transformers(tmp_path), *_batch(hf.config.vocab_size))
    assert (out - ref).abs().max().item() <= TOL


def test_config_that_does_not_fit_the_weights():
    hf = _hf_model("mlm", "released_heads")
    wrong = {**hf.config.to_dict(), "num_latents": 5}
    with pytest.raises(ValueError, match=r"do not fit the config.*perceiver\.embeddings\.latents \(8, 32\)"):
        MaskedLanguageModel.from_transformers(hf.state_dict(), wrong)


@pytest.mark.parametrize("shard", ["../elsewhere/model.safetensors", "/etc/hostname", "sub/model.safetensors", "x.bin"])
def test_sharded_folder_refuses_shards_outside_the_folder_before_opening_them(tmp_path, shard, monkeypatch):
    hf = _hf_model("mlm", "shared_qk16")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    index = tmp_path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = shard
    index.write_text(json.dumps(data))
    opened = []
    monkeypatch.setattr(safetensors.torch, "load_file", lambda path, *a, **k: opened.append(path))
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json names the shard .*plain \.safetensors"):
        MaskedLanguageModel.from_transformers(tmp_path)
    assert opened == []


def test_sharded_folder_with_a_missing_shard_names_it(tmp_path):
    hf = _hf_model("mlm", "shared_qk16")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    victim = sorted(tmp_path.glob("model-*.safetensors"))[0]
    victim.unlink()
    with pytest.raises(ValueError, match=f"names shards that are not in .*{victim.name}"):
        MaskedLanguageModel.from_transformers(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a safetensors index"):
        MaskedLanguageModel.from_transformers(tmp_path)
