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

from draftsdk.plugin_utils import tiny_open_clip_config  # noqa: E402

TINY_CONFIG = tiny_open_clip_config()  # embed 32, vision 2x64, text 2x32, the real 224 px / 49408 tokens


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
