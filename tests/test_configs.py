"""The shipped recipes: every config parses, and the two-stage SST-2 recipe's encoders agree (so init_from loads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perceiverio.cli import main

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def _parsed(capsys, path: Path) -> dict:
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(path), "--print_config"])
    assert e.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_parses(capsys, path):
    config = _parsed(capsys, path)
    assert config["model"]["class_path"].startswith("perceiverio.training.")
    assert config["data"]["class_path"].startswith("perceiverio.data.")


def test_sst2_fine_tuning_encoder_matches_its_pre_training(capsys):
    configs = Path(__file__).resolve().parent.parent / "configs"
    pre = _parsed(capsys, configs / "sst2-mlm.yaml")["model"]["init_args"]
    fine = _parsed(capsys, configs / "sst2.yaml")["model"]["init_args"]
    for key in ("max_seq_len", "num_input_channels", "encoder"):
        assert pre[key] == fine[key], key  # else init_from skips the tensors whose shapes differ
    assert pre["routing_init"] == "local"
