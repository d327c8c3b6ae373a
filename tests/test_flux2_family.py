"""FLUX.2-Klein against diffusers' ``Flux2KleinPipeline``: sampling fidelity (true CFG on and off, the
step-distilled kind, a non-square size, negative prompts), and LoRA gradients against a hand-written Euler
loop (adapter round trips and training: test_flow_lora.py). Tiny random-weight pipelines (a 27-layer
toy Qwen3, an offline byte-level BPE tokenizer with Qwen's chat template), saved and reloaded through
the real loading code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu
from flow_helpers import latents as _flow_latents
from flow_helpers import with_random_lora

import draftsdk
from draftsdk.models.flux2 import flux2_empirical_mu

H, W = 32, 32  # 8x8 patchified latents: 64 image tokens
SEQ = 64  # the tiny tokenizer's model_max_length (the pipeline's default is 512)
PROMPTS = ["a red cat", "a dog on a beach"]


@pytest.fixture(scope="module")
def folders(flow_folder):
    return {"base": flow_folder("flux2-klein"), "distilled": flow_folder("flux2-klein-distilled")}


@pytest.fixture(scope="module")
def pipes(folders):
    """One loaded pipeline per case for the tests that do not change it."""
    return {name: draftsdk.load_pipeline(str(folder)) for name, folder in folders.items()}


def _latents(pipe, batch, height=H, width=W, seed=0):
    return _flow_latents(pipe, batch, height, width, seed)


def _reference(pipe, prompts, latents, steps, guidance, height=H, width=W, **kw):
    return pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance, latents=latents, height=height, width=width,
                max_sequence_length=SEQ, output_type="pt", **kw).images


def test_the_family_is_found_from_the_folder_and_the_object(folders, pipes):
    family = draftsdk.models.family_for_model(str(folders["base"]))
    assert family.name == "flux2-klein" and draftsdk.models.family_for(pipes["base"]).name == "flux2-klein"
    assert type(pipes["base"]).__name__ == "Flux2KleinPipeline" and pipes["distilled"].config.is_distilled
    assert family.uses_cfg(pipes["base"], 4.0) and not family.uses_cfg(pipes["distilled"], 4.0)
    assert family.latent_shape(pipes["base"], 2, H, W) == (2, 16, H // 4, W // 4)  # (B, 4 VAE channels x 2x2, H/4, W/4)


@pytest.mark.parametrize("name, guidance", [("base", 4.0), ("base", 1.0), ("distilled", 4.0)])
def test_sampling_matches_the_diffusers_pipeline(pipes, name, guidance):
    pipe = pipes[name]
    latents = _latents(pipe, 2)
    ref = _reference(pipe, PROMPTS, latents, 4, guidance)
    ours = draftsdk.sample(pipe, PROMPTS, num_inference_steps=4, guidance_scale=guidance, latents=latents, height=H, width=W).images
    assert ours.shape == ref.shape == (2, 3, H, W)
    assert float(ref.std()) > 0.02
    assert (ours - ref).abs().max() <= 1e-4
    if name == "base" and guidance > 1:  # the CFG batch really changes the images (the text matters)
        unguided = draftsdk.sample(pipe, PROMPTS, num_inference_steps=4, guidance_scale=1.0, latents=latents, height=H, width=W)
        assert (unguided.images - ours).abs().max() > 1e-3


def test_non_square_size_and_negative_prompts_match_diffusers(pipes):
    pipe = pipes["base"]
    h, w = 32, 64
    latents = _latents(pipe, 1, h, w, seed=4)
    assert latents.shape == (1, 16, h // 4, w // 4)
    negative, _ = pipe.encode_prompt(["blurry"], max_sequence_length=SEQ)  # the pipeline takes other negatives as embeddings
    ref = _reference(pipe, ["a cat"], latents, 3, 4.0, h, w, negative_prompt_embeds=negative)
    ours = draftsdk.sample(pipe, ["a cat"], num_inference_steps=3, guidance_scale=4.0, latents=latents, height=h, width=w,
                           negative_prompts=["blurry"]).images
    assert ours.shape == (1, 3, h, w)
    assert (ours - ref).abs().max() <= 1e-4
    default = draftsdk.sample(pipe, ["a cat"], num_inference_steps=3, guidance_scale=4.0, latents=latents, height=h, width=w).images
    assert (default - _reference(pipe, ["a cat"], latents, 3, 4.0, h, w)).abs().max() <= 1e-4  # the default negative is ""


def test_the_schedule_is_shifted_by_flux2s_empirical_mu(pipes):
    pipe = pipes["base"]
    assert flux2_empirical_mu(4096, 50) == compute_empirical_mu(4096, 50) and flux2_empirical_mu(6000, 4) == compute_empirical_mu(6000, 4)
    small = draftsdk.sampling.Sampler(pipe, num_inference_steps=4, height=32, width=32).stepper
    large = draftsdk.sampling.Sampler(pipe, num_inference_steps=4, height=256, width=256).stepper
    assert small.sigmas[0] == large.sigmas[0] == 1.0 and small.sigmas[-1] == large.sigmas[-1] == 0.0
    assert large.sigmas[2] > small.sigmas[2]  # more image tokens, larger mu: more time at high noise
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=compute_empirical_mu(64, 4))
    assert small.timesteps == [float(t) for t in scheduler.timesteps]


def test_ddpo_and_negative_prompts_are_refused_without_cfg(pipes, tmp_path):
    with pytest.raises(ValueError, match="negative prompts need classifier-free guidance, which the flux2-klein family does not run"):
        draftsdk.sample(pipes["distilled"], ["a"], num_inference_steps=2, negative_prompts=["b"], height=H, width=W)
    cfg = draftsdk.TrainConfig(variant="ddpo", eta=1.0, num_inference_steps=2, output_dir=tmp_path / "r", height=H, width=W)
    with pytest.raises(draftsdk.DraftError, match="variant 'ddpo' needs a stochastic sampler .* flux2-klein family's FlowMatchEulerStepper"):
        draftsdk.Trainer(pipes["base"], "brightness", cfg)


# -- gradients against a hand-written Euler loop -------------------------------------------------------


def _euler_loop(pipe, prompts, latents, T, K, guidance, weight):
    """DRaFT-K written out with the pipeline's own helpers: its sigmas and mu, its packing and ids, two
    transformer calls per step (text, then the empty prompt), x + (s_next - s) v, its latent un-normalisation."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / T, T), mu=compute_empirical_mu(latents.shape[2] * latents.shape[3], T))
    embeds, text_ids = pipe.encode_prompt(prompts, max_sequence_length=SEQ)
    neg, neg_ids = pipe.encode_prompt([""] * len(prompts), max_sequence_length=SEQ)
    image_ids = pipe._prepare_latent_ids(latents)
    x = pipe._pack_latents(latents)
    sigmas = scheduler.sigmas
    for i, t in enumerate(scheduler.timesteps):
        if i == T - K:
            x = x.detach()
        with torch.set_grad_enabled(i >= T - K):
            timestep = t.expand(x.shape[0]) / 1000
            v = pipe.transformer(hidden_states=x, timestep=timestep, guidance=None, encoder_hidden_states=embeds, txt_ids=text_ids,
                                 img_ids=image_ids).sample
            v_u = pipe.transformer(hidden_states=x, timestep=timestep, guidance=None, encoder_hidden_states=neg, txt_ids=neg_ids,
                                   img_ids=image_ids).sample
            x = x + (sigmas[i + 1] - sigmas[i]) * (v_u + guidance * (v - v_u))
    x = pipe._unpack_latents_with_ids(x, image_ids, latents.shape[2], latents.shape[3])
    bn = pipe.vae.bn
    x = pipe._unpatchify_latents(x * torch.sqrt(bn.running_var.view(1, -1, 1, 1) + pipe.vae.config.batch_norm_eps)
                                 + bn.running_mean.view(1, -1, 1, 1))
    image = (pipe.vae.decode(x).sample / 2 + 0.5).clamp(0, 1)
    return (image * weight).sum(), image


def test_draft_k_gradient_equals_a_hand_written_euler_loop(folders):
    pipe = draftsdk.load_pipeline(str(folders["base"]))
    params = with_random_lora(pipe)
    names = {id(p): n for n, p in pipe.transformer.named_parameters()}
    adapted = {names[id(p)].split(".lora_")[0] for p in params}
    assert adapted == {f"transformer_blocks.0.attn.{m}" for m in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj",
                                                                 "add_v_proj", "to_add_out")} | {"single_transformer_blocks.0.attn.to_qkv_mlp_proj"}
    T, K, guidance = 4, 2, 4.0
    latents = _latents(pipe, 2, seed=5)
    weight = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(9))
    loss, image = _euler_loop(pipe, PROMPTS, latents, T, K, guidance, weight)
    loss.backward()
    reference = [p.grad.clone() for p in params]
    assert all(float(g.abs().sum()) > 0 for g in reference)  # every adapted layer gets a gradient
    for ckpt in (True, False):
        for p in params:
            p.grad = None
        out = draftsdk.sample(pipe, PROMPTS, num_inference_steps=T, guidance_scale=guidance, grad_steps=K, latents=latents,
                              height=H, width=W, checkpoint_denoiser=ckpt, checkpoint_vae=ckpt)
        assert (out.images - image).abs().max() <= 1e-5
        (out.images * weight).sum().backward()
        for p, b in zip(params, reference):
            assert float((p.grad - b).norm()) <= 1e-4 * float(b.norm())
