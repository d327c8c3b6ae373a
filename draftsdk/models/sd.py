"""Stable Diffusion 1.x / 2.x: ``StableDiffusionPipeline``, one CLIP text encoder, a UNet, DDIM.

Epsilon (SD 1.x, SD 2.x base) and v-prediction (SD 2.x 768) checkpoints both work: the stepper reads
``prediction_type`` from the scheduler config. Whatever scheduler class the folder names (PNDM in
the hub's SD 1.4/1.5 folders, Euler in many fine-tunes), sampling is DDIM on the checkpoint's own
noise schedule, exactly as ``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..steppers import DDIMStepper
from .base import Conditioning, ModelFamily

__all__ = ["StableDiffusion"]


class StableDiffusion(ModelFamily):
    """Stable Diffusion 1.x/2.x (UNet, one CLIP text encoder, DDIM)."""

    name = "sd"
    description = "Stable Diffusion 1.x/2.x"
    pipeline_classes = ("StableDiffusionPipeline",)
    required_components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    denoiser_name = "unet"
    default_steps = 50
    default_guidance = 7.5
    load_kwargs = {"safety_checker": None, "requires_safety_checker": False}

    # -- shapes ---------------------------------------------------------------------------------
    def vae_scale_factor(self, pipeline: Any) -> int:
        return 2 ** (len(pipeline.vae.config.block_out_channels) - 1)

    def default_size(self, pipeline: Any) -> tuple[int, int]:
        size = int(pipeline.unet.config.sample_size) * self.vae_scale_factor(pipeline)
        return size, size

    def size_multiple(self, pipeline: Any) -> int:
        return self.vae_scale_factor(pipeline)

    def latent_shape(self, pipeline: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
        f = self.vae_scale_factor(pipeline)
        return (batch, int(pipeline.unet.config.in_channels), height // f, width // f)

    def scheduler_config(self, pipeline: Any) -> dict[str, Any]:
        """The scheduler config as the pipeline class would use it.

        ``StableDiffusionPipeline.__init__`` rewrites outdated configs (``steps_offset`` to 1,
        ``clip_sample`` to False); a DDIM schedule derived from a PNDM config would otherwise clip x0.
        """
        config = {**pipeline.scheduler.config, "_class_name": type(pipeline.scheduler).__name__}
        if config.get("steps_offset", 1) != 1:
            config["steps_offset"] = 1
        config["clip_sample"] = False
        return config

    def stepper(self, pipeline: Any, num_inference_steps: int, *, eta: float, height: int, width: int) -> DDIMStepper:
        return DDIMStepper(self.scheduler_config(pipeline), num_inference_steps, eta=eta)

    # -- conditioning and the denoiser --------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder.device
        cond, uncond = pipeline.encode_prompt(list(prompts), device, 1, guided, list(negative_prompts) if negative_prompts else None)
        return Conditioning({"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond} if guided else None)

    def denoiser_kwargs(self, cond: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The keyword arguments of ``unet(x, t, **kwargs)`` for one conditioning dict."""
        return {"encoder_hidden_states": cond["encoder_hidden_states"]}

    def predict(self, pipeline: Any, latents: torch.Tensor, timestep: Any, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        unet = pipeline.unet
        if cond.uncond is not None:
            model_in = torch.cat([latents, latents])
            merged = {k: torch.cat([cond.uncond[k], cond.cond[k]]) for k in cond.cond}
        else:
            model_in, merged = latents, cond.cond
        out = unet(model_in.to(unet.dtype), timestep, **self.denoiser_kwargs(merged), return_dict=False)[0]
        if cond.uncond is None:
            return out
        uncond, text = out.chunk(2)
        return uncond + guidance_scale * (text - uncond)

    # -- decoding -------------------------------------------------------------------------------------
    def unscale_latents(self, pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
        return latents / pipeline.vae.config.scaling_factor

    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        vae = pipeline.vae
        image = vae.decode(self.unscale_latents(pipeline, latents).to(vae.dtype), return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)
