"""The digits data: scikit-learn's 8x8 handwritten digits as 16x16 images with a fixed held-out split.

Images are dark ink on white paper, float32 in ``[0, 1]`` (1 = paper): the 8x8 originals (0 = paper,
16 = ink) are inverted and upsampled 2x bilinearly, so strokes stay smooth at the model's resolution.
The split is stratified, 80 % train / 20 % held out, with a fixed seed: every model of the digits world
(autoencoder, diffusion model, classifier, evaluator) is fitted on ``train`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from draftsdk.demo.model import IMAGE_SIZE

HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class DigitSplit:
    """Grey images ``(N, 16, 16)`` float32 in [0, 1] (1 = paper) and their labels ``(N,)`` int64."""

    images: np.ndarray
    labels: np.ndarray

    def rgb(self) -> torch.Tensor:
        """The images as a ``(N, 3, 16, 16)`` float tensor, grey repeated over the channels."""
        return torch.from_numpy(self.images).unsqueeze(1).repeat(1, 3, 1, 1)


def upsample(digits8: np.ndarray) -> np.ndarray:
    """Turn sklearn's ``(N, 8, 8)`` ink values (0..16) into ``(N, 16, 16)`` paper-white images in [0, 1]."""
    paper = 1.0 - torch.from_numpy(np.asarray(digits8, dtype=np.float32)) / 16.0
    big = F.interpolate(paper.unsqueeze(1), size=IMAGE_SIZE, mode="bilinear", align_corners=False)
    return big.squeeze(1).clamp(0.0, 1.0).numpy()


def load_splits() -> tuple[DigitSplit, DigitSplit]:
    """Return ``(train, held_out)``: the fixed stratified split of all 1797 digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = upsample(digits.images)
    labels = digits.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(
        images, labels, test_size=HELD_OUT_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return DigitSplit(tr_x, tr_y), DigitSplit(te_x, te_y)


def to_grey(images: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Differentiably map ``(B, C, H, W)`` images in [0, 1] to ``(B, 1, size, size)`` grey (channel mean).

    Any input size is resized with antialiased bilinear interpolation, so gradients reach every pixel.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    grey = images.mean(dim=1, keepdim=True)
    if grey.shape[-2:] != (size, size):
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return grey
