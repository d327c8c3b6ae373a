"""Tiny random-weight OWL-ViT / OWLv2 detectors saved with save_pretrained, for offline tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

IMAGE_SIZE = 64  # the tiny detector's square input: (64 / 16)^2 = 16 boxes


def save_tiny_detector(path: Path, *, v2: bool = False, seed: int = 0) -> Path:
    """Build a ~100k-parameter OWL-ViT (or OWLv2) detector plus its processor and save both to ``path``.

    Random class heads give logits of +-100 (every score saturates at 0 or 1), so the logit
    shift/scale heads are scaled down to give scores spread over (0, 1), like a real detector's.
    """
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer(1000, model_max_length=16)
    text = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        image_size=IMAGE_SIZE, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    if v2:
        model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
        processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size=size), tokenizer=tok)
    else:
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tok)
    with torch.no_grad():
        model.class_head.logit_shift.weight.mul_(0.15)
        model.class_head.logit_scale.weight.mul_(0.15)
    model.eval().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def smooth_images(batch: int, height: int, width: int, seed: int = 0):
    """Smooth random images in [0, 1] (upsampled 6x8 noise), closer to photos than white noise."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, 6, 8, generator=g)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run these tests on one torch thread, restoring the setting afterwards.

    On the shared 2-core machine under load (load average ~6), torch's default 2 threads made a
    tiny DRaFT step take 30 s instead of 0.4 s (OpenMP threads spin-waiting for a busy core).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
