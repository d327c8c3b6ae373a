"""Cheap differentiable rewards that need no weights: handy for tests, tutorials and sanity checks.

Each is a few tensor operations on ``(B, 3, H, W)`` images in ``[0, 1]``; none imports torch at
module level, so listing them stays free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor


class Brightness:
    """Mean pixel intensity (0 = black, 1 = white)."""

    name = "brightness"
    differentiable = True

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return images.mean(dim=(1, 2, 3))


class Saturation:
    """Mean colourfulness: (max - min) / max over the RGB channels, averaged over pixels."""

    name = "saturation"
    differentiable = True

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        hi, lo = images.amax(dim=1), images.amin(dim=1)
        return ((hi - lo) / (hi + 1e-6)).mean(dim=(1, 2))


class Contrast:
    """Standard deviation of the grey-level image (RMS contrast)."""

    name = "contrast"
    differentiable = True

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        grey = images.mean(dim=1).flatten(1)
        return grey.std(dim=1, unbiased=False)


class TargetColor:
    """Negative mean squared distance of every pixel to one RGB colour (0 = all pixels that colour)."""

    name = "target-color"
    differentiable = True

    def __init__(self, color: Sequence[float] = (1.0, 0.0, 0.0)) -> None:
        values = [float(c) for c in color]
        if len(values) != 3 or not all(0.0 <= c <= 1.0 for c in values):
            raise ValueError(f"target-color: color must be three numbers in [0, 1], got {list(color)!r}")
        self.color = values

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        target = images.new_tensor(self.color).view(1, 3, 1, 1)
        return -((images - target) ** 2).mean(dim=(1, 2, 3))


def _meta(low: float, high: float) -> RewardMeta:
    return RewardMeta(inputs="image", score_range=(low, high), memory_gb=0.0, weights_license="none (no weights)")


@hookimpl
def register_rewards(register: Any) -> None:
    register(Brightness, meta=_meta(0.0, 1.0))
    register(Saturation, meta=_meta(0.0, 1.0))
    register(Contrast, meta=_meta(0.0, 0.5))
    register(TargetColor, aliases=("target-colour",), meta=_meta(-1.0, 0.0))
