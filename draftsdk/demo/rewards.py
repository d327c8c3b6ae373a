"""The demo rewards of the digits world. Light to import: torch and the weights load only on construction.

- ``DigitTarget`` (``digit-target``): log-probability of a target digit under the shipped CNN classifier,
  e.g. prompt "a handwritten digit 3" with ``target=8`` (the DRaFT paper's adversarial experiment in
  miniature);
- ``DigitBoldness`` (``digit-boldness``): mean ink coverage, an aesthetic-like score. On its own it is
  easily hacked (solid ink scores 1.0); combine it with ``digit-target`` to get bolder digits.

Both take ``images`` ``(B, 3, H, W)`` float in [0, 1] of any size and return ``(B,)`` float32,
differentiable w.r.t. ``images``; higher is better.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _check_digit(target: object) -> int:
    """Return ``target`` as an int in 0..9, or raise a one-line ``ValueError``."""
    try:
        if isinstance(target, bool):
            raise TypeError
        digit = operator.index(target)  # type: ignore[arg-type]
    except TypeError:
        digit = -1
    if not 0 <= digit <= 9:
        raise ValueError(f"digit-target: option 'target' must be an integer digit 0-9, got {target!r}")
    return digit


class DigitTarget:
    """Log-probability that the image shows `target` under the demo digit classifier."""

    name = "digit-target"
    differentiable = True

    def __init__(self, target: int = 8, device: str | None = None) -> None:
        """Load the shipped classifier (safetensors) on ``device`` (default: follow the images' device)."""
        from draftsdk.demo.classifier import load_classifier

        self.target = _check_digit(target)
        self.device = device
        self._classifier = load_classifier(device=device or "cpu")

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``log p(target | image)`` per image, ``(B,)``, in (-inf, 0]."""
        device = self.device or images.device
        log_probs = self._classifier.to(device).log_probs(images.to(device).float())
        return log_probs[:, self.target]


class DigitBoldness:
    """Mean ink coverage of the image: 0 for blank paper, 1 for solid ink; bolder strokes score higher."""

    name = "digit-boldness"
    differentiable = True

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``1 - mean grey level`` per image, ``(B,)``, in [0, 1]."""
        return 1.0 - images.float().mean(dim=(1, 2, 3))
