"""Tiny random-weight OWL-ViT / OWLv2 detectors saved with save_pretrained, for offline tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from draftsdk_owlvit.testing import save_tiny_detector  # noqa: E402


def smooth_images(batch: int, height: int, width: int, seed: int = 0):
    """Smooth random images in [0, 1] (upsampled 6x8 noise), closer to photos than white noise."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, 6, 8, generator=g)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="session")
def owlvit_dir(tmp_path_factory) -> Path:
    """A saved tiny OWL-ViT detector folder (config, safetensors, tokenizer, preprocessor config)."""
    return save_tiny_detector(tmp_path_factory.mktemp("owlvit") / "tiny-owlvit")


@pytest.fixture(scope="session")
def owlv2_dir(tmp_path_factory) -> Path:
    """A saved tiny OWLv2 detector folder."""
    return save_tiny_detector(tmp_path_factory.mktemp("owlv2") / "tiny-owlv2", v2=True)


@pytest.fixture(scope="session")
def make_images():
    """The `smooth_images(batch, height, width, seed=0)` helper (test files cannot import conftest)."""
    return smooth_images


@pytest.fixture(scope="session")
def make_detector():
    """The `save_tiny_detector(path, v2=False, seed=0)` helper."""
    return save_tiny_detector
