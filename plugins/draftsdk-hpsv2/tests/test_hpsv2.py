"""draftsdk-hpsv2: contract, parity with HPSv2's own scoring code, loading errors, the docs example.

Offline, on a tiny random open_clip CLIP saved like ``HPS_v2_compressed.pt`` (see conftest.py) and
loaded through the plugin's real loading code (open_clip architecture + ``load_checkpoint``).
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
SIZES = [(512, 512), (512, 768), (768, 512), (300, 701), (701, 300)]  # (H, W)
PROMPTS = ["a watercolour painting of a fox", "a photo of a red bicycle leaning on a wall"]

# HPSv2 pre-processes the *float tensor* (ToTensor before ResizeMaxSize), so the torch-ops path does
# the same arithmetic: measured max |ours - reference| = 6e-8 on cosine scores (float32 round-off
# from batching). 1e-5 is 100x that and 1000x below what skipping the antialias changes (checked).
PARITY_TOL = 1e-5


@pytest.fixture(scope="module")
def reward(tiny_hps):
    config, checkpoint = tiny_hps
    return draftsdk.get_reward("hpsv2", path=str(checkpoint), model=str(config))


@pytest.fixture(scope="module")
def reference(tiny_hps):
    """HPSv2's ``hpsv2.img_score.score`` on one image: ``preprocess_val`` (RGB -> ToTensor ->
    ResizeMaxSize(224, fill=0) -> MaskAwareNormalize, as vendored in hpsv2/src/open_clip/transform.py),
    the strict ``load_state_dict(checkpoint['state_dict'])``, ``model(image, text)`` with
    normalised features and ``diagonal(image_features @ text_features.T)``."""
    import open_clip
    import torchvision.transforms.functional as TF
    from torchvision.transforms import Compose, InterpolationMode, Normalize, ToTensor

    config, checkpoint = tiny_hps
    name = config.stem

    class ResizeMaxSize(torch.nn.Module):  # hpsv2/src/open_clip/transform.py:26-49, verbatim logic
        def __init__(self, max_size, interpolation=InterpolationMode.BICUBIC, fill=0, antialias="default"):
            super().__init__()
            self.max_size, self.interpolation, self.fill, self.antialias = max_size, interpolation, fill, antialias

        def forward(self, img):
            if isinstance(img, torch.Tensor):
                height, width = img.shape[1:]
            else:
                width, height = img.size
            scale = self.max_size / float(max(height, width))
            if scale != 1.0:
                new_size = tuple(round(dim * scale) for dim in (height, width))
                if self.antialias == "default":  # HPSv2 passes no antialias: torchvision's default decides
                    img = TF.resize(img, new_size, self.interpolation)
                else:
                    img = TF.resize(img, new_size, self.interpolation, antialias=self.antialias)
                pad_h = self.max_size - new_size[0]
                pad_w = self.max_size - new_size[1]
                img = TF.pad(img, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=self.fill)
            return img

    model = open_clip.create_model(name, pretrained=None, output_dict=True)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu")["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)

    @torch.no_grad()
    def score(pil_image, prompt, antialias="default"):
        preprocess_val = Compose(
            [lambda im: im.convert("RGB"), ToTensor(), ResizeMaxSize(224, fill=0, antialias=antialias),
             Normalize(OPENAI_MEAN, OPENAI_STD)]
        )
        image = preprocess_val(pil_image).unsqueeze(0)
        outputs = model(image, tokenizer([prompt]))
        logits_per_image = outputs["image_features"] @ outputs["text_features"].T
        return float(torch.diagonal(logits_per_image)[0])

    return score


def test_contract(reward):
    report = check_reward(reward, batch_size=3, image_size=64, check_input_validation=True)
    assert report["grad_norm"] > 0


def test_parity_with_hpsv2_score(reward, reference, smooth_image, tiny_hps):
    diffs, no_antialias = [], []
    for i, (h, w) in enumerate(SIZES):
        pil, tensor = smooth_image(h, w, seed=h + w)
        prompt = PROMPTS[i % 2]
        expected = reference(pil, prompt)
        with torch.no_grad():
            diffs.append(abs(float(reward(tensor, [prompt])[0]) - expected))
        no_antialias.append(abs(reference(pil, prompt, antialias=False) - expected))
    print(f"hpsv2 parity: max |diff| {max(diffs):.2e}; control (no antialias) {max(no_antialias):.2e}")
    assert max(diffs) < PARITY_TOL, diffs
    assert max(no_antialias) > 10 * PARITY_TOL

    # antialias=False reproduces torchvision < 0.17 (how 2023 HPSv2 numbers were likely computed)
    config, checkpoint = tiny_hps
    legacy = draftsdk.get_reward("hpsv2", path=str(checkpoint), model=str(config), antialias=False)
    pil, tensor = smooth_image(512, 768, seed=1280)
    with torch.no_grad():
        got = float(legacy(tensor, [PROMPTS[0]])[0])
    assert abs(got - reference(pil, PROMPTS[0], antialias=False)) < PARITY_TOL


def test_batch_scores_each_image_with_its_own_prompt(reward, reference, smooth_image):
    pils, tensors = zip(*(smooth_image(384, 512, seed=s) for s in (7, 8)))
    with torch.no_grad():
        batch = reward(torch.cat(tensors), PROMPTS)
    expected = [reference(p, t) for p, t in zip(pils, PROMPTS)]
    assert torch.allclose(batch, torch.tensor(expected), atol=PARITY_TOL)
    assert 0.0 < float(batch.abs().max()) <= 1.0  # a cosine, no logit scale


def test_gradient_reaches_pixels_and_model_is_frozen(reward, smooth_image):
    _, tensor = smooth_image(512, 768, seed=3)
    pixels = tensor.repeat(2, 1, 1, 1).requires_grad_(True)
    reward(pixels, PROMPTS).sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in reward.model.clip.parameters())
    assert not reward.model.clip.training


def test_grad_checkpointing_gives_the_same_gradient(reward, tiny_hps, smooth_image):
    config, checkpoint = tiny_hps
    ckpt = draftsdk.get_reward("hpsv2", path=str(checkpoint), model=str(config), grad_checkpointing=True)
    _, tensor = smooth_image(300, 701, seed=5)
    grads = []
    for r in (reward, ckpt):
        pixels = tensor.clone().requires_grad_(True)
        r(pixels, PROMPTS[:1]).sum().backward()
        grads.append(pixels.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_long_and_unicode_prompts(reward):
    prompts = ["ünïcödé café, 東京の夜景 " * 3, "a " + "very " * 200 + "long prompt"]  # > 77 tokens: truncated
    out = reward(torch.rand(2, 3, 64, 64), prompts)
    assert out.shape == (2,) and torch.isfinite(out).all()


def _fake_hub_cache(cache: Path, files: dict[str, Path]) -> None:
    """Lay files out as huggingface_hub's cache does for xswu/HPSv2 (what a download leaves)."""
    commit = "0" * 40
    repo = cache / "models--xswu--HPSv2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())


def test_default_weights_come_from_the_hf_cache_per_version(tiny_hps, tmp_path, monkeypatch):
    import huggingface_hub.constants

    config, checkpoint = tiny_hps
    _fake_hub_cache(tmp_path / "hub", {"HPS_v2.1_compressed.pt": checkpoint})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    v21 = draftsdk.get_reward("hpsv2", version="v2.1", model=str(config))
    assert v21.path == "xswu/HPSv2/HPS_v2.1_compressed.pt"
    assert torch.isfinite(v21(torch.rand(1, 3, 32, 32), ["x"])).all()

    with pytest.raises(FileNotFoundError) as err:  # v2.0 is not in this cache
        draftsdk.get_reward("hpsv2", model=str(config))
    message = str(err.value)
    assert "\n" not in message
    assert "'xswu/HPSv2/HPS_v2_compressed.pt'" in message and "path='/path/to/HPS_v2_compressed.pt'" in message


def test_wrong_architecture_and_bad_files_are_named(tiny_hps, hps_builder, tmp_path):
    config, checkpoint = tiny_hps
    other_config, other_checkpoint = hps_builder(
        tmp_path / "other",
        config={
            "embed_dim": 48,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
        name="tiny-hps-other",
    )
    with pytest.raises(ValueError) as err:
        draftsdk.get_reward("hpsv2", path=str(other_checkpoint), model=str(config))
    message = str(err.value)
    assert "\n" not in message and "does not fit the open_clip architecture 'tiny-hps-vit'" in message
    assert "size mismatch" in message

    with pytest.raises(ValueError, match="unknown open_clip architecture 'ViT-Z-99'"):
        draftsdk.get_reward("hpsv2", path=str(checkpoint), model="ViT-Z-99")
    with pytest.raises(ValueError, match="version must be one of"):
        draftsdk.get_reward("hpsv2", version="v3")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draftsdk.get_reward("hpsv2", path="./no/such/HPS_v2_compressed.pt", model=str(config))

    import collections

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "extra": collections.Counter(a=1)}, unsafe)  # needs a non-weights unpickle
    with pytest.raises(ValueError, match="as weights only"):
        draftsdk.get_reward("hpsv2", path=str(unsafe), model=str(config))


def test_bad_inputs(reward):
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        reward(torch.full((1, 3, 32, 32), 255.0), ["x"])
    with pytest.raises(ValueError, match="pass one prompt per image"):
        reward(torch.rand(2, 3, 32, 32), ["only one"])


def test_docs_example_runs(tiny_hps):
    config, checkpoint = tiny_hps
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DRAFTSDK_EXAMPLE_HPSV2": str(checkpoint),
        "DRAFTSDK_EXAMPLE_HPSV2_MODEL": str(config),
    }
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "hpsv2_usage.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.strip().splitlines())
    scores = eval(lines["hpsv2"])  # noqa: S307 - our own printed list
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores)
    assert float(lines["pixel grad norm"]) > 0
    assert "'brightness', 'hpsv2'" in lines["total"]
