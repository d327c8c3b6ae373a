"""The built-in JPEG (in)compressibility rewards: values equal an independent PIL encoding, they rank
flat above noisy images, they have no gradient, DRaFT refuses them and DDPO trains on them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import draftsdk
from draftsdk import TrainConfig, Trainer
from draftsdk.default_plugins.jpeg import JpegCompressibility, JpegIncompressibility, jpeg_sizes_kb
from draftsdk.errors import DraftError
from draftsdk.testing import check_reward, smooth_image, tiny_pipeline

NAMES = ("jpeg-compressibility", "jpeg-incompressibility")


def _pil_kb(pil: Image.Image, quality: int = 95) -> float:
    """The reference: ddpo-pytorch's measurement, PIL ``save(format="JPEG", quality=95)``, bytes / 1000."""
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return len(buffer.getvalue()) / 1000


def _noise(seed: int, size: int = 64) -> tuple[Image.Image, torch.Tensor]:
    array = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(array), torch.from_numpy(array).permute(2, 0, 1).float().div(255).unsqueeze(0)


def test_registered_as_builtins_without_gradient():
    infos = {info.name: info for info in draftsdk.list_rewards()}
    for name in NAMES:
        assert infos[name].plugin == "draftsdk"
        assert infos[name].differentiable is False
        assert "kB" in infos[name].description
    assert isinstance(draftsdk.get_reward("jpeg-compressibility"), JpegCompressibility)
    assert draftsdk.get_reward("jpeg-incompressibility", quality=80).quality == 80


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    report = check_reward(draftsdk.get_reward(name), batch_size=3, image_size=48, check_input_validation=True)
    assert report["grad_norm"] is None and len(report["scores"]) == 3


@pytest.mark.parametrize("quality", [95, 50])
def test_values_equal_an_independent_pil_encoding(quality):
    pils, tensors = zip(*(smooth_image(h, w, seed=s) for s, (h, w) in enumerate([(64, 64), (48, 80), (33, 71)])))
    for pil, tensor in zip(pils, tensors):
        expected = _pil_kb(pil, quality)
        up = draftsdk.get_reward("jpeg-incompressibility", quality=quality)(tensor, ["x"])
        down = draftsdk.get_reward("jpeg-compressibility", quality=quality)(tensor, ["x"])
        assert up.dtype == torch.float32 and up.shape == (1,)
        assert float(up[0]) == pytest.approx(expected, rel=1e-6)
        assert float(down[0]) == pytest.approx(-expected, rel=1e-6)
    # a batch is scored image by image: same numbers as one at a time
    noise = [_noise(s) for s in range(3)]
    batch = torch.cat([t for _, t in noise])
    expected = [_pil_kb(p, quality) for p, _ in noise]
    assert jpeg_sizes_kb(batch, quality) == pytest.approx(expected, rel=1e-9)
    assert draftsdk.get_reward("jpeg-incompressibility", quality=quality)(batch, ["a", "b", "c"]).tolist() == pytest.approx(expected, rel=1e-6)


def test_pixels_are_rounded_to_uint8_like_ddpo():
    pil, tensor = _noise(7)
    nudged = (tensor + 0.4 / 255 * (torch.rand_like(tensor) - 0.5)).clamp(0, 1)  # stays within half a level
    reward = JpegIncompressibility()
    assert float(reward(nudged, ["x"])[0]) == pytest.approx(_pil_kb(pil), rel=1e-6)
    half = tensor.half()  # k/255 in float16 still rounds back to k
    assert float(reward(half, ["x"])[0]) == pytest.approx(_pil_kb(pil), rel=1e-6)


def test_flat_images_compress_better_than_noise():
    flat = torch.full((1, 3, 64, 64), 0.5)
    _, smooth = smooth_image(64, 64, seed=3)
    _, noise = _noise(3)
    images, prompts = torch.cat([flat, smooth, noise]), ["a", "b", "c"]
    down = draftsdk.get_reward("jpeg-compressibility")(images, prompts)
    up = draftsdk.get_reward("jpeg-incompressibility")(images, prompts)
    assert down[0] > down[1] > down[2]  # compressibility: flat > smooth > noise
    assert up[2] > up[1] > up[0]
    assert torch.equal(up, -down) and bool((up > 0).all())
    assert float(up[2]) > 5 * float(up[0])  # 64x64 noise at quality 95 is several times a flat image's file
    assert float(JpegIncompressibility(quality=30)(noise, ["x"])[0]) < float(up[2])  # lower quality, smaller file


def test_no_gradient_and_prompts_are_ignored():
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = JpegCompressibility()(images, ["a cat", "a dog"])
    assert out.grad_fn is None and not out.requires_grad
    assert torch.equal(out, JpegCompressibility()(images.detach(), ["", "something else"]))


def test_bad_options_and_inputs_are_one_line_errors():
    for bad in (0, 101, 95.0, "high", True):
        with pytest.raises(ValueError) as err:
            draftsdk.get_reward("jpeg-compressibility", quality=bad)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("jpeg-compressibility: quality must be an integer from 1 to 100 (DDPO uses 95)")
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        JpegIncompressibility()(torch.full((1, 3, 8, 8), 255.0), ["x"])
    with pytest.raises(ValueError, match="pass one prompt per image"):
        JpegIncompressibility()(torch.rand(2, 3, 8, 8), ["x"])
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        JpegIncompressibility()(torch.rand(1, 4, 8, 8), ["x"])


def _config(tmp_path, **overrides):
    base = dict(steps=1, batch_size=2, num_inference_steps=4, learning_rate=1e-3, output_dir=tmp_path / "run",
                progress=False, tensorboard=False, eval_every=1000, save_every=1000, eval_seeds=[0], device="cpu",
                mixed_precision="no")
    return TrainConfig(**{**base, **overrides})


def test_draft_variants_refuse_it_naming_the_reward(tmp_path):
    with pytest.raises(DraftError) as err:
        Trainer(tiny_pipeline(), "jpeg-compressibility", _config(tmp_path, variant="draft-k", k=2))
    message = str(err.value)
    assert "\n" not in message
    assert "reward term(s) jpeg-compressibility are not differentiable" in message
    assert "variant='draft-k'" in message and "variant='ddpo'" in message


def test_ddpo_trains_on_it(tmp_path):
    trainer = Trainer(tiny_pipeline(), "jpeg-compressibility", _config(tmp_path, variant="ddpo", eta=1.0, steps=2))
    result = trainer.fit(["a cat", "a dog"])
    assert result.steps_done == 2 and result.lora_path.is_file()
    rewards = [row["reward/mean"] for row in result.history]
    assert len(rewards) == 2 and all(r < 0 for r in rewards)  # minus a size in kB
    assert all(np.isfinite(row["loss"]) for row in result.history)
