"""The demo digit classifier: a small CNN on 16x16 grey images, the model behind the demo rewards.

Layout: two 3x3 conv layers (16, 32 channels) with SiLU and 2x2 average pooling, then a 64-unit hidden
layer: 38 k parameters. Smooth activations and average pooling give smooth input gradients, which is
what a reward needs. Pretraining (``draftsdk.demo.pretrain``) fits it on the training split with mixup,
small random affine jitter and weight decay, so it is accurate (about 99 % held out) without being
absurdly confident: log-probabilities of a wrong digit stay around -10, and images between two digits
get intermediate probabilities, so the ``digit-target`` reward has useful gradients.
Weights ship as ``weights/classifier.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from draftsdk.demo.data import IMAGE_SIZE, to_grey

CLASSIFIER_FILE = "classifier.safetensors"


class DigitClassifier(nn.Module):
    """CNN mapping ``(B, 1, 16, 16)`` grey images in [0, 1] (1 = paper) to 10 digit logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * (IMAGE_SIZE // 4) ** 2, 64),
            nn.SiLU(),
            nn.Dropout(0.2),
            nn.Linear(64, 10),
        )

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)``; the ink map ``1 - grey`` is centred before the convolutions."""
        return self.head(self.features((1.0 - grey) * 2.0 - 0.5))

    def log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable log-probabilities ``(B, 10)`` for ``(B, C, H, W)`` images in [0, 1] of any size."""
        return torch.log_softmax(self(to_grey(images)), dim=-1)


def classifier_path() -> Path:
    """The shipped classifier weights."""
    from draftsdk.demo.model import weights_dir

    return weights_dir() / CLASSIFIER_FILE


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitClassifier:
    """Load classifier weights (safetensors) into a frozen ``DigitClassifier`` in eval mode."""
    from safetensors.torch import load_file

    model = DigitClassifier()
    model.load_state_dict(load_file(str(path or classifier_path())))
    model.requires_grad_(False)
    return model.eval().to(device)
