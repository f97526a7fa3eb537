"""Image augmentation: grayscale RandAugment, soft MixUp/CutMix targets."""

import torch

from perceiverio.training.augment import ImageAugmentation


def test_grayscale_randaugment_and_mixing_keep_shape_range_and_label_mass():
    torch.manual_seed(0)
    aug = ImageAugmentation(10, randaugment=True, randaugment_ops=2, mixup_alpha=0.2, cutmix_alpha=1.0)
    x, y = aug(torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    assert x.shape == (8, 1, 28, 28) and y.shape == (8, 10)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    torch.testing.assert_close(y.sum(1), torch.ones(8))
