"""A random-weight torchvision ResNet-50 saved as local files, for offline tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def random_resnet50(seed: int = 0, fc_scale: float = 0.03):
    """``resnet50(weights=None)`` with its classifier scaled down.

    In eval mode a random ResNet-50 gives logits with std ~20, so softmax saturates (every image
    gets log-probabilities of 0 or -80). Scaling ``fc`` by 0.03 gives std ~0.6 and log-probabilities
    near -6.9 = log(1/1000), like an untrained but sane classifier.
    """
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    model = resnet50(weights=None).eval()
    with torch.no_grad():
        model.fc.weight.mul_(fc_scale)
    return model


@pytest.fixture(scope="session")
def resnet_model():
    """The random ResNet-50 (eval mode) whose state dict the file fixtures hold."""
    return random_resnet50()


@pytest.fixture(scope="session")
def resnet_pth(resnet_model, tmp_path_factory) -> Path:
    """Its state dict saved with torch.save (a .pth file, loaded with weights_only=True)."""
    import torch

    path = tmp_path_factory.mktemp("resnet") / "resnet50-random.pth"
    torch.save(resnet_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def make_resnet():
    """The `random_resnet50(seed=0, fc_scale=0.03)` helper (test files cannot import conftest)."""
    return random_resnet50
