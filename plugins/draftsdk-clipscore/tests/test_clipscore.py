"""draftsdk-clipscore: contract, parity with open_clip's and transformers' own PIL pre-processing, the
max(..., 0) clamp, batch independence, loading paths and their one-line errors, the docs example.

Offline, on tiny random CLIPs (see conftest.py) loaded through the plugin's real loading code:
open_clip (model-config JSON + checkpoint, or a pretrained tag served from a fake Hugging Face cache)
and transformers (``CLIPModel.from_pretrained`` + tokenizer + image-processor config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import draftsdk
from draftsdk.testing import check_reward

ROOT = Path(__file__).resolve().parents[3]
# (H, W): 701 gives odd crop margins; 1024 px (SDXL) downscales 4.6x, where a missing antialias shows most
SIZES = [(512, 512), (512, 768), (768, 512), (300, 701), (701, 300), (1024, 1024), (1024, 1536)]
PROMPTS = ["a watercolour painting of a fox", "a photo of a red bicycle leaning on a wall"]
W = 2.5

# Parity tolerance on the score (2.5 x cosine; the tiny models score about 0.3..1.2). Measured max
# |ours - reference| over SIZES (torch 2.14.1, torchvision 0.29.1, open_clip 3.3.0, transformers 5.24
# PIL backend, Pillow 13, CPU, one thread): 2.0e-4 through open_clip's own transform, 3.3e-4 through
# CLIPImageProcessorPil, 1.5e-4 with a tag's squash/bilinear settings (first three sizes), i.e. at most
# 1.3e-4 in cosine. The references resize with PIL on uint8 (one level of rounding, ~0.3/255 on
# average); the torch path stays in float. 6e-4 leaves ~2x margin and is still below what a wrong
# pre-processing costs in the same tests: no antialias 9.3e-4 (open_clip) / 2.4e-3 (transformers), the
# other library's crop rounding on an odd margin 2.6e-3 / 2.0e-3, GELU instead of QuickGELU 6.2e-3.
PARITY_TOL = 6e-4


def _clip_score(cosine: float, w: float = W) -> float:
    """CLIPScore as jmhessel/clipscore computes it: ``w * np.clip(sum(image * candidate), 0, None)``."""
    return w * max(cosine, 0.0)


@pytest.fixture(scope="module")
def reward(tiny_open_clip):
    config, checkpoint = tiny_open_clip
    return draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint))


@pytest.fixture(scope="module")
def hf_reward(tiny_hf_clip):
    return draftsdk.get_reward("clipscore", hf_model=str(tiny_hf_clip))


def _open_clip_reference(name: str, pretrained: str, **kwargs):
    """open_clip's own evaluation path: ``create_model_and_transforms`` (weights + the PIL transform
    ``Resize(224, BICUBIC) -> CenterCrop(224) -> ToTensor -> Normalize`` or the tag's settings),
    ``encode_image`` / ``encode_text`` with ``normalize=True``, one image with its own prompt."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, **kwargs)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)

    @torch.no_grad()
    def cosine(pil_image, prompt):
        image = model.encode_image(preprocess(pil_image).unsqueeze(0), normalize=True)
        text = model.encode_text(tokenizer([prompt]), normalize=True)
        return float((image * text).sum())

    return cosine


@pytest.fixture(scope="module")
def reference(tiny_open_clip):
    config, checkpoint = tiny_open_clip
    return _open_clip_reference(config.stem, str(checkpoint))


@pytest.fixture(scope="module")
def hf_reference(tiny_hf_clip):
    """transformers' path with the PIL image processor (CLIPProcessor as in transformers 4.x; in 5.x
    ``backend="pil"``): processor -> get_image_features / get_text_features -> L2 norm -> dot."""
    from transformers import AutoProcessor, CLIPModel

    processor = AutoProcessor.from_pretrained(tiny_hf_clip, backend="pil")
    model = CLIPModel.from_pretrained(tiny_hf_clip).eval()

    @torch.no_grad()
    def cosine(pil_image, prompt):
        pixels = processor(images=[pil_image], return_tensors="pt")["pixel_values"]
        tokens = processor(text=[prompt], padding=True, truncation=True, max_length=77, return_tensors="pt")
        image = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text = torch.nn.functional.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
        return float((image * text).sum())

    return cosine


def _variant(scorer, tensor, prompt, **changes):
    """The plugin's score with one pre-processing setting changed (the negative controls)."""
    import dataclasses

    from draftsdk_clipscore._model import preprocess

    settings = dataclasses.replace(scorer.settings, **{k: v for k, v in changes.items() if k != "antialias"})
    x = preprocess(tensor, settings)
    if changes.get("antialias") is False:  # the same resize without antialias
        from draftsdk.image_ops import center_crop, normalize, resize_shortest_side

        x = resize_shortest_side(tensor, settings.size, antialias=False).clamp(0, 1)
        x = normalize(center_crop(x, settings.size, rounding=settings.crop_rounding), settings.mean, settings.std)
    with torch.no_grad():
        image = torch.nn.functional.normalize(scorer._image_features(x).float(), dim=-1)
        return _clip_score(float((image * scorer.encode_texts([prompt])).sum()))


def _parity(reward, reference, smooth_image, other_rounding):
    diffs, no_antialias, other_crop = [], [], []
    for i, (h, w) in enumerate(SIZES):
        pil, tensor = smooth_image(h, w, seed=h + w)
        prompt = PROMPTS[i % 2]
        expected = _clip_score(reference(pil, prompt))
        with torch.no_grad():
            diffs.append(abs(float(reward(tensor, [prompt])[0]) - expected))
        no_antialias.append(abs(_variant(reward.scorer, tensor, prompt, antialias=False) - expected))
        if 701 in (h, w):
            other_crop.append(abs(_variant(reward.scorer, tensor, prompt, crop_rounding=other_rounding) - expected))
    return max(diffs), max(no_antialias), max(other_crop)


def test_contract(reward, hf_reward):
    for r in (reward, hf_reward):
        report = check_reward(r, batch_size=3, image_size=64, check_input_validation=True)
        assert report["grad_norm"] > 0 and all(s > 0 for s in report["scores"])


def test_parity_with_open_clip_transform(reward, reference, smooth_image):
    diff, no_antialias, floor_crop = _parity(reward, reference, smooth_image, other_rounding="floor")
    print(f"clipscore open_clip parity: max |diff| {diff:.2e}; controls: no antialias {no_antialias:.2e}, "
          f"floor crop {floor_crop:.2e}")
    assert diff < PARITY_TOL
    assert no_antialias > PARITY_TOL and floor_crop > PARITY_TOL
    assert reward.scorer.settings.crop_rounding == "round" and reward.scorer.quick_gelu is False


def test_parity_with_transformers_processor(hf_reward, hf_reference, smooth_image):
    diff, no_antialias, round_crop = _parity(hf_reward, hf_reference, smooth_image, other_rounding="round")
    print(f"clipscore transformers parity: max |diff| {diff:.2e}; controls: no antialias {no_antialias:.2e}, "
          f"round crop {round_crop:.2e}")
    assert diff < PARITY_TOL
    assert no_antialias > PARITY_TOL and round_crop > PARITY_TOL
    assert hf_reward.scorer.settings.crop_rounding == "floor"


def test_score_is_w_times_the_cosine_clamped_at_zero(reward, tiny_open_clip, smooth_image):
    images = torch.cat([smooth_image(256, 320, seed=s)[1] for s in (1, 2)])
    with torch.no_grad():
        cosine = reward.cosine(images, PROMPTS)
        scores = reward(images, PROMPTS)
    assert bool((cosine > 0).all())  # the aligned tiny model: positive cosines, like a real CLIP
    torch.testing.assert_close(scores, W * cosine)
    config, checkpoint = tiny_open_clip
    plain = draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint), w=1.0)
    torch.testing.assert_close(plain(images, PROMPTS), cosine)

    # the same CLIP with the text embedding negated: every cosine is negative, every score exactly 0
    flipped = draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint))
    flipped.scorer.clip.text_projection.data.neg_()
    pixels = images.clone().requires_grad_(True)
    out = flipped(pixels, PROMPTS)
    torch.testing.assert_close(flipped.cosine(images, PROMPTS).detach(), -cosine)
    assert out.tolist() == [0.0, 0.0]
    out.sum().backward()
    assert pixels.grad is not None and float(pixels.grad.abs().max()) == 0.0  # max(., 0) has no gradient below 0


def test_batch_independence_and_each_image_with_its_own_prompt(reward, reference, smooth_image):
    pils, tensors = zip(*(smooth_image(384, 512, seed=s) for s in (7, 8)))
    with torch.no_grad():
        batch = reward(torch.cat(tensors), PROMPTS)
        swapped = reward(torch.cat(tensors), PROMPTS[::-1])
        singles = torch.cat([reward(t, [p]) for t, p in zip(tensors, PROMPTS)])
    expected = torch.tensor([_clip_score(reference(p, t)) for p, t in zip(pils, PROMPTS)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)
    assert torch.allclose(batch, expected, atol=PARITY_TOL)
    assert not torch.allclose(batch, swapped, atol=1e-3)


def test_prefix_is_put_before_each_prompt(reward, tiny_open_clip):
    config, checkpoint = tiny_open_clip
    paper = draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint), prefix="A photo depicts")
    images = torch.rand(2, 3, 64, 64)
    assert paper.texts(["a cat", "a dog"]) == ["A photo depicts a cat", "A photo depicts a dog"]
    with torch.no_grad():
        torch.testing.assert_close(paper(images, ["a cat", "a dog"]), reward(images, paper.texts(["a cat", "a dog"])))
        assert not torch.allclose(paper(images, ["a cat", "a dog"]), reward(images, ["a cat", "a dog"]))


def test_gradient_reaches_pixels_and_models_are_frozen(reward, hf_reward, smooth_image):
    _, tensor = smooth_image(512, 768, seed=3)
    for r in (reward, hf_reward):
        pixels = tensor.repeat(2, 1, 1, 1).requires_grad_(True)
        r(pixels, PROMPTS).sum().backward()
        assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
        assert not any(p.requires_grad for p in r.scorer.clip.parameters())
        assert not r.scorer.clip.training


def test_grad_checkpointing_and_bfloat16(reward, hf_reward, tiny_open_clip, tiny_hf_clip, smooth_image):
    config, checkpoint = tiny_open_clip
    _, tensor = smooth_image(300, 701, seed=5)
    pairs = [
        (reward, draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint), grad_checkpointing=True)),
        (hf_reward, draftsdk.get_reward("clipscore", hf_model=str(tiny_hf_clip), grad_checkpointing=True)),
    ]
    scores = []
    for plain, ckpt in pairs:
        grads, outs = [], []
        for r in (plain, ckpt):
            pixels = tensor.clone().requires_grad_(True)
            out = r(pixels, PROMPTS[:1])
            out.sum().backward()
            grads.append(pixels.grad)
            outs.append(out.detach())
        torch.testing.assert_close(outs[0], outs[1])
        torch.testing.assert_close(grads[0], grads[1])
        scores.append(float(outs[0][0]))
    low = draftsdk.get_reward("clipscore", model=str(config), pretrained=str(checkpoint), dtype="bf16")
    out = low(tensor, PROMPTS[:1])
    assert out.dtype == torch.float32 and abs(float(out[0]) - scores[0]) < 0.02


def test_long_and_unicode_prompts(reward, hf_reward):
    prompts = ["ünïcödé café, 東京の夜景 " * 3, "a " + "very " * 200 + "long prompt"]  # > 77 tokens: truncated
    for r in (reward, hf_reward):
        out = r(torch.rand(2, 3, 64, 64), prompts)
        assert out.shape == (2,) and torch.isfinite(out).all()


def _fake_hub_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay files out as huggingface_hub's cache does after a download of ``repo``."""
    commit = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())


def test_pretrained_tag_through_the_hf_cache(tiny_open_clip, tmp_path, monkeypatch, smooth_image):
    """A tag resolves like open_clip's own: weights from the HF cache, the tag's mean/std, interpolation and
    resize mode, and QuickGELU forced when the tag was trained with it (open_clip itself only warns)."""
    import huggingface_hub.constants
    import open_clip
    from open_clip.pretrained import _pcfg

    config, checkpoint = tiny_open_clip
    gelu = tmp_path / "tiny-clipscore-gelu.json"  # the same architecture without QuickGELU, like ViT-L-14.json
    gelu.write_text(json.dumps({**json.loads(config.read_text()), "quick_gelu": False}))
    name = gelu.stem
    tags = {
        "tiny_openai": _pcfg(hf_hub="tiny-org/tiny-clipscore/", quick_gelu=True, mean=(0.5, 0.5, 0.5),
                             std=(0.25, 0.25, 0.25), interpolation="bilinear", resize_mode="squash"),
        "not_cached": _pcfg(hf_hub="tiny-org/absent/"),
    }
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name, tags)
    _fake_hub_cache(tmp_path / "hub", "tiny-org/tiny-clipscore", {"open_clip_model.safetensors": checkpoint})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    tagged = draftsdk.get_reward("clipscore", model=str(gelu), pretrained="tiny-openai")
    settings = tagged.scorer.settings
    assert tagged.scorer.quick_gelu is True
    assert (settings.resize_mode, settings.interpolation, settings.mean) == ("squash", "bilinear", (0.5, 0.5, 0.5))
    assert "model='" in repr(tagged) and "pretrained='tiny-openai'" in repr(tagged)

    ref = _open_clip_reference(name, "tiny-openai", force_quick_gelu=True)
    with pytest.warns(UserWarning, match="QuickGELU mismatch"):  # what open_clip gives without the override:
        ref_gelu = _open_clip_reference(name, "tiny-openai")  # a warning, and GELU
    diffs, gelu_diffs = [], []
    for i, (h, w) in enumerate(SIZES[:3]):
        pil, tensor = smooth_image(h, w, seed=h + w)
        with torch.no_grad():
            got = float(tagged(tensor, [PROMPTS[i % 2]])[0])
        diffs.append(abs(got - _clip_score(ref(pil, PROMPTS[i % 2]))))
        gelu_diffs.append(abs(got - _clip_score(ref_gelu(pil, PROMPTS[i % 2]))))
    print(f"clipscore tag (squash, bilinear) parity: max |diff| {max(diffs):.2e}; control: GELU {max(gelu_diffs):.2e}")
    assert max(diffs) < PARITY_TOL and max(gelu_diffs) > PARITY_TOL

    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("clipscore", model=str(gelu), pretrained="not-cached")
    message = str(err.value)
    assert "\n" not in message and f"'{name}:not-cached'" in message and "HF_HUB_OFFLINE=1 is set" in message
    assert "pretrained='/path/to/open_clip_model.safetensors'" in message


def test_default_weights_are_not_downloaded_offline(monkeypatch, tmp_path):
    """get_reward("clipscore") = ViT-L-14 / openai; with an empty cache and HF_HUB_OFFLINE it fails in one
    line before building the 430M-parameter model."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("clipscore")
    message = str(err.value)
    assert "\n" not in message and "'ViT-L-14:openai'" in message and "pretrained=" in message
    with pytest.raises(FileNotFoundError) as err:
        draftsdk.get_reward("clipscore", hf_model="openai/clip-vit-large-patch14")
    message = str(err.value)
    assert "\n" not in message and "'openai/clip-vit-large-patch14'" in message and "hf_model=" in message


def test_option_errors_are_one_line(tiny_open_clip, tiny_hf_clip, tmp_path):
    config, checkpoint = tiny_open_clip
    ok = dict(model=str(config), pretrained=str(checkpoint))
    cases = [
        (dict(hf_model=str(tiny_hf_clip), model="ViT-B-32"), ValueError, "pass either hf_model="),
        (dict(hf_model=str(tiny_hf_clip), pretrained="openai"), ValueError, "pass either hf_model="),
        ({**ok, "w": 0}, ValueError, "w must be a positive number (CLIPScore uses 2.5), got 0"),
        ({**ok, "w": float("nan")}, ValueError, "w must be a positive number"),
        ({**ok, "w": "2.5"}, ValueError, "w must be a positive number"),
        ({**ok, "prefix": None}, ValueError, "prefix must be a string"),
        ({**ok, "dtype": "int8"}, ValueError, "dtype must be one of"),
        (dict(model="ViT-L-15", pretrained=str(checkpoint)), ValueError, "unknown open_clip architecture 'ViT-L-15'"),
        (dict(model="hf-hub:laion/CLIP-ViT-B-32"), ValueError, "names with a schema"),
        (dict(model="./no/such.json", pretrained=str(checkpoint)), FileNotFoundError, "model config './no/such.json' does not exist"),
        (dict(model=str(config), pretrained="laion9000"), ValueError, "neither a pretrained tag of 'tiny-clipscore-vit' (tags: none)"),
        (dict(model="ViT-L-14", pretrained="opneai"), ValueError, "(tags: openai, laion400m_e31"),
        (dict(model=str(config), pretrained="./no/such.safetensors"), FileNotFoundError, "does not exist; pass pretrained="),
        (dict(hf_model="./no/such/folder"), FileNotFoundError, "does not exist; pass hf_model="),
    ]
    for options, kind, fragment in cases:
        with pytest.raises(kind) as err:
            draftsdk.get_reward("clipscore", **options)
        message = str(err.value)
        assert "\n" not in message and message.startswith("clipscore: "), message
        assert fragment in message, (options, message)
    assert "such as 'ViT-L-1" in _message(dict(model="ViT-L-15"))

    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"embed_dim": 32}))
    assert "needs the keys embed_dim, vision_cfg and text_cfg" in _message(dict(model=str(bad_json), pretrained=str(checkpoint)))
    wider = tmp_path / "tiny-clipscore-wide.json"
    wider.write_text(json.dumps({**json.loads(config.read_text()), "embed_dim": 48}))
    message = _message(dict(model=str(wider), pretrained=str(checkpoint)))
    assert "does not fit the open_clip architecture 'tiny-clipscore-wide'" in message and "size mismatch" in message
    not_clip = tmp_path / "not-clip"
    not_clip.mkdir()
    (not_clip / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "is a 'bert' model, not a CLIPModel" in _message(dict(hf_model=str(not_clip)))


def _message(options: dict) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        draftsdk.get_reward("clipscore", **options)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_inputs(reward):
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        reward(torch.full((1, 3, 32, 32), 255.0), ["x"])
    with pytest.raises(ValueError, match="pass one prompt per image"):
        reward(torch.rand(2, 3, 32, 32), ["only one"])


def test_docs_example_runs(tiny_open_clip, tiny_hf_clip, monkeypatch, capsys):
    """docs/examples/clipscore_usage.py, run as __main__ in this process (the imports are already done)."""
    import runpy

    config, checkpoint = tiny_open_clip
    script = ROOT / "docs" / "examples" / "clipscore_usage.py"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DRAFTSDK_EXAMPLE_CLIPSCORE_MODEL", str(config))
    monkeypatch.setenv("DRAFTSDK_EXAMPLE_CLIPSCORE_PRETRAINED", str(checkpoint))
    monkeypatch.setenv("DRAFTSDK_EXAMPLE_CLIPSCORE_HF", str(tiny_hf_clip))
    monkeypatch.setattr(sys, "argv", [str(script)])
    runpy.run_path(str(script), run_name="__main__")
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    scores = eval(lines["clipscore"])  # noqa: S307 - our own printed list
    cosines = eval(lines["cosine"])  # noqa: S307
    assert len(scores) == 2 and all(0.0 <= s <= 2.5 for s in scores)
    assert scores == pytest.approx([2.5 * max(c, 0.0) for c in cosines], abs=1e-3)
    assert float(lines["pixel grad norm"]) > 0
    assert len(eval(lines["clipscore (transformers)"])) == 2  # noqa: S307
    assert "'brightness', 'clipscore'" in lines["total"]
