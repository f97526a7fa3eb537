"""Pretrained models by Hub name, offline, from a local cache laid out as the Hugging Face Hub's.

The cache is built in a temporary folder (``models--<org>--<name>/{refs/<ref>, snapshots/<commit>/...}``) and
``HF_HUB_OFFLINE=1`` + ``HF_HUB_CACHE`` point at it: nothing here touches the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import huggingface_hub  # noqa: E402 (after importorskip)

from perceiverio import MaskedLanguageModel, MaskedLanguageModelConfig, SequenceClassifier  # noqa: E402 (after importorskip)
from perceiverio.cli import main  # noqa: E402 (after importorskip)
from perceiverio.weights import hub  # noqa: E402 (after importorskip)

NAME = "deepmind/language-perceiver"
COMMIT, OTHER = "a" * 40, "b" * 40


def _tiny_hf_mlm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.PerceiverConfig(
        num_latents=8,
        d_latents=32,
        d_model=16,
        num_self_attends_per_block=2,
        num_self_attention_heads=8,
        num_cross_attention_heads=8,
        vocab_size=30,
        max_position_embeddings=24,
    )
    model = transformers.PerceiverForMaskedLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial everywhere (LayerNorms 1/0 and the MLM bias 0 after init)
            p.add_(0.2 * torch.randn_like(p))
    return model


def _snapshot(cache: Path, repo: str, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """An empty snapshot folder of ``repo`` at ``commit`` in the Hub cache layout, ``refs`` pointing at it."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hub cache, offline (read by our code at call time; huggingface_hub read its constants at import)."""
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    return root


@pytest.fixture
def requested(monkeypatch):
    """The file names asked of huggingface_hub.hf_hub_download."""
    names: list[str] = []
    real = huggingface_hub.hf_hub_download

    def recording(repo_id, filename, **kwargs):
        names.append(filename)
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    return names


def _logits(model, hf, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, hf.config.vocab_size, (2, length))
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 8:] = 0
    with torch.no_grad():
        return model(ids, mask).logits, hf(inputs=ids, attention_mask=mask).logits[:, :length]


def test_mlm_by_name_offline_reproduces_transformers(cache, requested):
    hf = _tiny_hf_mlm()
    hf.save_pretrained(_snapshot(cache, NAME, COMMIT))  # config.json + model.safetensors
    model = MaskedLanguageModel.from_transformers(NAME)
    ours, ref = _logits(model, hf)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert requested == ["config.json", "model.safetensors"]  # only the config and one set of weights
    assert model.output_adapter.embedding is model.input_adapter.token_embedding


def test_revisions_and_shards(cache):
    main_hf, tagged_hf = _tiny_hf_mlm(0), _tiny_hf_mlm(1)
    main_hf.save_pretrained(_snapshot(cache, NAME, COMMIT))
    tagged_hf.save_pretrained(_snapshot(cache, NAME, OTHER, refs=("v1",)), max_shard_size="20KB")
    assert (cache / f"models--{NAME.replace('/', '--')}/snapshots/{OTHER}/model.safetensors.index.json").is_file()
    for revision, hf in ((None, main_hf), ("main", main_hf), ("v1", tagged_hf), (OTHER, tagged_hf)):
        ours, ref = _logits(MaskedLanguageModel.from_transformers(NAME, revision=revision), hf)
        assert (ours - ref).abs().max().item() <= 1e-5, revision
    with pytest.raises(OSError, match=r"revision 'v2'.*not in the Hugging Face cache"):
        MaskedLanguageModel.from_transformers(NAME, revision="v2")


def test_clear_errors(cache, requested, tmp_path):
    with pytest.raises(OSError, match=r"vision-perceiver-conv is not in the Hugging Face cache .*HF_HUB_OFFLINE"):
        MaskedLanguageModel.from_transformers("deepmind/vision-perceiver-conv")
    bert = _snapshot(cache, "google/bert-tiny", COMMIT)
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    requested.clear()
    with pytest.raises(ValueError, match=r"google/bert-tiny is not a Perceiver: .*model_type 'bert'"):
        MaskedLanguageModel.from_transformers("google/bert-tiny")
    assert requested == ["config.json"]  # refused before any weights were asked for
    _tiny_hf_mlm().config.save_pretrained(_snapshot(cache, "org/config-only", COMMIT))
    with pytest.raises(OSError, match="none of model.safetensors"):
        MaskedLanguageModel.from_transformers("org/config-only")
    with pytest.raises(ValueError, match="revision= applies to Hugging Face Hub repositories"):
        MaskedLanguageModel.from_transformers(tmp_path, revision="main")


def test_local_folder_wins_over_a_repo_id(cache, tmp_path, monkeypatch):
    hf = _tiny_hf_mlm()
    monkeypatch.chdir(tmp_path)
    hf.save_pretrained(tmp_path / NAME)  # ./deepmind/language-perceiver exists: a local path, not the Hub
    ours, ref = _logits(MaskedLanguageModel.from_transformers(NAME), hf)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert hub.is_repo_id("org/name") and hub.is_repo_id("deepmind/vision-perceiver-fourier")
    assert not hub.is_repo_id(NAME)  # exists here
    for not_a_repo in ("name", "/abs/path", "a/b/c", "../x", "org/", Path("org/name"), 42):
        assert not hub.is_repo_id(not_a_repo), not_a_repo


def test_from_pretrained_by_name_and_push_to_hub(cache, monkeypatch, tmp_path):
    model = MaskedLanguageModel(MaskedLanguageModelConfig.tiny()).eval()
    calls: list[tuple] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        calls.append(("upload_folder", repo_id, files, kwargs))
        shutil.copytree(folder_path, _snapshot(cache, repo_id, COMMIT), dirs_exist_ok=True)  # what the Hub gets
        return "commit-info"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert model.push_to_hub("me/tiny-mlm", private=True) == "commit-info"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1] == "me/tiny-mlm" and calls[0][2]["private"] is True and calls[0][2]["exist_ok"] is True
    assert calls[1][2] == ["config.json", "model.safetensors"] and calls[1][3]["repo_type"] == "model"
    with pytest.raises(ValueError, match="repo_id must read 'org/name'"):
        model.push_to_hub("no-org")

    loaded = MaskedLanguageModel.from_pretrained("me/tiny-mlm")
    ids = torch.randint(0, 262, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="holds a MaskedLanguageModel, not a SequenceClassifier"):
        SequenceClassifier.from_pretrained("me/tiny-mlm")
    with pytest.raises(ValueError, match="is a perceiverio checkpoint.*from_pretrained"):
        MaskedLanguageModel.from_transformers("me/tiny-mlm")
    _tiny_hf_mlm().save_pretrained(_snapshot(cache, NAME, COMMIT))
    with pytest.raises(ValueError, match="is a transformers Perceiver checkpoint.*from_transformers"):
        MaskedLanguageModel.from_pretrained(NAME)


def test_cli_convert_hf_by_name(cache, tmp_path):
    hf = _tiny_hf_mlm()
    hf.save_pretrained(_snapshot(cache, NAME, COMMIT))
    main(["convert", "hf", NAME, str(tmp_path / "out")])
    ours, ref = _logits(MaskedLanguageModel.from_pretrained(tmp_path / "out"), hf)
    assert (ours - ref).abs().max().item() <= 1e-5
    with pytest.raises(SystemExit, match="not in the Hugging Face cache"):
        main(["convert", "hf", "deepmind/optical-flow-perceiver", str(tmp_path / "flow")])


def test_an_index_naming_a_path_outside_the_repository_is_refused_before_any_shard_is_fetched(cache, requested):
    snapshot = _snapshot(cache, NAME, COMMIT)
    _tiny_hf_mlm().save_pretrained(snapshot, max_shard_size="20KB")
    index = snapshot / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"][next(iter(data["weight_map"]))] = "../../../../etc/hostname"
    index.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"names the shard '\.\./\.\./\.\./\.\./etc/hostname'"):
        MaskedLanguageModel.from_transformers(NAME)
    assert requested == ["config.json", "model.safetensors", "model.safetensors.index.json"]
