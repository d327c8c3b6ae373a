"""Third-party model families and variants, registered through the plugin hooks, end to end."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from pydantic import BaseModel, Field

import draftsdk
from draftsdk.extensions import UnknownNameError
from draftsdk.models.sd import StableDiffusion
from draftsdk.plugins import list_plugins, register_plugin
from draftsdk.testing import tiny_pipeline
from draftsdk.variants import RewardBackprop, Rollout, get_variant


class GreyPipeline(StableDiffusionPipeline):
    """A pipeline class diffusers does not know: only a plugin family can load it."""


class GreyFamily(StableDiffusion):
    """SD that decodes to grey images (a family that changes the decode)."""

    name = "sd-grey"
    description = "grey Stable Diffusion"
    pipeline_classes = ("GreyPipeline",)
    default_steps = 3
    default_guidance = 1.0

    def pipeline_class(self):
        return GreyPipeline

    def decode(self, pipeline, latents, *, height, width):
        return super().decode(pipeline, latents, height=height, width=width).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)


class EarlyOptions(BaseModel):
    early_step: int = Field(0, ge=0)


class EarlyX0(RewardBackprop):
    """Gradient at one early (layout-setting) step, scored on its one-step x0 estimate."""

    name = "early-x0"
    Options = EarlyOptions

    def check(self, num_steps):
        if self.options.early_step >= num_steps:
            raise ValueError(f"early_step: {self.options.early_step} must be < num_inference_steps={num_steps}")

    def rollout(self, ctx, prompts, noise):
        s, j = ctx.sampler, self.options.early_step
        cond = ctx.encode(prompts)
        latents = s.denoise(noise, cond, stop=j, generator=ctx.noise_gen)
        out = s.model_output(latents, j, cond, grad=True)
        with torch.enable_grad():
            x0 = s.step(j, latents, out).pred_x0
        return Rollout(s.decode(x0, grad=True), list(prompts), 1)


class ThirdParty:
    @draftsdk.hookimpl
    def register_model_families(self, register):
        register(GreyFamily)

    @draftsdk.hookimpl
    def register_variants(self, register):
        register(EarlyX0)


def _grey_pipe():
    return GreyPipeline(**tiny_pipeline().components)


def test_a_plugin_family_loads_samples_and_trains(tmp_path):
    register_plugin(ThirdParty(), name="third-party")
    assert "sd-grey" in draftsdk.models.list_families()
    folder = tmp_path / "grey"
    _grey_pipe().save_pretrained(folder)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "GreyPipeline"
    pipe = draftsdk.load_pipeline(str(folder))
    assert type(pipe) is GreyPipeline and draftsdk.models.family_for(pipe).name == "sd-grey"

    sampler = draftsdk.sampling.Sampler(pipe)
    assert (sampler.num_steps, sampler.guided) == (3, False)  # the family's defaults
    images = draftsdk.sample(pipe, ["a cat"]).images
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])

    cfg = draftsdk.TrainConfig(variant="draft-k", k=2, steps=2, batch_size=2, learning_rate=3e-2, output_dir=tmp_path / "run",
                               progress=False, eval_seeds=[0, 1])
    result = draftsdk.Trainer(str(folder), "brightness", cfg).fit(["a cat", "a dog"])
    assert result.evals[-1]["eval/mean"] > result.evals[0]["eval/mean"]
    assert draftsdk.lora.read_lora(result.lora_path).info["family"] == "sd-grey"


def test_an_object_no_family_fits_is_described_by_the_first_registered_family():
    class EarlyGrey(GreyFamily):
        name = "a-grey"  # sorts before "sd": ties must follow registration order, not names
        description = "grey SD"

    class Plugin:
        @draftsdk.hookimpl
        def register_model_families(self, register):
            register(EarlyGrey)

    register_plugin(Plugin(), name="early-grey")
    assert draftsdk.models.list_families()[0] == "a-grey"
    with pytest.raises(TypeError, match=r"^object is not a Stable Diffusion 1.x/2.x pipeline: missing unet"):
        draftsdk.models.family_for(object())


def test_a_plugin_variant_is_one_class_with_its_own_options(tmp_path):
    register_plugin(ThirdParty(), name="third-party")
    assert get_variant("early-x0") is EarlyX0
    pipe = tiny_pipeline()
    cfg = draftsdk.TrainConfig(variant="early-x0", variant_options={"early_step": 1}, num_inference_steps=4, steps=2,
                               batch_size=2, learning_rate=3e-2, output_dir=tmp_path / "run", progress=False)
    trainer = draftsdk.Trainer(pipe, "brightness", cfg)
    calls = []
    pipe.unet.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    rollout = trainer.rollout(["a", "b"])
    assert calls == [False, True]  # step 0 without gradient, step 1 with, nothing after
    assert rollout.images.requires_grad
    result = trainer.fit(["a cat", "a dog"])
    assert result.evals[-1]["eval/mean"] > result.evals[0]["eval/mean"]

    with pytest.raises(draftsdk.config.ConfigError, match=r"early_step: 4 must be < num_inference_steps=4"):
        draftsdk.TrainConfig(variant="early-x0", variant_options={"early_step": 4}, num_inference_steps=4)
    with pytest.raises(draftsdk.config.ConfigError, match=r"early-x0 option: variant_options.early_step: Input should be greater"):
        draftsdk.TrainConfig(variant="early-x0", variant_options={"early_step": -1})


def test_a_broken_family_plugin_is_reported_and_the_others_still_work():
    class Broken:
        @draftsdk.hookimpl
        def register_model_families(self, register):
            raise RuntimeError("boom")

    register_plugin(Broken(), name="broken-family", distribution="draftsdk-broken-family", version="0.1")
    assert {"sd", "sdxl"} <= set(draftsdk.models.list_families())
    info = next(p for p in list_plugins() if p.name == "broken-family")
    assert info.error == "register_model_families failed: RuntimeError: boom"
    with pytest.raises(UnknownNameError, match=r"unknown model family 'sdx'. Did you mean 'sdxl' or 'sd'\?"):
        draftsdk.models.get_family("sdx")
