"""The embedded digits world: shipped pipeline, demo rewards, classifier, and the pretraining script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

from draftsdk.demo import model as dm  # noqa: E402
from draftsdk.demo.classifier import CLASSIFIER_FILE, load_classifier  # noqa: E402
from draftsdk.demo.data import load_splits  # noqa: E402
from draftsdk.demo.rewards import DigitBoldness, DigitTarget  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    return load_splits()


@pytest.fixture(scope="module")
def target8() -> DigitTarget:
    return DigitTarget(target=8)


def test_shipped_pipeline_loads_and_generates() -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(dm.pipeline_path()))
    pipe.set_progress_bar_config(disable=True)
    prompts = [dm.prompt_for(3), dm.prompt_for(7)]
    images = pipe(prompts, num_inference_steps=4, guidance_scale=dm.DEFAULT_GUIDANCE,
                  generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (2, 3, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    assert images.min() >= 0.0 and images.max() <= 1.0
    lora_targets = {name.rsplit(".", 1)[-1] for name, _ in pipe.unet.named_modules() if ".attn2." in name}
    assert {"to_q", "to_k", "to_v"} <= lora_targets
    assert any(name.endswith("attn2.to_out.0") for name, _ in pipe.unet.named_modules())


@pytest.mark.parametrize("make", [lambda: DigitTarget(target=8), DigitBoldness])
def test_rewards_shape_finite_and_differentiable(make) -> None:
    reward = make()
    assert reward.differentiable is True and isinstance(reward.name, str)
    images = torch.rand(4, 3, 32, 32, requires_grad=True)  # not the model's 16 px: resizing must be differentiable
    scores = reward(images, ["a handwritten digit 3"] * 4)
    assert scores.shape == (4,)
    assert torch.isfinite(scores).all()
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_digit_target_scores_real_digits(splits, target8: DigitTarget) -> None:
    _, held_out = splits
    images = held_out.rgb()
    probs = target8(images, [""] * len(images)).exp()
    is8 = torch.from_numpy(held_out.labels == 8)
    assert probs[is8].mean() > 0.85
    assert probs[~is8].mean() < 0.05


def test_classifier_held_out_accuracy(splits) -> None:
    _, held_out = splits
    with torch.no_grad():
        pred = load_classifier().log_probs(held_out.rgb()).argmax(-1).numpy()
    assert (pred == held_out.labels).mean() >= 0.9


@pytest.mark.parametrize("bad", [-1, 10, 2.5, "8", None, True])
def test_digit_target_rejects_bad_target(bad) -> None:
    with pytest.raises(ValueError, match="target"):
        DigitTarget(target=bad)


def test_rewards_module_imports_no_torch() -> None:
    code = "import sys, draftsdk.demo.rewards; sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pretrain_quick_writes_loadable_weights(tmp_path) -> None:
    pytest.importorskip("open_clip")  # the tokenizer is built from its BPE file
    from draftsdk.demo import pretrain

    torch.set_num_threads(2)
    try:
        pretrain.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
        # the script's thread count and deterministic mode do not leak into the caller
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(1)
    assert json.loads((tmp_path / "pretrain_log.json").read_text())["threads"] == 1
    pipe = dm.load_pipeline(path=tmp_path / "pipeline")
    images = pipe([dm.prompt_for(1)], num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    assert load_classifier(tmp_path / CLASSIFIER_FILE).log_probs(images).shape == (1, 10)
    assert (tmp_path / "pretrain_log.json").is_file()


def test_judge_on_real_digits(splits) -> None:
    from draftsdk.demo.evaluate import DigitJudge

    _, held_out = splits
    judge = DigitJudge()
    assert judge.held_out_accuracy >= 0.95
    assert (judge.predict(held_out.rgb()) == held_out.labels).mean() == pytest.approx(judge.held_out_accuracy)
    for ratio in judge.likeness(held_out.rgb()).values():
        assert ratio == pytest.approx(1.0)
    noise = torch.rand(8, 3, 16, 16)
    assert min(judge.likeness(noise).values()) > 2.0
