"""draftsdk-adversarial against a random-weight ResNet-50 saved as a local file (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import draftsdk
from draftsdk.testing import check_reward
from draftsdk_adversarial import AdversarialReward, describe_resnet, imagenet_categories, resolve_targets

ROOT = Path(__file__).resolve().parents[3]
CATS = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]


def _smooth(batch, height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(batch, 3, 6, 8, generator=g), size=(height, width), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round() / 255  # 8-bit values, so the PIL path sees the same image


@pytest.mark.parametrize("weights, shape", [("IMAGENET1K_V2", (300, 400)), ("IMAGENET1K_V1", (233, 301))])
def test_matches_torchvision_transforms(resnet_model, resnet_pth, weights, shape):
    from PIL import Image
    from torchvision.models import ResNet50_Weights

    reward = AdversarialReward(target="tabby", weights=weights, path=resnet_pth, device="cpu")
    transform = getattr(ResNet50_Weights, weights).transforms()
    assert (reward.resize_size, reward.crop_size) == ((232 if weights.endswith("V2") else 256), 224)
    x = _smooth(1, *shape, seed=shape[0])
    with torch.no_grad():
        ours = reward(x, ["a bear"])
        # Tensor path: weights.transforms() on the float tensor runs the same torch kernels: bit-identical.
        assert torch.equal(reward.preprocess(x), transform(x))
        ref_logits = resnet_model(transform(x))
        assert torch.allclose(ours, ref_logits.log_softmax(dim=1)[:, 281], atol=1e-5)
        # PIL path: PIL's own 8-bit bilinear resize. Measured over 3 seeds x 4 sizes x both weight
        # enums: logits differ by <= 1.1e-3, log-probabilities by <= 3.6e-4; 2e-3 leaves a margin.
        pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        pil_logits = resnet_model(transform(pil).unsqueeze(0))
    assert float((ours - pil_logits.log_softmax(dim=1)[:, 281]).abs().max()) < 2e-3


def test_scores_margin_groups_and_contract(resnet_model, resnet_pth):
    x = _smooth(2, 64, 80, seed=1)
    prompts = ["a bear", "a dog"]
    single = AdversarialReward(target="tabby", path=resnet_pth, device="cpu")
    group = AdversarialReward(target=CATS, path=resnet_pth, device="cpu")
    margin = AdversarialReward(target=281, margin=True, path=resnet_pth, device="cpu")
    with torch.no_grad():
        logits = single.logits(x)
        logp = logits.log_softmax(dim=1)
        assert torch.allclose(single(x, prompts), logp[:, 281])
        assert torch.allclose(group(x, prompts), logp[:, 281:286].exp().sum(dim=1).log(), atol=1e-5)
        others = torch.cat([logits[:, :281], logits[:, 282:]], dim=1)
        assert torch.allclose(margin(x, prompts), logits[:, 281] - others.max(dim=1).values)

    report = check_reward(group, batch_size=2, image_size=32, check_input_validation=True)
    assert report["grad_norm"] > 0
    # Gradient ascent on the pixels makes the images more "cat" for the classifier.
    pixels = x.clone().requires_grad_(True)
    before = group(pixels, prompts)
    (grad,) = torch.autograd.grad(before.sum(), pixels)
    with torch.no_grad():
        after = group((x + 0.02 * grad.sign()).clamp(0, 1), prompts)
    assert (after > before.detach()).all()


def test_class_names_resolve_offline():
    names = imagenet_categories()
    assert len(names) == 1000 and names[281] == "tabby"
    assert resolve_targets("tabby", names) == [281]
    assert resolve_targets("Tiger Cat", names) == [282]
    assert resolve_targets(["tabby", 282, "283", "tabby"], names) == [281, 282, 283]
    with pytest.raises(ValueError) as err:
        resolve_targets("cat", names)
    message = str(err.value)
    assert message.startswith(
        "adversarial: unknown ImageNet class 'cat'; classes containing 'cat': 'tiger cat' (282), 'Persian cat' (283), "
        "'Siamese cat' (284), 'Egyptian cat' (285)"
    )
    assert "; close matches: 'crate' (519), " in message  # difflib's spelling neighbours
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"unknown ImageNet class 'tabbby'; close matches: 'tabby' \(281\)"):
        resolve_targets("tabbby", names)
    with pytest.raises(ValueError, match="out of range 0-999"):
        resolve_targets(1000, names)
    with pytest.raises(ValueError, match="no target given"):
        resolve_targets(None, names)


def test_weight_files_and_errors(resnet_model, resnet_pth, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    def message(**options):
        with pytest.raises((ValueError, OSError)) as err:
            AdversarialReward(**{"target": "tabby", "device": "cpu", **options})
        assert "\n" not in str(err.value)
        return str(err.value)

    state = resnet_model.state_dict()

    def same_weights(reward):
        loaded = reward.model.state_dict()
        return all(torch.equal(loaded[k], v) for k, v in state.items())

    st = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in state.items() if "num_batches_tracked" not in k}, str(st))  # timm-like
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    for path in (st, wrapped):
        assert same_weights(AdversarialReward(target="tabby", path=path, device="cpu"))

    small = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), small)
    assert message(path=small).startswith(f"adversarial: '{small}' holds resnet18, not a torchvision ResNet-50")
    ten = tmp_path / "resnet50-10.pth"
    torch.save({**state, "fc.weight": state["fc.weight"][:10], "fc.bias": state["fc.bias"][:10]}, ten)
    assert f"'{ten}' holds resnet50 with 10 classes" in message(path=ten)
    pickled = tmp_path / "whole-model.pt"
    torch.save(resnet18(weights=None), pickled)
    assert "torch.load(weights_only=True) refuses" in message(path=pickled)
    assert message(path=tmp_path / "nope.pth") == f"adversarial: weights file '{tmp_path / 'nope.pth'}' does not exist"
    assert "weights must be 'IMAGENET1K_V2'" in message(weights="IMAGENET1K_V3")
    assert "dtype must be one of" in message(path=resnet_pth, dtype="int8")

    # No path and nothing in torch.hub's cache: offline, a one-line error says how to pass path=.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = message()
    assert text.startswith("adversarial: ResNet-50 weights IMAGENET1K_V2 are not cached and HF_HUB_OFFLINE is set; ")
    assert "download https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in text
    assert "pass path='resnet50-11ad3fa6.pth'" in text

    # A file in torch.hub's cache is used without any download.
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "resnet50-11ad3fa6.pth")
    assert same_weights(AdversarialReward(target="tabby", device="cpu"))


def test_describe_resnet_names_architectures():
    from torchvision.models import resnet34, resnext50_32x4d, wide_resnet50_2

    with torch.device("meta"):  # shapes only, no random init
        assert describe_resnet(resnet34().state_dict()) == "resnet34"
        assert describe_resnet(wide_resnet50_2().state_dict()) == "a wide ResNet (resnet50 layout, width 128)"
        assert describe_resnet(resnext50_32x4d().state_dict()) == "a ResNeXt (resnet50 layout)"
    assert describe_resnet({"features.0.weight": torch.zeros(1)}).startswith("not a ResNet state dict")


def test_registry_dtype_and_frozen(resnet_pth):
    info = {r.name: r for r in draftsdk.list_rewards()}["adversarial"]
    assert info.plugin == "draftsdk-adversarial" and info.differentiable is True
    reward = draftsdk.get_reward("adversarial", target="tabby", path=str(resnet_pth), device="cpu", dtype="bfloat16")
    assert all(not p.requires_grad for p in reward.model.parameters()) and not reward.model.training
    assert next(reward.model.parameters()).dtype == torch.bfloat16
    out = reward(_smooth(1, 32, 32), ["a"])
    assert out.dtype == torch.float32 and out.shape == (1,) and torch.isfinite(out).all()


def test_import_and_listing_load_no_model_code():
    code = (
        "import sys, draftsdk, draftsdk_adversarial; names = [r.name for r in draftsdk.list_rewards()]; "
        "heavy = sorted(m for m in ('torch', 'torchvision', 'transformers', 'safetensors') if m in sys.modules); "
        "print(('adversarial' in names), heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True []"


def test_docs_example_runs_offline(resnet_pth):
    script = ROOT / "docs" / "examples" / "adversarial_usage.py"
    env = {**os.environ, "DRAFTSDK_EXAMPLE_RESNET50": str(resnet_pth), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines() if ": " in line)
    assert json.loads(lines["targets"]) == [281, 282, 283, 284, 285]
    scores = json.loads(lines["log p(cat)"])
    assert len(scores) == 3 and all(-10 < s < 0 for s in scores)
    assert lines["error"].startswith("adversarial: unknown ImageNet class 'cat'")
    assert "adversarial" in lines["terms"] and "brightness" in lines["terms"]
    assert json.loads(lines["recipe"]) == CATS  # the TOML recipe validates as a TrainConfig
