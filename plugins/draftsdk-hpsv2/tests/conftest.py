"""A tiny random-weight stand-in for the HPSv2 checkpoint, saved the way the real one is.

No hub access. The tiny open_clip architecture is a model-config JSON (same keys as open_clip's
``ViT-H-14.json``, the real 224 px input and the real 49408-token BPE vocabulary) and the checkpoint
is ``torch.save({"state_dict": model.state_dict()})`` like ``HPS_v2_compressed.pt``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def build_tiny_hps(folder: Path, seed: int = 0, config: dict | None = None, name: str = "tiny-hps-vit") -> tuple[Path, Path]:
    """(config JSON, checkpoint .pt) of a random tiny open_clip CLIP."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"{name}.json"
    config_file.write_text(json.dumps(config or TINY_CONFIG))
    open_clip.add_model_config(config_file)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    with torch.no_grad():  # a random logit_scale / non-trivial biases, as in a trained checkpoint
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn_like(p))
    checkpoint = folder / f"{name}.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return config_file, checkpoint


@pytest.fixture(scope="session")
def tiny_hps(tmp_path_factory) -> tuple[Path, Path]:
    return build_tiny_hps(tmp_path_factory.mktemp("hpsv2"))


@pytest.fixture(scope="session")
def hps_builder():
    """The ``build_tiny_hps(folder, seed=..., config=..., name=...)`` helper."""
    return build_tiny_hps


def make_smooth_image(h: int, w: int, seed: int = 0):
    """``(PIL RGB image, float tensor (1, 3, h, w) in [0, 1] holding the same uint8 pixels)``.

    Low-frequency random colour fields (a 6x6 grid upsampled bicubically) plus two milder textures
    (16 px and 3 px blobs): realistic enough that PIL's 8-bit rounding, not aliasing of pure noise,
    is what separates the pipelines, yet fine enough that a resize without antialias shows.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=g)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    detail = F.interpolate(torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g), size=(h, w), mode="bilinear")
    fine = F.interpolate(torch.rand(1, 3, h // 3 + 1, w // 3 + 1, generator=g), size=(h, w), mode="bilinear")
    img = (0.6 * field + 0.2 * detail + 0.2 * fine).clamp(0, 1)
    array = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(array, mode="RGB")
    tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255).unsqueeze(0)
    return pil, tensor


@pytest.fixture(scope="session")
def smooth_image():
    """The ``make_smooth_image(h, w, seed)`` helper."""
    return make_smooth_image


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread while these tests run (restored afterwards): the models are tiny, and on a busy
    2-core machine two OpenMP threads waiting on each other make every op ~30x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
