"""Stable Diffusion 3 / 3.5: ``StableDiffusion3Pipeline``, an MMDiT transformer, rectified flow.

Three text encoders (two CLIP with pooled projections, one T5, which may be absent: then its part of
the embeddings is zeros, as the pipeline does), true classifier-free guidance, 16-channel latents
decoded with the VAE's ``scaling_factor`` and ``shift_factor``, and the flow-matching Euler stepper
with the checkpoint's static ``shift`` (3.0 for SD3/3.5) or its dynamic shift. LoRA adapts the
transformer's attention projections, including the context stream's ``add_*_proj``/``to_add_out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..steppers import FlowMatchEulerStepper, flow_shift_mu
from .base import Conditioning, ModelFamily

__all__ = ["StableDiffusion3"]


class StableDiffusion3(ModelFamily):
    """Stable Diffusion 3/3.5 (MMDiT transformer, CLIP x2 + T5, flow matching)."""

    name = "sd3"
    description = "Stable Diffusion 3/3.5"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    required_components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    optional_components = ("text_encoder_3",)
    denoiser_name = "transformer"
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    default_steps = 28
    default_guidance = 7.0

    def max_sequence_length(self, pipeline: Any) -> int:
        """T5 tokens: 256 (the pipeline's default), or fewer when the T5 tokenizer is shorter."""
        tokenizer = getattr(pipeline, "tokenizer_3", None)
        return int(min(256, getattr(tokenizer, "model_max_length", 256) if tokenizer is not None else 256))

    # -- shapes and schedule: the base class reads the transformer's sample_size, patch_size, in_channels
    def stepper(self, pipeline: Any, num_inference_steps: int, *, eta: float, height: int, width: int) -> FlowMatchEulerStepper:
        config = {**pipeline.scheduler.config, "_class_name": type(pipeline.scheduler).__name__}
        mu = None
        if config.get("use_dynamic_shifting"):
            patch, f = int(pipeline.transformer.config.patch_size), self.vae_scale_factor(pipeline)
            mu = flow_shift_mu((height // f // patch) * (width // f // patch), config, default_max_shift=1.16)
        return FlowMatchEulerStepper(config, num_inference_steps, mu=mu)

    # -- conditioning and the denoiser ------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder.device
        cond, uncond, pooled, uncond_pooled = pipeline.encode_prompt(
            list(prompts), None, None, device=device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
            negative_prompt=list(negative_prompts) if negative_prompts else None, max_sequence_length=self.max_sequence_length(pipeline),
        )
        text = {"encoder_hidden_states": cond, "pooled_projections": pooled}
        negative = {"encoder_hidden_states": uncond, "pooled_projections": uncond_pooled} if guided else None
        return Conditioning(text, negative)

    def predict(self, pipeline: Any, latents: torch.Tensor, timestep: Any, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        transformer = pipeline.transformer
        model_in, merged = self.cfg_batch(latents, cond)
        out = transformer(
            hidden_states=model_in.to(transformer.dtype),
            timestep=timestep.expand(model_in.shape[0]),
            encoder_hidden_states=merged["encoder_hidden_states"],
            pooled_projections=merged["pooled_projections"],
            return_dict=False,
        )[0]
        return self.apply_cfg(out, cond, guidance_scale)

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        config = pipeline.vae.config
        return self.vae_decode(pipeline, latents / config.scaling_factor + (config.shift_factor or 0.0))
