"""SD3 and FLUX.1 against diffusers: sampling fidelity and LoRA gradients against a hand-written Euler
loop (adapter round trips and training: test_flow_lora.py). Tiny random-weight pipelines, saved and reloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flow_helpers import latents as _latents
from flow_helpers import with_random_lora

import draftsdk

CASES = {"sd3": "sd3", "sd3-shift1-no-t5": "sd3", "flux-dev": "flux", "flux-schnell": "flux"}  # tiny pipeline -> family
SIZE = {"sd3": (16, 16), "flux": (32, 32)}


@pytest.fixture(scope="module")
def folders(flow_folder):
    return {name: flow_folder(name) for name in CASES}


def _load(folders, name):
    return draftsdk.load_pipeline(str(folders[name]))


def _kw(name, pipe):
    """The pipeline call's size and T5 length as draftsdk uses them (the tiny T5 tokenizer has 32 tokens;
    without T5, SD3 pads with the pipeline's default 256 zero tokens)."""
    h, w = SIZE[CASES[name]]
    return dict(height=h, width=w, max_sequence_length=32 if getattr(pipe, "tokenizer_3", True) is not None else 256)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("guidance", [4.0, 1.0])
def test_sampling_matches_the_diffusers_pipeline(folders, name, guidance):
    pipe = _load(folders, name)
    kw = _kw(name, pipe)
    latents = _latents(pipe, 2, kw["height"], kw["width"])
    prompts = ["a red cat", "a dog on a beach"]
    ref = pipe(prompts, num_inference_steps=5, guidance_scale=guidance, latents=latents, output_type="pt", **kw).images
    ours = draftsdk.sample(pipe, prompts, num_inference_steps=5, guidance_scale=guidance, latents=latents,
                           height=kw["height"], width=kw["width"]).images
    assert ours.shape == ref.shape
    assert float(ref.std()) > 0.02
    assert (ours - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["sd3", "flux-dev"])
def test_non_square_size_matches_diffusers(folders, name):
    pipe = _load(folders, name)
    h, w = (16, 32) if name == "sd3" else (32, 64)
    latents = _latents(pipe, 1, h, w, seed=4)
    extra = {"negative_prompt": ["blurry"]} if name == "sd3" else {}
    ref = pipe(["a cat"], num_inference_steps=4, latents=latents, height=h, width=w, max_sequence_length=32,
               output_type="pt", **extra).images
    ours = draftsdk.sample(pipe, ["a cat"], num_inference_steps=4, latents=latents, height=h, width=w,
                           negative_prompts=extra.get("negative_prompt")).images
    assert ours.shape == (1, 3, h, w)
    assert (ours - ref).abs().max() <= 1e-4


def test_flux_sigmas_are_shifted_by_the_image_size(folders):
    pipe = _load(folders, "flux-dev")
    small = draftsdk.sampling.Sampler(pipe, num_inference_steps=4, height=32, width=32).stepper
    large = draftsdk.sampling.Sampler(pipe, num_inference_steps=4, height=128, width=128).stepper
    assert small.sigmas[0] == large.sigmas[0] == 1.0 and small.sigmas[-1] == large.sigmas[-1] == 0.0
    assert large.sigmas[2] > small.sigmas[2]  # more tokens, larger mu: more time at high noise


def test_ddpo_and_negative_prompts_are_refused_on_flux(folders, tmp_path):
    pipe = _load(folders, "flux-dev")
    with pytest.raises(ValueError, match="negative prompts need classifier-free guidance, which the flux family does not run"):
        draftsdk.sample(pipe, ["a"], num_inference_steps=2, negative_prompts=["b"], height=32, width=32)
    cfg = draftsdk.TrainConfig(variant="ddpo", eta=1.0, num_inference_steps=2, output_dir=tmp_path / "r", height=32, width=32)
    with pytest.raises(draftsdk.DraftError, match="variant 'ddpo' needs a stochastic sampler .* flux family's FlowMatchEulerStepper"):
        draftsdk.Trainer(pipe, "brightness", cfg)


# -- gradients against a hand-written Euler loop -------------------------------------------------------


def _euler_loop(pipe, name, prompts, latents, T, K, guidance, weight, h, w):
    """DRaFT-K written out: sigmas from diffusers' scheduler, x + (s_next - s) v by hand, direct transformer calls."""
    family = CASES[name]
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if family == "flux":
        seq = latents.shape[1]
        m = (1.15 - 0.5) / (4096 - 256)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / T, T), mu=seq * m + 0.5 - m * 256)
        embeds, pooled, text_ids = pipe.encode_prompt(prompts, None, max_sequence_length=32)
        image_ids = pipe._prepare_latent_image_ids(1, h // 4, w // 4, "cpu", torch.float32)
    else:
        scheduler.set_timesteps(T)
        embeds, neg, pooled, neg_pooled = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=True,
                                                             max_sequence_length=32)
    sigmas = scheduler.sigmas
    x = latents
    for i, t in enumerate(scheduler.timesteps):
        if i == T - K:
            x = x.detach()
        with torch.set_grad_enabled(i >= T - K):
            if family == "flux":
                v = pipe.transformer(hidden_states=x, timestep=t.expand(x.shape[0]) / 1000, guidance=torch.full((x.shape[0],), guidance),
                                     pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=text_ids, img_ids=image_ids).sample
            else:
                v_u, v_c = pipe.transformer(hidden_states=torch.cat([x, x]), timestep=t.expand(2 * x.shape[0]),
                                            encoder_hidden_states=torch.cat([neg, embeds]),
                                            pooled_projections=torch.cat([neg_pooled, pooled])).sample.chunk(2)
                v = v_u + guidance * (v_c - v_u)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    if family == "flux":
        b, _, c = x.shape
        x = x.view(b, h // 4, w // 4, c // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c // 4, h // 2, w // 2)
    vae = pipe.vae
    image = (vae.decode(x / vae.config.scaling_factor + vae.config.shift_factor).sample / 2 + 0.5).clamp(0, 1)
    return (image * weight).sum(), image


@pytest.mark.parametrize("name", ["sd3", "flux-dev"])
def test_draft_k_gradient_equals_a_hand_written_euler_loop(folders, name):
    pipe = _load(folders, name)
    params = with_random_lora(pipe)
    h, w = SIZE[CASES[name]]
    T, K, guidance = 4, 2, 4.0
    prompts = ["a cat", "a dog"]
    latents = _latents(pipe, 2, h, w, seed=5)
    weight = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(9))
    loss, image = _euler_loop(pipe, name, prompts, latents, T, K, guidance, weight, h, w)
    loss.backward()
    reference = [p.grad.clone() for p in params]
    names = {id(p): n for n, p in pipe.transformer.named_parameters()}
    zero = {names[id(p)].split(".lora_")[0] for p, g in zip(params, reference) if g.abs().sum() == 0}
    # SD3's last block discards its text stream, so the query projection of that stream gets no gradient
    assert zero <= {"transformer_blocks.1.attn.add_q_proj"}, zero
    for ckpt in (True, False):
        for p in params:
            p.grad = None
        out = draftsdk.sample(pipe, prompts, num_inference_steps=T, guidance_scale=guidance, grad_steps=K, latents=latents,
                              height=h, width=w, checkpoint_denoiser=ckpt, checkpoint_vae=ckpt)
        assert (out.images - image).abs().max() <= 1e-5
        (out.images * weight).sum().backward()
        for p, b in zip(params, reference):
            assert float((p.grad - b).norm()) <= 1e-4 * float(b.norm())
