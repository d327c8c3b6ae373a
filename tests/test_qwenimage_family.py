"""Qwen-Image against diffusers' ``QwenImagePipeline``: sampling fidelity (true CFG with its norm rescale
on and off, a non-square size, a negative prompt), and LoRA gradients against a hand-written Euler loop
(adapter round trips and training: test_flow_lora.py). Tiny random-weight pipelines (a toy Qwen2.5-VL,
an offline byte-level BPE tokenizer), saved and reloaded through the real loading code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift
from flow_helpers import latents as _flow_latents
from flow_helpers import with_random_lora

import draftsdk

H, W = 32, 32  # 8x8 packed tokens
SEQ = 64  # the tiny tokenizer's model_max_length: every prompt is padded to it (the pipeline pads to the longest)
PROMPTS = ["a red cat", "a dog on a beach"]


@pytest.fixture(scope="module")
def folder(flow_folder):
    return flow_folder("qwenimage")


@pytest.fixture(scope="module")
def pipe(folder):
    """One loaded pipeline for the tests that do not change it."""
    return draftsdk.load_pipeline(str(folder))


def _latents(pipe, batch, height=H, width=W, seed=0):
    return _flow_latents(pipe, batch, height, width, seed)


def _reference(pipe, prompts, latents, steps, guidance, height=H, width=W, negative=" "):
    extra = {"negative_prompt": [negative] * len(prompts)} if guidance > 1 else {}
    return pipe(prompt=prompts, num_inference_steps=steps, true_cfg_scale=guidance, latents=latents, height=height, width=width,
                max_sequence_length=SEQ, output_type="pt", **extra).images


def test_the_family_is_found_and_shapes_follow_the_pipeline(folder, pipe):
    family = draftsdk.models.family_for_model(str(folder))
    assert family.name == "qwenimage" and draftsdk.models.family_for(pipe).name == "qwenimage"
    assert family.vae_scale_factor(pipe) == pipe.vae_scale_factor == 2
    assert family.latent_shape(pipe, 2, H, 2 * W) == (2, (H // 4) * (W // 2), 16)  # 2x2-packed 4-channel latents
    assert family.uses_cfg(pipe, 4.0) and not family.uses_cfg(pipe, 1.0)


@pytest.mark.parametrize("guidance", [4.0, 1.0])
def test_sampling_matches_the_diffusers_pipeline(pipe, guidance):
    latents = _latents(pipe, 2)
    ref = _reference(pipe, PROMPTS, latents, 4, guidance)
    ours = draftsdk.sample(pipe, PROMPTS, num_inference_steps=4, guidance_scale=guidance, latents=latents, height=H, width=W).images
    assert ours.shape == ref.shape == (2, 3, H, W)
    assert float(ref.std()) > 0.02
    assert (ours - ref).abs().max() <= 1e-4
    if guidance > 1:  # the CFG batch really changes the images
        unguided = draftsdk.sample(pipe, PROMPTS, num_inference_steps=4, guidance_scale=1.0, latents=latents, height=H, width=W)
        assert (unguided.images - ours).abs().max() > 1e-3


def test_non_square_size_and_a_negative_prompt_match_diffusers(pipe):
    h, w = 32, 64
    latents = _latents(pipe, 1, h, w, seed=4)
    ref = _reference(pipe, ["a cat"], latents, 3, 4.0, h, w, negative="blurry")
    ours = draftsdk.sample(pipe, ["a cat"], num_inference_steps=3, guidance_scale=4.0, latents=latents, height=h, width=w,
                           negative_prompts=["blurry"]).images
    assert ours.shape == (1, 3, h, w)
    assert (ours - ref).abs().max() <= 1e-4


def test_the_schedule_has_the_dynamic_shift_and_the_terminal_sigma(pipe):
    stepper = draftsdk.sampling.Sampler(pipe, num_inference_steps=4, height=H, width=W).stepper
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=calculate_shift(64, 256, 8192, 0.5, 0.9))
    assert stepper.timesteps == [float(t) for t in scheduler.timesteps]
    assert abs(stepper.sigmas[-2] - 0.02) < 1e-6 and stepper.sigmas[-1] == 0.0  # shift_terminal


def test_ddpo_is_refused(pipe, tmp_path):
    cfg = draftsdk.TrainConfig(variant="ddpo", eta=1.0, num_inference_steps=2, output_dir=tmp_path / "r", height=H, width=W)
    with pytest.raises(draftsdk.DraftError, match="variant 'ddpo' needs a stochastic sampler .* qwenimage family's FlowMatchEulerStepper"):
        draftsdk.Trainer(pipe, "brightness", cfg)


# -- gradients against a hand-written Euler loop -------------------------------------------------------


def _euler_loop(pipe, prompts, latents, T, K, guidance, weight):
    """DRaFT-K written out with the pipeline's own helpers: its sigmas and mu, its batch-padded prompt embeddings
    and masks, two transformer calls per step with the norm-rescaled true CFG, x + (s_next - s) v, its unpacking."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / T, T), mu=calculate_shift(latents.shape[1], 256, 8192, 0.5, 0.9))
    embeds, mask = pipe.encode_prompt(prompts, max_sequence_length=SEQ)
    neg, neg_mask = pipe.encode_prompt([" "] * len(prompts), max_sequence_length=SEQ)
    shapes = [[(1, H // 4, W // 4)]] * latents.shape[0]
    x = latents
    sigmas = scheduler.sigmas
    for i, t in enumerate(scheduler.timesteps):
        if i == T - K:
            x = x.detach()
        with torch.set_grad_enabled(i >= T - K):
            timestep = t.expand(x.shape[0]) / 1000
            v = pipe.transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=embeds, encoder_hidden_states_mask=mask,
                                 img_shapes=shapes).sample
            v_u = pipe.transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=neg, encoder_hidden_states_mask=neg_mask,
                                   img_shapes=shapes).sample
            combined = v_u + guidance * (v - v_u)
            x = x + (sigmas[i + 1] - sigmas[i]) * combined * (v.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))
    z = pipe._unpack_latents(x, H, W, pipe.vae_scale_factor)
    config = pipe.vae.config
    z = z * torch.tensor(config.latents_std).view(1, -1, 1, 1, 1) + torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
    image = (pipe.vae.decode(z).sample[:, :, 0] / 2 + 0.5).clamp(0, 1)
    return (image * weight).sum(), image


def test_draft_k_gradient_equals_a_hand_written_euler_loop(folder):
    pipe = draftsdk.load_pipeline(str(folder))
    params = with_random_lora(pipe)
    T, K, guidance = 4, 2, 4.0
    latents = _latents(pipe, 2, seed=5)
    weight = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(9))
    loss, image = _euler_loop(pipe, PROMPTS, latents, T, K, guidance, weight)
    loss.backward()
    reference = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
    names = {id(p): n for n, p in pipe.transformer.named_parameters()}
    zero = {names[id(p)].split(".lora_")[0] for p, g in zip(params, reference) if g.abs().sum() == 0}
    # the last block's text stream is discarded, so its text-side projections get no gradient
    assert zero <= {"transformer_blocks.1.attn.add_q_proj", "transformer_blocks.1.attn.to_add_out"}, zero
    for ckpt in (True, False):
        for p in params:
            p.grad = None
        out = draftsdk.sample(pipe, PROMPTS, num_inference_steps=T, guidance_scale=guidance, grad_steps=K, latents=latents,
                              height=H, width=W, checkpoint_denoiser=ckpt, checkpoint_vae=ckpt)
        assert (out.images - image).abs().max() <= 1e-5
        (out.images * weight).sum().backward()
        for p, b in zip(params, reference):
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            assert float((grad - b).norm()) <= 1e-4 * float(b.norm())
