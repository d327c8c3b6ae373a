"""draftsdk-pickscore: contract, parity with PickScore's README code, loading errors, the docs example.

Offline, on a tiny random CLIPModel folder (see conftest.py) loaded through the plugin's real loading
code (``CLIPModel.from_pretrained`` + tokenizer + image-processor config).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import draftsdk
from draftsdk.testing import check_reward

ROOT = Path(__file__).resolve().parents[3]
SIZES = [(512, 512), (512, 768), (768, 512), (300, 701), (701, 300)]  # (H, W); 701 gives odd crop margins
PROMPTS = ["a watercolour painting of a fox", "a photo of a red bicycle leaning on a wall"]

# Parity tolerance on the score (100 x cosine; the tiny model scores about -24). Measured max
# |ours - reference|: 5.1e-3 over SIZES, 6.3e-3 on the batch test (torch 2.14.1, transformers 5.24 PIL
# backend, Pillow 13, CPU), i.e. 5e-5 in cosine. The reference resizes with PIL on uint8 (it rounds the
# resized image and the intermediate pass: ~0.3/255 on average, ~1/255 at most here); the torch path
# stays in float, and the x100 logit scale turns a 5e-5 cosine change into 5e-3. 1e-2 leaves ~2x
# margin; the same test shows that a wrong pre-processing costs more than that: no antialias
# (2.7e-2) and torchvision's rounded crop on an odd margin (9e-2).
PARITY_TOL = 1e-2


@pytest.fixture(scope="module")
def reward(tiny_pickscore_dir):
    return draftsdk.get_reward("pickscore", path=str(tiny_pickscore_dir))


@pytest.fixture(scope="module")
def reference(tiny_pickscore_dir):
    """PickScore's README code (yuvalkirstain/PickScore) with the PIL image processor it was written
    for (transformers 4.27 was PIL-based; in 5.x that is ``backend="pil"``): processor on the PIL
    images, ``get_image_features`` / ``get_text_features`` (``.pooler_output`` in 5.x), L2 norm,
    ``logit_scale.exp() * text_embs @ image_embs.T``; each image with its own prompt (one at a time)."""
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_pickscore_dir, backend="pil")
    model = AutoModel.from_pretrained(tiny_pickscore_dir).eval()

    @torch.no_grad()
    def score(pil_image, prompt):
        image_inputs = processor(images=[pil_image], padding=True, truncation=True, max_length=77, return_tensors="pt")
        text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
        image_embs = model.get_image_features(**image_inputs).pooler_output
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = model.get_text_features(**text_inputs).pooler_output
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
        return float(scores[0])

    return score


def test_contract(reward):
    report = check_reward(reward, batch_size=3, image_size=64, check_input_validation=True)
    assert report["grad_norm"] > 0


def test_parity_with_pickscore_readme(reward, reference, smooth_image):
    from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize_shortest_side

    model = reward.model

    def variant(tensor, prompt, antialias, rounding):
        x = resize_shortest_side(tensor, 224, antialias=antialias).clamp(0, 1)
        x = normalize(center_crop(x, 224, rounding=rounding), CLIP_MEAN, CLIP_STD)
        image = torch.nn.functional.normalize(model.clip.get_image_features(pixel_values=x).pooler_output, dim=-1)
        return float(model.clip.logit_scale.exp() * (image * model.encode_prompts([prompt])).sum())

    diffs, no_antialias, round_crop = [], [], []
    for i, (h, w) in enumerate(SIZES):
        pil, tensor = smooth_image(h, w, seed=h + w)
        prompt = PROMPTS[i % 2]
        expected = reference(pil, prompt)
        with torch.no_grad():
            diffs.append(abs(float(reward(tensor, [prompt])[0]) - expected))
            no_antialias.append(abs(variant(tensor, prompt, False, "floor") - expected))
            if 701 in (h, w):
                round_crop.append(abs(variant(tensor, prompt, True, "round") - expected))
    print(
        f"pickscore parity: max |diff| {max(diffs):.2e}; controls: no antialias {max(no_antialias):.2e}, "
        f"rounded crop {max(round_crop):.2e}"
    )
    assert max(diffs) < PARITY_TOL, diffs
    assert max(no_antialias) > PARITY_TOL and max(round_crop) > PARITY_TOL


def test_batch_takes_the_diagonal_not_row_zero(reward, reference, smooth_image):
    """Each image is scored with its own prompt (VADER's bug was scoring every image with prompt 0)."""
    pils, tensors = zip(*(smooth_image(384, 512, seed=s) for s in (7, 8)))
    with torch.no_grad():
        batch = reward(torch.cat(tensors), PROMPTS)
        swapped = reward(torch.cat(tensors), PROMPTS[::-1])
    expected = torch.tensor([reference(p, t) for p, t in zip(pils, PROMPTS)])
    assert torch.allclose(batch, expected, atol=PARITY_TOL)
    assert not torch.allclose(batch, swapped, atol=1e-3)
    assert abs(float(reward.model.clip.logit_scale.exp()) - 100.0) < 1e-3


def test_gradient_reaches_pixels_and_model_is_frozen(reward, smooth_image):
    _, tensor = smooth_image(512, 768, seed=3)
    pixels = tensor.repeat(2, 1, 1, 1).requires_grad_(True)
    reward(pixels, PROMPTS).sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in reward.model.clip.parameters())
    assert not reward.model.clip.training


def test_grad_checkpointing_and_bfloat16(reward, tiny_pickscore_dir, smooth_image):
    _, tensor = smooth_image(300, 701, seed=5)
    ckpt = draftsdk.get_reward("pickscore", path=str(tiny_pickscore_dir), grad_checkpointing=True)
    grads, outs = [], []
    for r in (reward, ckpt):
        pixels = tensor.clone().requires_grad_(True)
        out = r(pixels, PROMPTS[:1])
        out.sum().backward()
        grads.append(pixels.grad)
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])
    low = draftsdk.get_reward("pickscore", path=str(tiny_pickscore_dir), dtype="bfloat16")(tensor, PROMPTS[:1])
    assert low.dtype == torch.float32 and abs(float(low[0]) - float(outs[0][0])) < 1.0


def test_long_prompts_are_truncated(reward):
    out = reward(torch.rand(2, 3, 64, 64), ["a " + "very " * 200 + "long prompt", "ünïcödé café 東京"])
    assert out.shape == (2,) and torch.isfinite(out).all()


def test_missing_weights_offline_is_one_line(tiny_pickscore_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("pickscore", path="no-such-org/no-such-model", processor_path=str(tiny_pickscore_dir))
    message = str(err.value)
    assert "\n" not in message and "'no-such-org/no-such-model'" in message and "path=" in message
    # a local model folder without tokenizer files falls back to the laion processor id, not cached here
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_pickscore_dir / name, bare / name)
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("pickscore", path=str(bare))
    message = str(err.value)
    assert "\n" not in message and "'laion/CLIP-ViT-H-14-laion2B-s32B-b79K'" in message and "processor_path=" in message
    # ... and works with processor_path pointing at a folder with the tokenizer
    assert draftsdk.get_reward("pickscore", path=str(bare), processor_path=str(tiny_pickscore_dir)).model.max_length == 77
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draftsdk.get_reward("pickscore", path="./no/such/folder")


def test_wrong_architecture_is_named(tiny_pickscore_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_pickscore_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["vision_config"]["hidden_size"] = 64  # config of another CLIP, weights of this one
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit the CLIP architecture") as err:
        draftsdk.get_reward("pickscore", path=str(bad))
    assert "\n" not in str(err.value) and str(bad) in str(err.value)

    other = tmp_path / "not-clip"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="is a 'bert' model, not a CLIPModel"):
        draftsdk.get_reward("pickscore", path=str(other), processor_path=str(tiny_pickscore_dir))


def test_bad_inputs(reward):
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        reward(torch.full((1, 3, 32, 32), 255.0), ["x"])
    with pytest.raises(ValueError, match="pass one prompt per image"):
        reward(torch.rand(2, 3, 32, 32), ["only one"])


def test_docs_example_runs(tiny_pickscore_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DRAFTSDK_EXAMPLE_PICKSCORE": str(tiny_pickscore_dir)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "pickscore_usage.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.strip().splitlines())
    scores = eval(lines["pickscore"])  # noqa: S307 - our own printed list
    assert len(scores) == 2 and all(-100.0 <= s <= 100.0 for s in scores)
    assert float(lines["pixel grad norm"]) > 0
    assert "'brightness', 'pickscore'" in lines["total"]
