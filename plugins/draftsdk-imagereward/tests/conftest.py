"""A tiny random-weight ImageReward saved the way the real one is (a ``torch.save`` state dict of the
reference module, ``ImageReward.pt`` layout), a small BERT ``vocab.txt`` and a ``med_config.json``.
No hub access.

Sizes: ViT with the real 224 px input and patch 16 (196 patches), width 128 (2 heads of 64, as the
plugin infers), 2 blocks; BERT width 64, 2 heads, 2 layers; the real MLP head (64-1024-128-64-16-1).
Weights are drawn with unit gain (std ``gain / sqrt(fan_in)``, not BERT's 0.02), so that the [CLS]
feature depends on the image and the prompt as in a trained model and scores spread over ~1; with a
0.02 init the tiny model scores every input within ~1e-3 and a parity test could not fail.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

WORDS = (
    "a an the of in on with and photo painting watercolour fox red bicycle leaning brick wall cat dog "
    "astronaut riding horse ocean clouds birds day time low depth field effect city night sky"
).split()
TINY_VISION = {"vision_width": 128, "vision_depth": 2, "vision_heads": 2, "patch_size": 16}


def write_vocab(folder: Path) -> Path:
    """A BERT ``vocab.txt``: the special tokens, some words, single characters and ``##`` pieces."""
    import string

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *[f"##{c}" for c in string.ascii_lowercase + string.digits]]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return folder


def tiny_med_config(vocab_size: int) -> dict:
    return {
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": vocab_size,
        "encoder_width": 768, "add_cross_attention": True,
    }


def build_tiny_imagereward(folder: Path, seed: int = 0, gain: float = 1.5) -> dict[str, Path]:
    """{"checkpoint", "med_config", "tokenizer"} of a random tiny ImageReward, plus the reference module."""
    import torch

    import imagereward_reference as ref

    tok_dir = write_vocab(folder / "tokenizer")
    n_vocab = len((tok_dir / "vocab.txt").read_text().split())
    cfg = tiny_med_config(n_vocab + 2)  # + [DEC] and [ENC], as bert-base-uncased's 30522 + 2 = 30524
    (folder / "med_config.json").write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    model = ref.ImageReward(cfg, **TINY_VISION).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # non-trivial LayerNorm gains and biases, as in a trained checkpoint
                p.add_(0.05 * torch.randn_like(p))
            elif p.ndim >= 2 and "embeddings" not in name and name.endswith("weight"):
                p.normal_(0.0, gain * p[0].numel() ** -0.5)  # unit gain: attention and image do matter
        model.blip.visual_encoder.pos_embed.normal_(0.0, 0.02)
        model.blip.visual_encoder.cls_token.normal_(0.0, 0.02)
    checkpoint = folder / "ImageReward.pt"
    torch.save(model.state_dict(), checkpoint)
    return {"checkpoint": checkpoint, "med_config": folder / "med_config.json", "tokenizer": tok_dir, "model": model}


@pytest.fixture(scope="session")
def tiny_imagereward(tmp_path_factory) -> dict:
    """Paths of the tiny ImageReward (checkpoint, med_config, tokenizer) and the reference module."""
    return build_tiny_imagereward(tmp_path_factory.mktemp("imagereward"))


@pytest.fixture(scope="session")
def reward(tiny_imagereward):
    import draftsdk

    t = tiny_imagereward
    return draftsdk.get_reward(
        "imagereward", checkpoint=str(t["checkpoint"]), med_config=str(t["med_config"]), tokenizer=str(t["tokenizer"])
    )


@pytest.fixture(scope="session")
def ref_tokenizer(tiny_imagereward):
    """The reference's ``init_tokenizer`` on the tiny vocabulary."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(tiny_imagereward["tokenizer"]))
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer
