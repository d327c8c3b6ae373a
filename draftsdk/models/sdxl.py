"""Stable Diffusion XL: ``StableDiffusionXLPipeline``, two CLIP text encoders, pooled embeddings, time ids.

The conditioning carries the concatenated hidden states of both encoders, the pooled projection of
the second (``text_embeds``) and ``time_ids`` = (original size, crop top-left, target size), here
(H, W), (0, 0), (H, W) as the pipeline's defaults. With no negative prompt the unconditional
embeddings are zeros when the pipeline's ``force_zeros_for_empty_prompt`` says so (SDXL base does).
Decoding honours the VAE's ``latents_mean``/``latents_std`` and keeps a ``force_upcast`` VAE in
float32 under fp16. LoRA adapts the UNet only (no text-encoder LoRA).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from .base import Conditioning
from .sd import StableDiffusion

__all__ = ["StableDiffusionXL"]


class StableDiffusionXL(StableDiffusion):
    """Stable Diffusion XL (UNet, two CLIP text encoders, DDIM)."""

    name = "sdxl"
    description = "Stable Diffusion XL"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    required_components = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    default_steps = 50
    default_guidance = 5.0
    load_kwargs = {"add_watermarker": False}

    def scheduler_config(self, pipeline: Any) -> dict[str, Any]:
        return {**pipeline.scheduler.config, "_class_name": type(pipeline.scheduler).__name__}  # SDXL rewrites nothing

    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder_2.device
        cond, uncond, pooled, uncond_pooled = pipeline.encode_prompt(
            list(prompts),
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=list(negative_prompts) if negative_prompts else None,
        )
        time_ids = pipeline._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=cond.dtype,
            text_encoder_projection_dim=int(pipeline.text_encoder_2.config.projection_dim),
        ).to(device).repeat(len(prompts), 1)
        text = {"encoder_hidden_states": cond, "text_embeds": pooled, "time_ids": time_ids}
        negative = {"encoder_hidden_states": uncond, "text_embeds": uncond_pooled, "time_ids": time_ids} if guided else None
        return Conditioning(text, negative)

    def denoiser_kwargs(self, cond: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "encoder_hidden_states": cond["encoder_hidden_states"],
            "added_cond_kwargs": {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]},
        }

    def frozen_dtype(self, pipeline: Any, module: torch.nn.Module, dtype: torch.dtype) -> torch.dtype:
        # cast: ``module is pipeline.vae`` narrows the (diffusers) VAE to torch.nn.Module, which has no ``config``
        if module is pipeline.vae and dtype == torch.float16 and cast(Any, pipeline.vae).config.get("force_upcast", False):
            return torch.float32  # the SDXL VAE overflows in float16
        return dtype

    def unscale_latents(self, pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
        config = pipeline.vae.config
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            channels = latents.shape[1]
            mean_t = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(1, channels, 1, 1)
            std_t = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(1, channels, 1, 1)
            return latents * std_t / config.scaling_factor + mean_t
        return latents / config.scaling_factor
