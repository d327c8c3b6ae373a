"""The differentiable sampler: fidelity to diffusers, DDIM step, truncation, checkpointing, state."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

import draftsdk
from draftsdk.lora import add_lora
from draftsdk.sampling import Sampler


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from draftsdk.testing import save_tiny_pipeline

    folder = save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")
    return draftsdk.load_pipeline(str(folder))


def _noise(shape=(2, 4, 8, 8), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("guidance", [7.5, 1.0])
def test_matches_diffusers_pipeline(pipe, guidance):
    prompts = ["a red cat", "a dog on a beach"]
    latents = _noise()
    ref = pipe(prompts, num_inference_steps=10, guidance_scale=guidance, latents=latents, output_type="pt").images
    ours = draftsdk.sample(pipe, prompts, num_inference_steps=10, guidance_scale=guidance, latents=latents).images
    assert ours.shape == ref.shape == (2, 3, 16, 16)
    assert 0.05 < float(ref.std())  # not a saturated, trivially equal image
    assert torch.allclose(ours, ref, atol=1e-4)


def test_negative_prompt_matches_diffusers(pipe):
    latents = _noise((1, 4, 8, 8), 3)
    ref = pipe(["a cat"], negative_prompt=["blurry"], num_inference_steps=6, latents=latents, output_type="pt").images
    ours = draftsdk.sample(pipe, ["a cat"], negative_prompts=["blurry"], num_inference_steps=6, latents=latents).images
    assert torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_equals_scheduler_step(pipe, prediction_type, eta):
    config = {**pipe.scheduler.config, "prediction_type": prediction_type}
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(7)
    fake = type("P", (), dict(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=scheduler))
    sampler = Sampler(fake, num_inference_steps=7, eta=eta)
    x, model_out, noise = _noise(seed=1), _noise(seed=2), _noise(seed=3)
    for index, t in enumerate(scheduler.timesteps):
        ref = scheduler.step(model_out, t, x, eta=eta, variance_noise=noise if eta else None).prev_sample
        ours = sampler.step(index, x, model_out, noise if eta else None).prev
        assert torch.allclose(ours, ref, atol=1e-5), (index, int(t))


def test_pipeline_scheduler_state_untouched(pipe):
    pipe.scheduler.set_timesteps(3)
    before = pipe.scheduler.timesteps.clone()
    draftsdk.sample(pipe, ["x"], num_inference_steps=5, latents=_noise((1, 4, 8, 8)))
    assert torch.equal(pipe.scheduler.timesteps, before)


def test_not_a_pipeline_lists_missing_parts():
    with pytest.raises(TypeError) as err:
        draftsdk.sample(object(), ["x"])
    assert str(err.value).startswith(
        "object is not a Stable Diffusion 1.x/2.x pipeline: missing unet, vae, text_encoder, tokenizer, scheduler"
    )


def _lora_pipe(seed=0):
    from draftsdk.testing import tiny_pipeline

    pipe = tiny_pipeline(seed=seed)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    params = add_lora(pipe.unet, rank=4)
    torch.manual_seed(1)
    for p in params:  # make B non-zero so that A gets a gradient too
        p.data.normal_(0, 0.05)
    return pipe, params


def _grads(params):
    return [p.grad.detach().clone() for p in params]


def test_gradient_only_reaches_lora_and_checkpointing_agrees():
    pipe, params = _lora_pipe()
    latents = _noise()
    results = []
    for ckpt in (True, False):
        for p in params:
            p.grad = None
        out = draftsdk.sample(pipe, ["a", "b"], num_inference_steps=4, grad_steps=3, latents=latents,
                              checkpoint_denoiser=ckpt, checkpoint_vae=ckpt)
        out.images.mean().backward()
        results.append(_grads(params))
    lora_ids = {id(p) for p in params}
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        for name, p in module.named_parameters():
            if id(p) not in lora_ids:
                assert p.grad is None, name
    assert all(g.abs().sum() > 0 for g in results[0])
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)


def test_truncation_matches_a_detached_reference_loop():
    """Gradient with K equals a plain diffusers loop that detaches the latent before the last K steps."""
    pipe, params = _lora_pipe()
    T, K = 5, 2
    latents, prompts = _noise(), ["a", "b"]
    out = draftsdk.sample(pipe, prompts, num_inference_steps=T, grad_steps=K, latents=latents)
    out.images.mean().backward()
    ours = _grads(params)
    for p in params:
        p.grad = None

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(T)
    embeds = torch.cat(pipe.encode_prompt(prompts, "cpu", 1, True)[::-1]).detach()
    x = latents
    for i, t in enumerate(scheduler.timesteps):
        if i == T - K:
            x = x.detach()
        eps_u, eps_c = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=embeds).sample.chunk(2)
        x = scheduler.step(eps_u + 7.5 * (eps_c - eps_u), t, x).prev_sample
    image = (pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    image.mean().backward()
    assert torch.allclose(image, out.images, atol=1e-5)
    for a, b in zip(ours, _grads(params)):
        assert torch.allclose(a, b, atol=1e-6)
    # and it is a real truncation: full backprop gives a different gradient
    for p in params:
        p.grad = None
    draftsdk.sample(pipe, prompts, num_inference_steps=T, grad_steps=T, latents=latents).images.mean().backward()
    assert not all(torch.allclose(a, b, atol=1e-7) for a, b in zip(ours, _grads(params)))


def test_grad_steps_zero_keeps_no_graph_and_bad_k_is_refused():
    pipe, _ = _lora_pipe()
    out = draftsdk.sample(pipe, ["a"], num_inference_steps=3, latents=_noise((1, 4, 8, 8)))
    assert not out.images.requires_grad
    with pytest.raises(ValueError, match=r"grad_steps must be in \[0, 3\], got 4"):
        draftsdk.sample(pipe, ["a"], num_inference_steps=3, grad_steps=4)
