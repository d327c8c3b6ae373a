"""The digits world's flow model (``draftsdk:digits-flow``): shipped weights, sampling fidelity against
diffusers, sample quality under the shipped classifier, and a shortened demo that raises the reward."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

import draftsdk  # noqa: E402
from draftsdk.cli import main  # noqa: E402
from draftsdk.demo import flow_model as fm  # noqa: E402
from draftsdk.demo import model as dm  # noqa: E402
from draftsdk.demo.classifier import load_classifier  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    return draftsdk.load_pipeline(fm.MODEL_NAME)


def test_shipped_weights_load_as_a_small_sd3_pipeline(pipe) -> None:
    from diffusers import StableDiffusion3Pipeline

    family = draftsdk.models.family_for(pipe)
    assert family.name == "sd3" and draftsdk.models.family_for_model(fm.MODEL_NAME).name == "sd3"
    assert isinstance(pipe, StableDiffusion3Pipeline)
    assert pipe.text_encoder_3 is None
    assert family.max_sequence_length(pipe) == fm.T5_TOKENS  # one zero "T5" token, as trained
    assert pipe.vae.config.shift_factor == 0.0
    assert pipe.vae.config.scaling_factor == pytest.approx(dm.load_pipeline().vae.config.scaling_factor)
    assert pipe.scheduler.config.shift == fm.SHIFT
    n_transformer = sum(p.numel() for p in pipe.transformer.parameters())
    assert 2e5 < n_transformer < 1e6
    size = sum(f.stat().st_size for f in fm.pipeline_path().rglob("*.safetensors"))
    assert size < 5e6
    assert family.default_size(pipe) == (dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    assert family.latent_shape(pipe, 2, dm.IMAGE_SIZE, dm.IMAGE_SIZE) == (2, dm.LATENT_CHANNELS, dm.LATENT_SIZE, dm.LATENT_SIZE)
    lora_targets = {name.rsplit(".", 1)[-1] for name, _ in pipe.transformer.named_modules()}
    assert {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"} <= lora_targets


def test_pretrain_log_reports_the_shipped_run() -> None:
    log = json.loads((dm.weights_dir() / "flow_pretrain_log.json").read_text())
    assert log["samples"]["classifier_accuracy"] >= 0.8
    assert log["samples"]["num_inference_steps"] == fm.DEFAULT_STEPS
    assert log["samples"]["guidance_scale"] == fm.DEFAULT_GUIDANCE
    assert log["flow"]["loss_curve"][-1]["loss"] < log["flow"]["loss_curve"][0]["loss"] / 3
    assert log["wall_time"]["total_s"] < 15 * 60


@pytest.mark.parametrize("guidance", [fm.DEFAULT_GUIDANCE, 1.0])
def test_sampling_matches_the_diffusers_pipeline(pipe, guidance) -> None:
    prompts = [dm.prompt_for(3), dm.prompt_for(7), ""]
    sampler = draftsdk.sampling.Sampler(pipe, num_inference_steps=fm.DEFAULT_STEPS)
    latents = sampler.initial_noise(len(prompts), torch.Generator().manual_seed(0))
    ref = pipe(prompts, num_inference_steps=fm.DEFAULT_STEPS, guidance_scale=guidance, latents=latents,
               output_type="pt", **fm.pipeline_kwargs()).images
    ours = draftsdk.sample(pipe, prompts, num_inference_steps=fm.DEFAULT_STEPS, guidance_scale=guidance,
                           latents=latents).images
    assert ours.shape == ref.shape == (3, 3, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    assert float(ref.std()) > 0.1  # real digits, not a blank page
    assert (ours - ref).abs().max() <= 1e-4


def test_classifier_recognises_samples_of_the_base_model(pipe) -> None:
    n = 4
    prompts = [dm.prompt_for(d) for d in range(10) for _ in range(n)]
    images = draftsdk.sample(pipe, prompts, num_inference_steps=fm.DEFAULT_STEPS, guidance_scale=fm.DEFAULT_GUIDANCE,
                             generator=torch.Generator().manual_seed(123)).images
    with torch.no_grad():
        read = load_classifier().log_probs(images).argmax(-1)
    labels = torch.arange(10).repeat_interleave(n)
    assert (read == labels).float().mean() >= 0.8
    assert len(set(read.tolist())) >= 8  # the prompt steers the digit: not one digit for every prompt


def test_short_flow_demo_raises_the_digit_target_reward(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--model", fm.MODEL_NAME, "--steps", "10", "--output", str(out)]) == 0
    assert "draftsdk:digits-flow" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == fm.MODEL_NAME and summary["variant"] == "draft-lv"
    assert summary["steps"] == 10 and summary["reward_queries"] == 10 * 8 * 3  # batch 8, LV: n + 1 = 3 images each
    assert summary["target_probability_before"] < 0.05
    assert summary["reward_after"] > summary["reward_before"] + 0.5
    assert summary["target_probability_after"] > summary["target_probability_before"]
    assert (out / "lora.safetensors").is_file() and (out / "before_after.png").is_file()


def test_demo_rejects_an_unknown_model(tmp_path, capsys) -> None:
    assert main(["demo", "--model", "draftsdk:nope", "--steps", "1", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown demo model 'draftsdk:nope'; available: draftsdk:digits, draftsdk:digits-flow" in err


def test_pretrain_flow_quick_writes_loadable_weights(tmp_path) -> None:
    from draftsdk.demo import pretrain_flow

    pretrain_flow.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    pipe = draftsdk.load_pipeline(str(tmp_path / fm.FOLDER))
    assert draftsdk.models.family_for(pipe).name == "sd3" and pipe.vae.config.shift_factor == 0.0
    images = draftsdk.sample(pipe, [dm.prompt_for(1)], num_inference_steps=2).images
    assert images.shape == (1, 3, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
    log = json.loads((tmp_path / "flow_pretrain_log.json").read_text())
    assert log["budget"]["steps"] == 3 and log["samples"]["samples"] == 20
    assert 0.0 <= log["samples"]["classifier_accuracy"] <= 1.0
