"""draftsdk-aesthetic: contract, parity with the reference predictor, loading errors, the docs example.

Everything runs offline on tiny random-weight models saved the way the real ones are (see conftest.py)
and loaded through the plugin's real loading code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import draftsdk
from draftsdk.testing import check_reward

ROOT = Path(__file__).resolve().parents[3]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
SIZES = [(512, 512), (512, 768), (768, 512), (300, 701), (701, 300)]  # (H, W); 701 gives odd crop margins

# Parity tolerance on the score (1..10 scale). Measured max |ours - reference| over SIZES with the
# tiny CLIP and a head rescaled to the published gain 18: 6.4e-4 (torch 2.14.1, Pillow 13, CPU;
# 3.1e-3 on the coarser/finer textures tried while writing this test).
# Where it comes from: PIL resizes in 8 bits (it rounds the resized image and the intermediate pass
# to uint8: about 0.3/255 on average, ~1/255 at most here); the torch path stays in float. As the
# head is affine with |w| = 18, |d score| <= 18 * |d unit embedding|. 5e-3 leaves ~8x margin on these
# images, and the same test shows that what a wrong pre-processing costs is larger than it:
# no antialias (7e-3) and HF's floor crop on an odd margin (2.8e-2).
PARITY_TOL = 5e-3


@pytest.fixture(scope="module")
def reward(tiny_clip_dir, tiny_head_file):
    return draftsdk.get_reward("aesthetic", path=str(tiny_clip_dir), head=str(tiny_head_file))


@pytest.fixture(scope="module")
def reference(tiny_clip_dir, tiny_head_file):
    """The reference predictor: OpenAI CLIP's ``_transform`` on the PIL image (torchvision on PIL:
    bicubic resize of the short side, CenterCrop with round-half-even offsets, ToTensor, Normalize),
    ``encode_image`` (here the tiny CLIPModel's ``get_image_features``, loaded independently as a full
    CLIPModel), numpy L2 normalisation, then LAION's ``MLP`` in fp32, as in simple_inference.py."""
    import numpy as np
    from torch import nn
    from torchvision import transforms as T
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    transform = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            lambda image: image.convert("RGB"),
            T.ToTensor(),
            T.Normalize(OPENAI_MEAN, OPENAI_STD),
        ]
    )
    mlp = nn.Sequential(
        nn.Linear(32, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
    )
    state = torch.load(tiny_head_file, map_location="cpu", weights_only=True)
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    mlp.eval()

    def normalized(a):
        l2 = np.atleast_1d(np.linalg.norm(a, 2, -1))
        l2[l2 == 0] = 1
        return a / np.expand_dims(l2, -1)

    @torch.no_grad()
    def score(pil_image):
        image = transform(pil_image).unsqueeze(0)
        features = clip.get_image_features(pixel_values=image).pooler_output
        embedding = normalized(features.cpu().numpy())
        return float(mlp(torch.from_numpy(embedding).float())[0, 0])

    return score


def test_contract(reward):
    report = check_reward(reward, batch_size=3, image_size=64, check_input_validation=True)
    assert report["grad_norm"] > 0


def test_parity_with_reference_predictor(reward, reference, smooth_image):
    """Same score as the reference on every size; the wrong pre-processings would not pass."""
    from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize_shortest_side

    model = reward.model

    def variant(tensor, antialias, rounding):
        x = resize_shortest_side(tensor, 224, antialias=antialias).clamp(0, 1)
        x = normalize(center_crop(x, 224, rounding=rounding), CLIP_MEAN, CLIP_STD)
        e = torch.nn.functional.normalize(model.clip(pixel_values=x).image_embeds, dim=-1)
        return float(model.head(e)[0, 0])

    diffs, no_antialias, floor_crop = [], [], []
    for h, w in SIZES:
        pil, tensor = smooth_image(h, w, seed=h + w)
        expected = reference(pil)
        with torch.no_grad():
            diffs.append(abs(float(reward(tensor, ["ignored"])[0]) - expected))
            no_antialias.append(abs(variant(tensor, False, "round") - expected))
            if 701 in (h, w):  # odd crop margin: round-half-even and floor differ by one pixel
                floor_crop.append(abs(variant(tensor, True, "floor") - expected))
    print(
        f"aesthetic parity: max |diff| {max(diffs):.2e}; controls: no antialias {max(no_antialias):.2e}, "
        f"floor crop {max(floor_crop):.2e}"
    )
    assert max(diffs) < PARITY_TOL, diffs
    assert max(no_antialias) > PARITY_TOL and max(floor_crop) > PARITY_TOL


def test_open_clip_backend_matches_open_clip_preprocessing(tiny_open_clip_dir, tiny_head_file, smooth_image):
    """backend="open_clip" (OpenAI's own ViT-L/14 weights are open_clip's ``ViT-L-14:openai``):
    same score as open_clip's own ``preprocess_val`` on the PIL image + ``encode_image`` + the head."""
    import numpy as np
    import open_clip

    spec = f"local-dir:{tiny_open_clip_dir}"
    reward = draftsdk.get_reward("aesthetic", backend="open_clip", path=spec, head=str(tiny_head_file))
    model, _, preprocess_val = open_clip.create_model_and_transforms(spec)
    model.eval()
    head = reward.model.head  # the head itself is covered by the transformers parity test
    diffs = []
    for h, w in SIZES[::2]:
        pil, tensor = smooth_image(h, w, seed=h * w)
        with torch.no_grad():
            features = model.encode_image(preprocess_val(pil).unsqueeze(0)).numpy()
            embedding = features / np.linalg.norm(features, axis=-1, keepdims=True)
            expected = float(head(torch.from_numpy(embedding))[0, 0])
            diffs.append(abs(float(reward(tensor, ["x"])[0]) - expected))
    print(f"aesthetic open_clip parity: max |diff| {max(diffs):.2e}")
    assert max(diffs) < PARITY_TOL, diffs

    pixels = tensor.clone().requires_grad_(True)
    draftsdk.get_reward(
        "aesthetic", backend="open_clip", path=spec, head=str(tiny_head_file), grad_checkpointing=True
    )(pixels, ["x"]).sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'<architecture>:<pretrained tag or file>'"):
        draftsdk.get_reward("aesthetic", backend="open_clip", path="ViT-L-14", head=str(tiny_head_file))


def test_gradient_reaches_pixels(reward, smooth_image):
    _, tensor = smooth_image(512, 768, seed=3)
    pixels = tensor.repeat(2, 1, 1, 1).requires_grad_(True)
    reward(pixels, ["a", "b"]).sum().backward()
    assert torch.isfinite(pixels.grad).all()
    assert pixels.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in reward.model.clip.parameters())
    assert not reward.model.clip.training and not reward.model.head.training


def test_scores_in_realistic_range_with_published_gain(reward, affine_of, smooth_image):
    """Rescaled to |w| = 18, b = 5.24 (the published head's affine map), the tiny predictor scores
    smooth images inside the 1..10 rating scale, with a spread, like the real one."""
    state = {f"layers.{k}": v for k, v in reward.model.head.state_dict().items()}
    w, b = affine_of(state)
    assert float(w.norm()) == pytest.approx(18.0, rel=1e-4) and b == pytest.approx(5.24, abs=1e-4)
    images = torch.cat([smooth_image(256, 384, seed=s)[1] for s in range(6)])
    with torch.no_grad():
        scores = reward(images, [""] * 6)
    print("aesthetic tiny scores:", [round(x, 2) for x in scores.tolist()])
    assert scores.min() > 1.0 and scores.max() < 10.0
    assert scores.max() - scores.min() > 0.05


def test_grad_checkpointing_and_dtype(tiny_clip_dir, tiny_head_file, reward, smooth_image):
    _, tensor = smooth_image(300, 701, seed=5)
    plain = tensor.clone().requires_grad_(True)
    base = reward(plain, ["x"])
    base.sum().backward()
    ckpt_reward = draftsdk.get_reward(
        "aesthetic", path=str(tiny_clip_dir), head=str(tiny_head_file), grad_checkpointing=True
    )
    pixels = tensor.clone().requires_grad_(True)
    out = ckpt_reward(pixels, ["x"])
    out.sum().backward()
    torch.testing.assert_close(out, base)
    torch.testing.assert_close(pixels.grad, plain.grad)

    bf16 = draftsdk.get_reward("aesthetic", path=str(tiny_clip_dir), head=str(tiny_head_file), dtype="bfloat16")
    low = bf16(tensor, ["x"])
    assert low.dtype == torch.float32 and abs(float(low[0]) - float(base[0].detach())) < 0.3


def test_missing_weights_offline_is_one_line(tiny_head_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("aesthetic", path="no-such-org/no-such-clip", head=str(tiny_head_file))
    message = str(err.value)
    assert "\n" not in message and "'no-such-org/no-such-clip'" in message and "path=" in message
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("aesthetic", head="no-such-org/no-such-repo/head.pth")
    message = str(err.value)
    assert "\n" not in message and "'no-such-org/no-such-repo/head.pth'" in message and "head=" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draftsdk.get_reward("aesthetic", path="./missing/clip", head=str(tiny_head_file))
    with pytest.raises(FileNotFoundError) as err:  # open_clip's OpenAI weights, not cached here
        draftsdk.get_reward("aesthetic", backend="open_clip", head=str(tiny_head_file))
    assert "\n" not in str(err.value) and "'ViT-L-14:openai'" in str(err.value)


def test_wrong_architecture_is_named(tmp_path, tiny_clip_dir, tiny_head_file, head_builder):
    # a head for 768-d embeddings (ViT-L/14) with a CLIP that gives 32-d embeddings
    big_head = head_builder(tmp_path / "head768.pth", dim=768)
    with pytest.raises(ValueError, match=r"expects 768-d CLIP embeddings but CLIP .* gives 32-d"):
        draftsdk.get_reward("aesthetic", path=str(tiny_clip_dir), head=str(big_head))
    # not a head at all
    with pytest.raises(ValueError, match="is not a LAION aesthetic-predictor head"):
        draftsdk.get_reward("aesthetic", path=str(tiny_clip_dir), head=str(tiny_clip_dir / "model.safetensors"))
    # CLIP weights that do not fit their config.json
    import json
    import shutil

    bad = tmp_path / "bad-clip"
    shutil.copytree(tiny_clip_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["vision_config"]["hidden_size"] = 64
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit the CLIP architecture") as err:
        draftsdk.get_reward("aesthetic", path=str(bad), head=str(tiny_head_file))
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_bad_inputs(reward):
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        reward(torch.full((1, 3, 32, 32), 200.0), ["x"])
    with pytest.raises(ValueError, match="pass one prompt per image"):
        reward(torch.rand(2, 3, 32, 32), ["x"])
    with pytest.raises(ValueError, match="crop_rounding"):
        draftsdk.get_reward("aesthetic", crop_rounding="ceil")


def test_docs_example_runs(tiny_clip_dir, tiny_head_file):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DRAFTSDK_EXAMPLE_AESTHETIC_CLIP": str(tiny_clip_dir),
        "DRAFTSDK_EXAMPLE_AESTHETIC_HEAD": str(tiny_head_file),
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "aesthetic_usage.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.strip().splitlines())
    scores = eval(lines["aesthetic"])  # noqa: S307 - our own printed list
    assert len(scores) == 2 and all(0.0 < s < 11.0 for s in scores)
    assert float(lines["pixel grad norm"]) > 0
    assert "'aesthetic', 'brightness'" in lines["total"]
