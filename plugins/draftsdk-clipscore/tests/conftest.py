"""Tiny random-weight CLIPs for the CLIPScore tests, saved the way real ones are. No hub access.

- open_clip: a model-config JSON (the keys of open_clip's ``ViT-L-14.json``, the real 224 px input, the
  real 49408-token BPE vocabulary, QuickGELU like OpenAI's weights) and a ``.safetensors`` state dict.
- transformers: a ``CLIPModel`` folder (``config.json`` + ``model.safetensors``), a real CLIP BPE
  tokenizer cut to 1000 tokens and a ``preprocessor_config.json`` with the standard CLIP settings.

A random CLIP gives cosines scattered around 0, so half of the CLIPScores would be clamped to 0. Real
CLIPs put every embedding in a narrow cone (cosines of about 0.15..0.35 even for unrelated pairs), so
both towers get a shared offset direction (``align_towers``): cosines become positive, realistic in
size, and still depend on the image and the prompt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from draftsdk.plugin_utils import tiny_clip_config, tiny_open_clip_config

TINY_CONFIG = tiny_open_clip_config(quick_gelu=True)


def align_towers(image_bias, image_proj, text_bias, text_proj, strength: float, seed: int) -> None:
    """Give both towers' final LayerNorm a bias along one random direction and bend the text projection
    so that both biases map to the same embedding direction (in place, no grad).

    ``image_proj`` maps (width_v -> embed) as ``x @ image_proj``; ``text_proj`` the same for text.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        u_v = torch.randn(image_bias.shape[0], generator=g)
        u_t = torch.randn(text_bias.shape[0], generator=g)
        image_bias.copy_(strength * u_v)
        text_bias.copy_(strength * u_t)
        target = (strength * u_v) @ image_proj  # where the image offset lands in the embedding space
        current = (strength * u_t) @ text_proj
        text_proj.add_(torch.outer(strength * u_t, target - current) / float((strength * u_t).square().sum()))


def build_tiny_open_clip(folder: Path, seed: int = 0, name: str = "tiny-clipscore-vit", strength: float = 0.75) -> tuple[Path, Path]:
    """(config JSON, checkpoint .safetensors) of a random tiny open_clip CLIP with positive cosines."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"{name}.json"
    config_file.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config_file)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    with torch.no_grad():
        for p in model.parameters():  # non-trivial biases, as in a trained checkpoint
            if p.ndim == 1:
                p.add_(0.02 * torch.randn_like(p))
    align_towers(model.visual.ln_post.bias, model.visual.proj, model.ln_final.bias, model.text_projection, strength, seed)
    checkpoint = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return config_file, checkpoint


def build_tiny_hf_clip(path: Path, seed: int = 0, strength: float = 0.75) -> Path:
    """A folder with a random tiny transformers CLIPModel, its tokenizer and a CLIP image-processor config."""
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel

    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer()
    model = CLIPModel(tiny_clip_config(tok, hidden_act="quick_gelu")).eval()
    # nn.Linear weights are (out, in): x @ weight.T, so align the transposed views in place
    align_towers(
        model.vision_model.post_layernorm.bias, model.visual_projection.weight.data.T,
        model.text_model.final_layer_norm.bias, model.text_projection.weight.data.T, strength, seed,
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessorPil().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory) -> tuple[Path, Path]:
    """(model-config JSON, checkpoint) of the tiny open_clip CLIP."""
    return build_tiny_open_clip(tmp_path_factory.mktemp("clipscore-open-clip"))


@pytest.fixture(scope="session")
def tiny_hf_clip(tmp_path_factory) -> Path:
    """Folder of the tiny transformers CLIPModel."""
    return build_tiny_hf_clip(tmp_path_factory.mktemp("clipscore-hf") / "tiny-clip")
