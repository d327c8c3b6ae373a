"""draftsdk-owlvit against tiny random-weight detectors loaded through the real loading code (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import draftsdk
from draftsdk.testing import check_reward
from draftsdk_owlvit import OwlViTReward

ROOT = Path(__file__).resolve().parents[3]


def _reference_max_score(processor, model, image, queries):
    """The transformers path: processor (PIL in) -> model -> post_process_object_detection -> best box."""
    enc = processor(text=[queries], images=image, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    result = processor.image_processor.post_process_object_detection(out, threshold=0.0)[0]
    return float(result["scores"].max())


def _to_pil(x):
    from PIL import Image

    return Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@pytest.mark.parametrize("shape", [(48, 80), (96, 128), (100, 70)])
def test_max_mode_matches_processor_model_postprocess(owlvit_dir, make_images, shape):
    from transformers import OwlViTForObjectDetection, OwlViTProcessor

    model = OwlViTForObjectDetection.from_pretrained(owlvit_dir).eval()
    processor = OwlViTProcessor.from_pretrained(owlvit_dir)
    reward = OwlViTReward(query="a strawberry", path=owlvit_dir, device="cpu")
    x = make_images(1, *shape, seed=sum(shape))
    x = (x * 255).round() / 255  # exactly the 8-bit image the PIL path sees
    with torch.no_grad():
        ours = float(reward(x, ["a fruit bowl"])[0])

    # Float path: the processor's own resize/normalise on the float image (no 8-bit rounding).
    enc = processor(text=[["a strawberry"]], images=x[0], do_rescale=False, return_tensors="pt")
    assert torch.allclose(reward.preprocess(x), enc["pixel_values"], atol=1e-5)
    with torch.no_grad():
        out = model(**enc)
    float_ref = float(processor.image_processor.post_process_object_detection(out, threshold=0.0)[0]["scores"].max())
    assert abs(ours - float_ref) < 1e-5

    # PIL path: the processor resizes the uint8 image and rounds to 8 bits again (one grey level,
    # 0.015 after normalisation). Measured over 20 seeds x 3 sizes: |diff| <= 4.9e-3 (torchvision
    # backend) and <= 6.5e-3 (PIL backend) on scores ~0.8; 1e-2 leaves a margin.
    pil_ref = _reference_max_score(processor, model, _to_pil(x), ["a strawberry"])
    assert 0.05 < pil_ref < 0.999  # the tiny detector's scores are not saturated
    assert abs(ours - pil_ref) < 1e-2


def test_preprocessor_config_is_read(owlvit_dir, tmp_path, make_images):
    """Input size and mean/std come from the checkpoint's processor config (here 80 px on a 64 px model)."""
    from transformers import OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    model = OwlViTForObjectDetection.from_pretrained(owlvit_dir).eval()
    folder = tmp_path / "owlvit-80px"
    model.save_pretrained(folder)
    size = {"height": 80, "width": 80}
    image_processor = OwlViTImageProcessor(size=size, crop_size=size, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    processor = OwlViTProcessor(image_processor=image_processor, tokenizer=OwlViTProcessor.from_pretrained(owlvit_dir).tokenizer)
    processor.save_pretrained(folder)

    reward = OwlViTReward(query="a strawberry", path=folder, device="cpu")
    assert reward.input_size == (80, 80) and reward.mean == (0.5,) * 3 and reward.interpolate_pos
    x = make_images(1, 48, 72, seed=5)
    enc = processor(text=[["a strawberry"]], images=x[0], do_rescale=False, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, interpolate_pos_encoding=True)
        assert out.logits.shape[1] == 25 == reward.box_scores(x, ["x"]).shape[1]  # (80 / 16)^2 boxes
        ref = processor.image_processor.post_process_object_detection(out, threshold=0.0)[0]["scores"].max()
        assert float(reward(x, ["x"])[0]) == pytest.approx(float(ref), abs=1e-5)


def test_owlv2_matches_its_processor(owlv2_dir, make_images):
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    model = Owlv2ForObjectDetection.from_pretrained(owlv2_dir).eval()
    processor = Owlv2Processor.from_pretrained(owlv2_dir)
    reward = OwlViTReward(query=["a strawberry", "a cherry"], path=owlv2_dir, device="cpu")
    assert reward.arch == "owlv2"
    for shape in [(48, 80), (128, 96)]:  # upsampling (no blur) and downsampling (Gaussian anti-aliasing)
        x = (make_images(1, *shape, seed=3) * 255).round() / 255
        # OWLv2's processor works in float after /255, so the PIL path agrees to float precision.
        ref = _reference_max_score(processor, model, _to_pil(x), ["a strawberry", "a cherry"])
        with torch.no_grad():
            assert float(reward(x, ["x"])[0]) == pytest.approx(ref, abs=1e-5)


def test_contract_gradients_and_add_remove_signs(owlvit_dir, make_images):
    add = OwlViTReward(query="a strawberry", path=owlvit_dir, device="cpu")
    remove = OwlViTReward(query="a strawberry", mode="remove", path=owlvit_dir, device="cpu")
    report = check_reward(add, batch_size=2, image_size=40, check_input_validation=True)
    assert report["grad_norm"] > 0
    check_reward(remove, batch_size=2, image_size=40, check_input_validation=True)

    x = make_images(2, 40, 56, seed=1).requires_grad_(True)
    up = add(x, ["a", "b"])
    (g_add,) = torch.autograd.grad(up.sum(), x)
    down = remove(x, ["a", "b"])
    (g_remove,) = torch.autograd.grad(down.sum(), x)
    assert torch.allclose(up, -down)
    assert g_add.abs().sum() > 0 and torch.allclose(g_add, -g_remove)
    # One small step along the gradient moves each reward the intended way.
    with torch.no_grad():
        step = 0.5 / g_add.abs().max()
        assert (add((x + step * g_add).clamp(0, 1), ["a", "b"]) > up).all()
        assert (remove((x + step * g_remove).clamp(0, 1), ["a", "b"]) > down).all()


def test_reductions_and_query_sources(owlvit_dir, make_images):
    x = make_images(2, 64, 64, seed=2)
    prompts = ["a strawberry", "a cherry"]
    base = OwlViTReward(query="a strawberry", path=owlvit_dir, device="cpu")
    with torch.no_grad():
        scores = base.box_scores(x, prompts)  # (B, 16): the post-processing scores of every box
        best = base(x, prompts)
        assert scores.shape == (2, 16) and torch.allclose(best, scores.max(dim=1).values)

        soft = OwlViTReward(query="a strawberry", reduce="softmax", temperature=0.05, path=owlvit_dir, device="cpu")
        s = soft(x, prompts)
        assert (scores.mean(dim=1) <= s + 1e-6).all() and (s <= best + 1e-6).all()
        sharp = OwlViTReward(query="a strawberry", reduce="softmax", temperature=1e-4, path=owlvit_dir, device="cpu")
        assert torch.allclose(sharp(x, prompts), best, atol=3e-3)

        count = OwlViTReward(query="a strawberry", reduce="count", path=owlvit_dir, device="cpu")
        assert torch.allclose(count(x, prompts), scores.sum(dim=1))
        target = OwlViTReward(query="a strawberry", reduce="count", target_count=2, path=owlvit_dir, device="cpu")
        assert torch.allclose(target(x, prompts), -((scores.sum(dim=1) - 2) ** 2))

        # {prompt} templates: each image is scored against its own prompt.
        templated = OwlViTReward(query="{prompt}", path=owlvit_dir, device="cpu")
        cherry = OwlViTReward(query="a cherry", path=owlvit_dir, device="cpu")
        assert torch.allclose(templated(x, prompts), torch.stack([best[0], cherry(x, prompts)[1]]), atol=1e-6)

        # Several queries: a box scores its best query (post_process_object_detection's labels).
        both = OwlViTReward(query=["a strawberry", "a cherry"], path=owlvit_dir, device="cpu")
        assert torch.allclose(both(x, prompts), torch.maximum(best, cherry(x, prompts)))
        det = both.detect(x, prompts, threshold=0.0)
        assert det[0]["boxes"].shape == (16, 4) and set(det[0]["labels"].tolist()) <= {0, 1}
        assert float(det[0]["scores"].max()) == pytest.approx(float(both(x, prompts)[0]), abs=1e-6)


def test_registry_dtype_and_device_handling(owlvit_dir, make_images):
    names = {r.name: r for r in draftsdk.list_rewards()}
    assert names["owlvit"].plugin == "draftsdk-owlvit" and names["owlvit"].differentiable is True
    reward = draftsdk.get_reward("owlvit", query="a strawberry", path=str(owlvit_dir), device="cpu")
    assert isinstance(reward, OwlViTReward)
    assert all(not p.requires_grad for p in reward.model.parameters()) and not reward.model.training
    x = make_images(2, 32, 32)
    bf16 = OwlViTReward(query="a strawberry", path=owlvit_dir, device="cpu", dtype="bfloat16")
    out = bf16(x, ["a", "b"])
    assert out.dtype == torch.float32 and torch.allclose(out, reward(x, ["a", "b"]), atol=0.05)


def test_errors_are_one_line_and_say_what_to_do(owlvit_dir, tmp_path):
    def message(**options):
        with pytest.raises((ValueError, OSError)) as err:
            OwlViTReward(**{"path": owlvit_dir, "device": "cpu", **options})
        text = str(err.value)
        assert "\n" not in text
        return text

    assert message().startswith("owlvit: no query given; pass query='a strawberry'")
    assert "mode must be 'add' or 'remove', got 'delete'" in message(query="x", mode="delete")
    assert "reduce must be one of 'max', 'softmax', 'count'" in message(query="x", reduce="mean")
    assert "target_count needs reduce='count'" in message(query="x", target_count=3)
    assert "use mode='add'" in message(query="x", reduce="count", target_count=1, mode="remove")
    assert "at most 16" in message(query="a very long query " * 6)

    from transformers import CLIPConfig, CLIPModel, OwlViTConfig, OwlViTModel

    clip = tmp_path / "clip"
    CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )).save_pretrained(clip)
    assert message(query="x", path=clip) == (
        f"owlvit: '{clip}' holds a 'clip' model (CLIPModel), not an OWL-ViT detector; pass an OWL-ViT or OWLv2 "
        "object-detection checkpoint such as google/owlvit-base-patch32"
    )
    no_heads = tmp_path / "owlvit-no-heads"
    OwlViTModel(OwlViTConfig(
        text_config=dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )).save_pretrained(no_heads)
    assert "holds a 'owlvit' model (OwlViTModel) without the detection heads" in message(query="x", path=no_heads)
    assert "cannot read an OWL-ViT checkpoint from" in message(query="x", path=tmp_path)
    hub = message(query="x", path="draftsdk-tests/no-such-owlvit")  # HF_HUB_OFFLINE=1: fails fast, no network
    assert hub.startswith("owlvit: cannot load 'draftsdk-tests/no-such-owlvit' from the Hugging Face hub")
    assert "hf download draftsdk-tests/no-such-owlvit" in hub


def test_import_and_listing_load_no_model_code():
    code = (
        "import sys, draftsdk, draftsdk_owlvit; names = [r.name for r in draftsdk.list_rewards()]; "
        "heavy = sorted(m for m in ('torch', 'torchvision', 'transformers', 'safetensors') if m in sys.modules); "
        "print(('owlvit' in names), heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True []"


def test_docs_example_runs_offline(owlvit_dir):
    script = ROOT / "docs" / "examples" / "owlvit_usage.py"
    env = {**os.environ, "DRAFTSDK_EXAMPLE_OWLVIT": str(owlvit_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines() if ": " in line)
    add, remove = json.loads(lines["add"]), json.loads(lines["remove"])
    assert len(add) == 2 and all(0 < a < 1 for a in add)
    assert remove == pytest.approx([-a for a in add], abs=1e-6)
    assert "owlvit" in lines["terms"] and "brightness" in lines["terms"]
    assert json.loads(lines["recipes"]) == ["remove", "add"]  # both TOML recipes validate as TrainConfig
