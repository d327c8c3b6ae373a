"""Model families against diffusers itself: sampling fidelity, LoRA gradients against a hand-written
loop, and adapter round trips through the pipeline's own ``load_lora_weights``.

Every pipeline is a tiny random-weight model saved with ``save_pretrained`` and loaded back through
``draftsdk.load_pipeline`` (the real loading code). The reference is always diffusers: the family's
pipeline class with ``DDIMScheduler.from_config(<the folder's scheduler config>)``.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

import draftsdk
from draftsdk.lora import add_lora, save_lora
from draftsdk.models import family_for, family_for_model
from draftsdk.testing import save_tiny_pipeline

# name -> (family, builder kwargs)
CASES = {
    "sd-ddim": ("sd", {}),
    "sd-pndm": ("sd", {"scheduler": "pndm"}),
    "sd-euler": ("sd", {"scheduler": "euler"}),
    "sd2-v": ("sd", {"prediction_type": "v_prediction", "linear_projection": True}),
    "sdxl": ("sdxl", {}),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: save_tiny_pipeline(root / name, family=family, **kw) for name, (family, kw) in CASES.items()}


def _load(folders, name):
    return draftsdk.load_pipeline(str(folders[name]))


def _reference(pipe):
    """The same components with diffusers' own DDIM scheduler derived from the folder's config."""
    return type(pipe)(**{**pipe.components, "scheduler": DDIMScheduler.from_config(pipe.scheduler.config)})


def _noise(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_sampling_matches_the_diffusers_pipeline(folders, name, guidance):
    pipe = _load(folders, name)
    prompts = ["a red cat", "a dog on a beach"]
    latents = _noise((2, 4, 8, 8))
    ref = _reference(pipe)(prompts, num_inference_steps=6, guidance_scale=guidance, latents=latents, output_type="pt").images
    ours = draftsdk.sample(pipe, prompts, num_inference_steps=6, guidance_scale=guidance, latents=latents).images
    assert ours.shape == ref.shape == (2, 3, 16, 16)
    assert float(ref.std()) > 0.05  # not a saturated, trivially equal image
    assert (ours - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["sd-pndm", "sdxl"])
def test_negative_prompt_and_non_square_size_match_diffusers(folders, name):
    pipe = _load(folders, name)
    latents = _noise((1, 4, 8, 16), 3)
    kw = dict(num_inference_steps=5, guidance_scale=6.0, latents=latents, height=16, width=32)
    ref = _reference(pipe)(["a cat"], negative_prompt=["blurry"], output_type="pt", **kw).images
    ours = draftsdk.sample(pipe, ["a cat"], negative_prompts=["blurry"], **kw).images
    assert ours.shape == (1, 3, 16, 32)
    assert (ours - ref).abs().max() <= 1e-4


def test_pndm_and_euler_folders_sample_with_ddim_timesteps(folders):
    expected = DDIMScheduler.from_config(_load(folders, "sd-ddim").scheduler.config)
    expected.set_timesteps(50)
    for name in ("sd-pndm", "sd-euler", "sdxl"):
        pipe = _load(folders, name)
        sampler = draftsdk.sampling.Sampler(pipe, num_inference_steps=50)
        assert sampler.timesteps == [int(t) for t in expected.timesteps]
        assert len(set(sampler.timesteps)) == 50  # PNDM's own schedule repeats a timestep (51 calls)
        assert sampler.stepper.init_noise_sigma == 1.0  # Euler's would be ~14.6


def test_flow_matching_scheduler_in_an_sd_folder_is_refused(folders, tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = _load(folders, "sd-ddim")
    pipe.scheduler = FlowMatchEulerDiscreteScheduler()
    with pytest.raises(draftsdk.steppers.ScheduleError, match="FlowMatchEulerDiscreteScheduler has no DDPM noise schedule"):
        draftsdk.sample(pipe, ["a"], num_inference_steps=2)


def test_family_is_detected_from_the_folder_and_the_object(folders, tmp_path):
    assert family_for_model(str(folders["sdxl"])).name == "sdxl"
    assert family_for_model(str(folders["sd-pndm"])).name == "sd"
    assert type(_load(folders, "sdxl")).__name__ == "StableDiffusionXLPipeline"
    assert family_for(_load(folders, "sd2-v")).name == "sd"
    (tmp_path / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    with pytest.raises(draftsdk.models.ModelLoadError, match="is a KandinskyPipeline, which no installed model family supports"):
        draftsdk.load_pipeline(str(tmp_path))


# -- gradients against a hand-written loop ------------------------------------------------------------


def _with_lora(pipe, targets=("to_q", "to_k", "to_v", "to_out.0"), seed=1):
    for module in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False)
    params = add_lora(pipe.unet, rank=4, targets=targets)
    gen = torch.Generator().manual_seed(seed)
    for p in params:  # non-zero B, so that A gets a gradient too
        p.data = torch.randn(p.shape, generator=gen) * 0.05
    return params


def _hand_written_draft_k(pipe, prompts, latents, T, K, guidance, weight):
    """DRaFT-K written with diffusers' DDIMScheduler and direct UNet calls (first T-K steps detached)."""
    scheduler = _reference(pipe).scheduler  # as the pipeline class sets it up from the folder's config
    scheduler.set_timesteps(T)
    xl = hasattr(pipe, "text_encoder_2")
    if xl:
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=True)
        h, w = latents.shape[-2] * 2, latents.shape[-1] * 2
        ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=torch.float32).repeat(2 * len(prompts), 1)
        extra = {"added_cond_kwargs": {"text_embeds": torch.cat([uncond_pooled, pooled]), "time_ids": ids}}
    else:
        cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True)
        extra = {}
    embeds = torch.cat([uncond, cond]).detach()
    x = latents
    for i, t in enumerate(scheduler.timesteps):
        if i == T - K:
            x = x.detach()
        with torch.set_grad_enabled(i >= T - K):
            out_u, out_c = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=embeds, **extra).sample.chunk(2)
            x = scheduler.step(out_u + guidance * (out_c - out_u), t, x).prev_sample
    image = (pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    return (image * weight).sum(), image


@pytest.mark.parametrize("name", ["sd-pndm", "sd2-v", "sdxl"])
def test_draft_k_gradient_equals_a_hand_written_loop(folders, name):
    pipe = _load(folders, name)
    params = _with_lora(pipe)
    T, K, guidance = 4, 2, 5.0
    prompts, latents = ["a cat", "a dog"], _noise((2, 4, 8, 8), 5)
    weight = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))

    loss, image = _hand_written_draft_k(pipe, prompts, latents, T, K, guidance, weight)
    loss.backward()
    reference = [p.grad.clone() for p in params]
    results = []
    for ckpt in (True, False):
        for p in params:
            p.grad = None
        out = draftsdk.sample(pipe, prompts, num_inference_steps=T, guidance_scale=guidance, grad_steps=K, latents=latents,
                              checkpoint_denoiser=ckpt, checkpoint_vae=ckpt)
        assert (out.images - image).abs().max() <= 1e-5
        (out.images * weight).sum().backward()
        results.append([p.grad.clone() for p in params])
    assert all(g.abs().sum() > 0 for g in reference)
    for ours in results:
        for a, b in zip(ours, reference):
            assert float((a - b).norm() / b.norm()) <= 1e-4


# -- LoRA export through the family's own load_lora_weights -------------------------------------------

TARGET_SETS = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "attention+proj": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"],
    "attention+proj+ff": ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"],
}


@pytest.mark.parametrize("targets", list(TARGET_SETS))
@pytest.mark.parametrize("name", ["sd-ddim", "sdxl"])
def test_exported_adapter_loads_with_plain_diffusers(folders, tmp_path, name, targets):
    pipe = _load(folders, name)
    _with_lora(pipe, TARGET_SETS[targets])
    path = save_lora(tmp_path / "a.safetensors", pipe.unet)
    latents = _noise((1, 4, 8, 8), 2)
    ours = draftsdk.sample(pipe, ["a fox"], num_inference_steps=4, latents=latents).images
    base = draftsdk.sample(_load(folders, name), ["a fox"], num_inference_steps=4, latents=latents).images

    fresh = _reference(_load(folders, name))
    fresh.load_lora_weights(str(path))  # plain diffusers, no draftsdk
    n_lora = sum(1 for n, _ in fresh.unet.named_parameters() if "lora_" in n)
    assert n_lora == len(draftsdk.lora.read_lora(path).state_dict)  # every key was loaded
    theirs = fresh(["a fox"], num_inference_steps=4, guidance_scale=7.5 if name == "sd-ddim" else 5.0, latents=latents,
                   output_type="pt").images
    assert (ours - base).abs().max() > 1e-3  # the adapter does something
    assert (theirs - ours).abs().max() <= 1e-4


@pytest.mark.parametrize(
    "variant, extra",
    [("draft", {}), ("draft-k", {"k": 2}), ("draft-random-k", {"k_range": (1, 3)}), ("draft-lv", {}), ("refl", {"refl_last_steps": 3})],
)
def test_sdxl_trains_with_every_draft_variant(folders, tmp_path, variant, extra):
    cfg = draftsdk.TrainConfig(**{"variant": variant, "steps": 3, "batch_size": 2, "num_inference_steps": 4, "learning_rate": 3e-2,
                                  "output_dir": tmp_path / "run", "progress": False, "eval_seeds": [0, 1], **extra})
    result = draftsdk.Trainer(str(folders["sdxl"]), "brightness", cfg).fit(["a cat", "a dog"])
    before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
    assert after > before + 1e-4, (variant, before, after)
    info = draftsdk.lora.read_lora(result.lora_path)
    assert info.info["family"] == "sdxl" and info.prefix == "unet"


def test_sdxl_runs_ddpo(folders, tmp_path):
    """DDPO's policy gradient is too noisy to raise a reward in a few tiny updates; check that it trains."""
    cfg = draftsdk.TrainConfig(variant="ddpo", eta=1.0, steps=2, batch_size=4, num_inference_steps=4, learning_rate=3e-2,
                               output_dir=tmp_path / "run", progress=False, eval_seeds=[0])
    result = draftsdk.Trainer(str(folders["sdxl"]), "brightness", cfg).fit(["a cat", "a dog"])
    assert [r["skipped"] for r in result.history] == [False, False]
    assert all(r["grad_norm"] > 0 and "clip_fraction" in r for r in result.history)
    ups = [v for k, v in draftsdk.lora.read_lora(result.lora_path).state_dict.items() if "lora_B" in k]
    assert any(float(v.abs().sum()) > 0 for v in ups)  # B starts at zero: the updates were applied


def test_a_family_whose_pipeline_the_installed_diffusers_lacks_says_so():
    from draftsdk.models import ModelLoadError, get_family

    class Future(type(get_family("flux2-klein"))):
        name = "future"
        pipeline_classes = ("FutureImagePipeline",)

    with pytest.raises(ModelLoadError, match=r"^the future family needs diffusers.FutureImagePipeline, which diffusers "
                                             r"\d.* does not have; upgrade diffusers \(pip install -U diffusers\)$"):
        Future().pipeline_class()
