"""Training-batch augmentation of image classification (paper §4.5, ImageNet) with kornia (no torchvision).

RandAugment (``n`` operations of magnitude ``m``), then MixUp on the first half of the batch and CutMix on the
second half, as in the official training (``mixup_and_cutmix``): one MixUp weight ``λ ~ Beta(α, α)`` per batch
(half), CutMix boxes drawn per example from ``Beta(α, α)``; labels become class probabilities ``[B, K]``. Random draws
use the global torch generator (of the batch's device): ``seed_everything`` makes them reproducible, and checkpoints
carry its state (:mod:`perceiverio.training.resume`), so a resumed run draws what the uninterrupted one would.

kornia (in the ``vision`` extra: ``pip install 'perceiverio[vision]'``) is imported only when one of these is on;
without it, switching one on raises a ValueError naming the option and the install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

# The paper's magnitude (official ``distort_image_with_randaugment``) is on TF AutoAugment's 0–10 level scale;
# kornia's on 0–30 (exclusive): kornia m = 3 · level, kept inside (0, 30).
_KORNIA_LEVELS_PER_LEVEL = 3


def kornia_augmentation(option: str) -> ModuleType:
    """``kornia.augmentation``, or a ValueError naming ``option`` (what needs it) and how to install kornia."""
    try:
        return importlib.import_module("kornia.augmentation")
    except ImportError as e:
        raise ValueError(
            f"{option} needs kornia, which is not installed ({e}): pip install 'perceiverio[vision]' "
            "(or pip install kornia), or switch it off"
        ) from None


def flip_and_translate(images: torch.Tensor, flip: bool, translate: int) -> torch.Tensor:
    """Per example: a horizontal flip with probability 1/2 (``flip``), then a shift by up to ``translate`` pixels in
    each direction with zero fill (the classic pad-and-crop), as one batched gather: ``[B, C, H, W] -> same``."""
    b, c, h, w = images.shape
    if flip:
        mirrored = torch.rand(b, device=images.device) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    if translate > 0:
        padded = F.pad(images, (translate,) * 4)  # [B, C, H + 2t, W + 2t]
        dy = torch.randint(0, 2 * translate + 1, (b,), device=images.device)
        dx = torch.randint(0, 2 * translate + 1, (b,), device=images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # [B, 1, 1, W]
        batch = torch.arange(b, device=images.device)[:, None, None, None]
        channel = torch.arange(c, device=images.device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    return images


class ImageAugmentation(nn.Module):
    """``forward(images [B, C, H, W] in [0, 1], labels [B]) -> (images, targets)``; targets are the class ids
    when nothing mixes, else probabilities ``[B, num_classes]``.

    Args:
        num_classes: K of the soft targets.
        randaugment: apply RandAugment with ``randaugment_ops`` operations of ``randaugment_magnitude`` (0–10,
            the paper's scale: 4 ops of magnitude 5). Its colour operations assume pixel values in [0, 1].
        mixup_alpha / cutmix_alpha: Beta(α, α) parameters; 0 disables. Both on: MixUp on the first half of the
            batch, CutMix on the second (the paper: MixUp α 0.2); one on: the whole batch.
        flip / translate: random horizontal flips and shifts by up to ``translate`` pixels (zero fill), applied
            first (:func:`flip_and_translate`): cheap augmentation for small images and short budgets (the
            Fashion-MNIST recipe), where RandAugment and mixing slow learning down more than they regularise.
    """

    def __init__(
        self,
        num_classes: int,
        randaugment: bool = False,
        randaugment_ops: int = 4,
        randaugment_magnitude: int = 5,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        flip: bool = False,
        translate: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(translate, int) or translate < 0:
            raise ValueError(f"translate must be a number of pixels >= 0, got {translate!r}")
        self.flip, self.translate = bool(flip), translate
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0 < randaugment_magnitude <= 10:
            raise ValueError(
                f"randaugment_magnitude must lie in (0, 10] (the paper's scale), got {randaugment_magnitude}"
            )
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.randaugment = None
        if randaugment:
            augmentation = kornia_augmentation("randaugment=True")
            m = min(_KORNIA_LEVELS_PER_LEVEL * randaugment_magnitude, 29)
            self.randaugment = augmentation.auto.RandAugment(n=randaugment_ops, m=m)
        for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if alpha > 0:
                kornia_augmentation(f"{name}={alpha}")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = images.dtype
        with torch.autocast(device_type=images.device.type, enabled=False):
            x = images.float()
            if self.flip or self.translate:
                x = flip_and_translate(x, self.flip, self.translate)
            if self.randaugment is not None:
                lo, hi = float(x.min()), float(x.max())
                if lo < -1e-3 or hi > 1 + 1e-3:
                    raise ValueError(
                        f"RandAugment needs images in [0, 1] (normalise inside the model or after "
                        f"augmentation), got values in [{lo:.3g}, {hi:.3g}]"
                    )
                if x.shape[1] == 1:  # grayscale: kornia's colour ops need RGB; augment replicated, average back
                    x = self.randaugment(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
                else:
                    x = self.randaugment(x)
            if not self.mixes:
                return x.to(dtype), labels
            if labels.dim() != 1 or bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
                raise ValueError(f"MixUp/CutMix need class ids in [0, {self.num_classes}) for every example")
            b = x.shape[0]
            split = b // 2 if (self.mixup_alpha > 0 and self.cutmix_alpha > 0) else (b if self.mixup_alpha else 0)
            xs, ts = [], []
            if split > 0:
                mixed, targets = self._mixup(x[:split], labels[:split])
                xs.append(mixed)
                ts.append(targets)
            if split < b:
                mixed, targets = (self._cutmix if self.cutmix_alpha > 0 else self._mixup)(x[split:], labels[split:])
                xs.append(mixed)
                ts.append(targets)
            return torch.cat(xs).to(dtype), torch.cat(ts)

    def _one_hot(self, ids: torch.Tensor) -> torch.Tensor:
        return F.one_hot(ids.long(), self.num_classes).float()

    def _mixup(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kornia mixes ``x·(1 − λ) + x[pair]·λ`` and returns ``(label, paired label, λ)`` per row."""
        lam = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
        mix = kornia_augmentation("mixup_alpha").RandomMixUpV2(
            lambda_val=torch.tensor([lam, lam]), data_keys=["input", "class"]
        )
        out, y = mix(x, labels)
        w = y[:, 2:3].float()
        return out, (1 - w) * self._one_hot(y[:, 0]) + w * self._one_hot(y[:, 1])

    def _cutmix(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kornia pastes a box of a paired image and returns ``(label, paired label, λ)`` with λ the fraction of
        the image kept (``use_correct_lambda``)."""
        mix = kornia_augmentation("cutmix_alpha").RandomCutMixV2(
            num_mix=1, beta=self.cutmix_alpha, use_correct_lambda=True, data_keys=["input", "class"]
        )
        out, y = mix(x, labels)
        y = y[0]
        w = y[:, 2:3].float()
        return out, w * self._one_hot(y[:, 0]) + (1 - w) * self._one_hot(y[:, 1])
