"""Checkpoints on the Hugging Face Hub, through ``huggingface_hub``'s public API.

A string that is not an existing local path and reads ``org/name`` is a Hub model repository (:func:`is_repo_id`).
:func:`download_checkpoint` fetches only its ``config.json`` and one set of weights (``model.safetensors``, else a
sharded ``model.safetensors.index.json`` with its shards, else ``pytorch_model.bin``) into the Hub cache, checking the
config before any weights move. The cache, offline mode and endpoint follow ``huggingface_hub``'s environment
variables, read at call time: ``HF_HUB_CACHE`` (or ``HF_HOME``/hub), ``HF_HUB_OFFLINE=1`` (only the cache is read),
``HF_ENDPOINT``, ``HF_TOKEN``. ``revision`` is a branch, tag or commit hash; every file of one call comes from the
commit that ``config.json`` resolved to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
COMMIT = re.compile(r"[0-9a-f]{40}")
CONFIG = "config.json"
SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN)  # in order of preference


def index_shards(index: Path) -> list[str]:
    """The shard names a ``model.safetensors.index.json`` maps its tensors to, sorted and unique. Each must be a plain
    ``.safetensors`` file name in the index's own folder: a path (``../x``, ``/etc/x``, ``sub/x``) is refused before
    anything is opened, with a ValueError naming the index and the entry (as is bad JSON or a missing weight_map)."""
    try:
        weight_map = json.loads(Path(index).read_text()).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{index} is not a safetensors index (a JSON object with a weight_map): {e}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index} has no weight_map (a non-empty object of tensor name -> shard file name)")
    shards = set(weight_map.values())
    for shard in sorted(shards, key=str):
        if not (
            isinstance(shard, str)
            and shard.endswith(".safetensors")
            and Path(shard).name == shard
            and "\\" not in shard
            and not shard.startswith(".")
        ):
            raise ValueError(
                f"{index} names the shard {shard!r}; shards must be plain .safetensors file names in the "
                "index's own folder"
            )
    return sorted(shards)


def is_repo_id(source: Any) -> bool:
    """Whether ``source`` names a Hub repository: a ``str`` (not a ``Path``) of the form ``org/name`` that is not
    an existing local path."""
    return (
        isinstance(source, str)
        and REPO_ID.fullmatch(source) is not None
        and ".." not in source
        and not Path(source).exists()
    )


def _true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in ("1", "ON", "YES", "TRUE")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now, or as ``huggingface_hub`` read it at import."""
    from huggingface_hub import constants

    return (
        _true(os.environ.get("HF_HUB_OFFLINE"))
        or _true(os.environ.get("TRANSFORMERS_OFFLINE"))
        or bool(constants.HF_HUB_OFFLINE)
    )


def cache_dir() -> str:
    """The Hub cache folder as the environment says now (``huggingface_hub`` reads it once, at import)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expandvars(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expandvars(os.path.expanduser(os.environ["HF_HOME"])), "hub")
    return constants.HF_HUB_CACHE


def _fetch(repo_id: str, filename: str, revision: str | None, token: str | bool | None) -> Path | None:
    """One file of the repository (from the cache, or downloaded into it); None if the repository has no such file
    (or, offline, the cache has none). Access problems raise OSError with the reason."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir(), local_files_only=offline(), token=token
            )
        )
    except LocalEntryNotFoundError:
        return None
    except RevisionNotFoundError as e:
        raise OSError(f"the Hugging Face Hub repository {repo_id} has no revision {revision!r}") from e
    except RepositoryNotFoundError as e:
        raise OSError(
            f"{repo_id!r} is neither a local folder nor a model repository on the Hugging Face Hub (a "
            "private or gated repository needs a token: `hf auth login` or HF_TOKEN)"
        ) from e
    except EntryNotFoundError:
        return None


def download_checkpoint(
    repo_id: str,
    revision: str | None = None,
    weights: tuple[str, ...] = WEIGHT_FILES,
    check_config: Callable[[Mapping[str, Any]], None] | None = None,
    token: str | bool | None = None,
) -> Path:
    """The local folder (a snapshot in the Hub cache) holding ``config.json`` and the first of ``weights`` that the
    repository has (a safetensors index brings its shards; no ``weights``: the config only). ``check_config(config)``
    may refuse the config (raise ValueError) before any weights are fetched. Raises OSError when the repository,
    revision or files cannot be had (offline and not cached, no connection, no such repository)."""
    config_path = _fetch(repo_id, CONFIG, revision, token)
    where = f"{repo_id}" + (f" (revision {revision!r})" if revision else "")
    if config_path is None:
        if offline():
            raise OSError(
                f"{where} is not in the Hugging Face cache {cache_dir()} and HF_HUB_OFFLINE is set: "
                "download it once online (or unset HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache "
                "that holds it"
            )
        raise OSError(
            f"{where}: no config.json on the Hugging Face Hub (or the Hub could not be reached and the "
            f"cache {cache_dir()} does not hold it)"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: config.json is not valid JSON: {e}") from e
    if check_config is not None:
        check_config(config)
    if not weights:
        return config_path.parent
    commit = config_path.parent.name if COMMIT.fullmatch(config_path.parent.name) else revision
    for name in weights:
        path = _fetch(repo_id, name, commit, token)
        if path is None:
            continue
        if name == SAFETENSORS_INDEX:
            for shard in index_shards(path):
                if _fetch(repo_id, shard, commit, token) is None:
                    raise OSError(f"{where}: shard {shard} named by {SAFETENSORS_INDEX} could not be fetched")
        return path.parent
    state = "in the Hugging Face cache" if offline() else "on the Hugging Face Hub"
    raise OSError(f"{where} has a config.json but none of {', '.join(weights)} {state}")


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Create the model repository if needed (``HfApi.create_repo(exist_ok=True)``) and upload ``folder`` to its
    root in one commit (``HfApi.upload_folder``); returns what ``upload_folder`` returns (the commit info)."""
    from huggingface_hub import HfApi

    if not (isinstance(repo_id, str) and REPO_ID.fullmatch(repo_id)):
        raise ValueError(f"repo_id must read 'org/name', got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        create_pr=create_pr,
    )
