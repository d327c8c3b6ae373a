"""Tiny random-weight stand-ins for CLIP ViT-L/14 and the LAION head, saved the way real ones are.

No hub access: a transformers CLIPModel folder (config.json + model.safetensors) and a head ``.pth``
holding an OrderedDict ``layers.{0,2,4,6,7}.{weight,bias}`` like ``sac+logos+ava1-l14-linearMSE.pth``.
The CLIP keeps the real 224 px input so resizing and cropping are exercised at their real sizes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBED = 32
GAIN, BIAS = 18.0, 5.24  # |w_eff| and b_eff of the published head (reward-references.md section 3)


def build_tiny_clip(path: Path, seed: int = 0, projection_dim: int = EMBED) -> Path:
    import torch
    from transformers import CLIPModel

    from draftsdk.plugin_utils import tiny_clip_config
    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer()
    model = CLIPModel(tiny_clip_config(tok, projection_dim=projection_dim)).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def effective_affine(state):
    """The head's eval-mode affine map (w, b): score = w . e + b (float64)."""
    x_w = x_b = None
    for i in (0, 2, 4, 6, 7):
        lw, lb = state[f"layers.{i}.weight"].double(), state[f"layers.{i}.bias"].double()
        x_w, x_b = (lw, lb) if x_w is None else (lw @ x_w, lw @ x_b + lb)
    return x_w.reshape(-1), float(x_b.reshape(-1)[0])


def build_tiny_head(file: Path, dim: int = EMBED, seed: int = 1, gain: float = GAIN, bias: float = BIAS) -> Path:
    """A random 5-layer head rescaled so its affine map has |w| = gain and b = bias (as published)."""
    import torch

    torch.manual_seed(seed)
    sizes = [dim, 1024, 128, 64, 16, 1]
    state = OrderedDict()
    for (i, (fan_in, fan_out)) in zip((0, 2, 4, 6, 7), zip(sizes[:-1], sizes[1:])):
        layer = torch.nn.Linear(fan_in, fan_out)
        state[f"layers.{i}.weight"] = layer.weight.detach().clone()
        state[f"layers.{i}.bias"] = layer.bias.detach().clone()
    w, b = effective_affine(state)
    scale = gain / float(w.norm())
    last_b = float(state["layers.7.bias"][0])
    state["layers.7.weight"] = state["layers.7.weight"] * scale
    state["layers.7.bias"] = torch.tensor([bias - scale * (b - last_b)], dtype=torch.float32)
    torch.save(state, file)
    return file


def build_tiny_open_clip(folder: Path, seed: int = 0) -> Path:
    """open_clip's ``local-dir:`` layout: open_clip_config.json + open_clip_model.safetensors."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    from draftsdk.plugin_utils import tiny_open_clip_config

    model_cfg = tiny_open_clip_config(embed_dim=EMBED, quick_gelu=True)  # QuickGELU like OpenAI's ViT-L/14
    torch.manual_seed(seed)
    model = open_clip.CLIP(**{k: v for k, v in model_cfg.items() if k != "quick_gelu"}, quick_gelu=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return folder


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_open_clip(tmp_path_factory.mktemp("aesthetic-open-clip") / "tiny-open-clip")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("aesthetic") / "tiny-clip-vit")


@pytest.fixture(scope="session")
def tiny_head_file(tmp_path_factory) -> Path:
    return build_tiny_head(tmp_path_factory.mktemp("aesthetic-head") / "tiny-aesthetic-head.pth")


@pytest.fixture(scope="session")
def head_builder():
    """The ``build_tiny_head(file, dim=..., seed=..., gain=..., bias=...)`` helper."""
    return build_tiny_head


@pytest.fixture(scope="session")
def affine_of():
    """The ``effective_affine(state) -> (w, b)`` helper."""
    return effective_affine
