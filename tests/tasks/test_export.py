"""Every task model is one PerceiverIO, exports with a dynamic batch dimension and compiles without graph breaks.

The value-reading input checks are off while tracing (``perceiverio.core.checks``), so the traced graphs hold no
host synchronisation; these tests fail if a forward pass reads a tensor value or specialises the batch size.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch.export import Dim, export

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
    PerceiverIO,
    SequenceClassifier,
    SequenceClassifierConfig,
    SetModel,
    SetModelConfig,
)


def _text(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 262, (batch, 16))
    mask = torch.ones(batch, 16, dtype=torch.long)
    mask[0, 10:] = 0  # one padded example: the masks take their branch-free path
    return ids, mask


def _multimodal(batch: int) -> dict[str, torch.Tensor]:
    return {
        "audio": torch.randn(batch, 128, 1),
        "image": torch.randn(batch, 4, 3, 16, 16),
        "label": torch.randn(batch, 5),
    }


# name -> (model factory, inputs of a batch of B, labels of a batch of B or None)
CASES = {
    "mlm": (
        lambda: MaskedLanguageModel(MaskedLanguageModelConfig.tiny()),
        _text,
        lambda b: torch.full((b, 16), -100).index_fill(1, torch.tensor([3, 7]), 5),
    ),
    "sequence": (lambda: SequenceClassifier(SequenceClassifierConfig.tiny()), _text, lambda b: torch.arange(b) % 2),
    "multitask": (
        lambda: MultitaskClassifier(MultitaskClassifierConfig.tiny()),
        _text,
        lambda b: {"a": torch.arange(b) % 2},
    ),
    "image": (
        lambda: ImageClassifier(ImageClassifierConfig.tiny()),
        lambda b: (torch.randn(b, 3, 32, 32),),
        lambda b: torch.arange(b) % 10,
    ),
    "flow": (lambda: OpticalFlow(OpticalFlowConfig.tiny()), lambda b: (torch.randn(b, 2, 3, 24, 32),), None),
    "set": (
        lambda: SetModel(SetModelConfig.tiny()),
        lambda b: (torch.randn(b, 5, 16), torch.arange(5).expand(b, 5) < 4),
        None,
    ),
    "multimodal": (
        lambda: MultimodalAutoencoder(MultimodalAutoencoderConfig.tiny()),
        lambda b: (_multimodal(b),),
        None,
    ),
}


def _tensors(out: object) -> list[torch.Tensor]:
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _batch_dims(args: tuple, batch: Dim) -> tuple:
    return torch.utils._pytree.tree_map(lambda t: {0: batch}, args)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_task_model_is_one_perceiver_io(name):
    model = CASES[name][0]()
    assert isinstance(model, PerceiverIO)
    # exactly one PerceiverIO: no task model nests another
    assert [m for m in model.modules() if isinstance(m, PerceiverIO)] == [model]
    for part in ("input_adapter", "encoder", "output_queries", "decoder", "output_adapter"):
        assert hasattr(model, part)


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_with_dynamic_batch_equals_eager(name):
    make, inputs, _ = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    program = export(model, inputs(2), dynamic_shapes=_batch_dims(inputs(2), Dim("batch", min=1, max=64)))
    for batch in (2, 3):  # the exported graph serves another batch size too
        args = inputs(batch)
        with torch.no_grad():
            expected, got = _tensors(model(*args)), _tensors(program.module()(*args))
        assert len(expected) == len(got) > 0
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            assert float((e - g).abs().max()) <= 1e-5 * max(float(e.abs().max()), 1.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_training_forward_has_no_graph_break(name):
    make, inputs, labels = CASES[name]
    model = make().train()
    args = inputs(2) + ((labels(2),) if labels is not None else ())
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(*args)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1
