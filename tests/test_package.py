"""The package itself: a light import and a small public API."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_does_not_pull_in_lightning_or_transformers():
    code = (
        "import sys, perceiverio; "
        "print(sorted(m for m in ('lightning', 'transformers', 'torchmetrics') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_training_names_load_on_first_use():
    import perceiverio.training as training

    assert training.MaskedLanguageModelTask.__name__ == "MaskedLanguageModelTask"
    assert set(training.__all__) >= {"ExportCallback", "ProgressLog", "PerceiverTask"}
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = training.NoSuchThing


def test_public_api_is_exported_from_the_top_level():
    import perceiverio

    for name in (
        "PerceiverIO",
        "PerceiverIOConfig",
        "PerceiverConfig",
        "MaskedLanguageModel",
        "ByteTokenizer",
        "ByteMaskingCollator",
        "WholeWordMaskingCollator",
        "set_value_checks",
    ):
        assert name in perceiverio.__all__ and hasattr(perceiverio, name), name
