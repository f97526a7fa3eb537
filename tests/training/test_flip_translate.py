"""Random flips and shifts of the image recipe: every output is its input, mirrored or not, shifted by at most the
given number of pixels with zero fill; both options are drawn per example."""

import pytest
import torch
import torch.nn.functional as F

from perceiverio.training.augment import ImageAugmentation, flip_and_translate


def _candidates(image: torch.Tensor, t: int, flip: bool) -> list[torch.Tensor]:
    """Every image the augmentation may produce from ``image`` [C, H, W] (closed form: pad, then crop)."""
    h, w = image.shape[-2:]
    sources = [image, image.flip(-1)] if flip else [image]
    out = []
    for src in sources:
        padded = F.pad(src, (t, t, t, t))
        out += [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * t + 1) for dx in range(2 * t + 1)]
    return out


def test_outputs_are_shifted_and_mirrored_inputs_drawn_per_example():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 7, 9) + 0.5  # no zeros inside, so the zero fill shows the shift
    y = flip_and_translate(x, flip=True, translate=2)
    assert y.shape == x.shape
    shifts, mirrored = set(), 0
    for i in range(len(x)):
        cands = _candidates(x[i], 2, flip=True)
        match = [k for k, c in enumerate(cands) if torch.equal(c, y[i])]
        assert match, f"example {i} is not a shifted/mirrored copy of its input"
        shifts.add(match[0] % 25)
        mirrored += match[0] >= 25
    assert len(shifts) > 10 and 15 < mirrored < 49  # drawn per example, both ways
    assert torch.equal(flip_and_translate(x, flip=False, translate=0), x)
    only_flip = flip_and_translate(x, flip=True, translate=0)
    assert all(torch.equal(only_flip[i], x[i]) or torch.equal(only_flip[i], x[i].flip(-1)) for i in range(len(x)))


def test_task_augmentation_applies_them_and_checks_translate():
    torch.manual_seed(1)
    x = torch.rand(8, 1, 6, 6) + 0.5
    out, labels = ImageAugmentation(10, flip=True, translate=1)(x, torch.arange(8))
    assert torch.equal(labels, torch.arange(8)) and not torch.equal(out, x)
    assert all(any(torch.equal(c, out[i]) for c in _candidates(x[i], 1, True)) for i in range(8))
    with pytest.raises(ValueError, match="translate"):
        ImageAugmentation(10, translate=-1)
