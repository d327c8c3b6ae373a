"""A tiny random-weight stand-in for PickScore_v1, saved the way a transformers model folder is.

No hub access: a CLIPModel (real 224 px input, logit scale 100 like PickScore's) with ``config.json``
+ ``model.safetensors``, a real CLIP BPE tokenizer cut to 1000 tokens, and a
``preprocessor_config.json`` with the standard CLIP settings (what laion/CLIP-ViT-H-14 ships).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_tiny_pickscore(path: Path, seed: int = 0, vision_hidden: int = 48, with_processor: bool = True) -> Path:
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel

    from draftsdk.plugin_utils import tiny_clip_config
    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer()
    config = tiny_clip_config(tok, vision_hidden=vision_hidden, hidden_act="gelu", logit_scale=100.0)
    CLIPModel(config).eval().save_pretrained(path)
    if with_processor:
        tok.save_pretrained(path)
        CLIPImageProcessorPil().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pickscore_dir(tmp_path_factory) -> Path:
    return build_tiny_pickscore(tmp_path_factory.mktemp("pickscore") / "tiny-pickscore")


@pytest.fixture(scope="session")
def pickscore_builder():
    """The ``build_tiny_pickscore(path, seed=..., vision_hidden=..., with_processor=...)`` helper."""
    return build_tiny_pickscore
