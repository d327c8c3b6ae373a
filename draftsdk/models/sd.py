"""Stable Diffusion 1.x / 2.x: ``StableDiffusionPipeline``, one CLIP text encoder, a UNet, DDIM.

Epsilon (SD 1.x, SD 2.x base) and v-prediction (SD 2.x 768) checkpoints both work: the stepper reads
``prediction_type`` from the scheduler config. Whatever scheduler class the folder names (PNDM in
the hub's SD 1.4/1.5 folders, Euler in many fine-tunes), sampling is DDIM on the checkpoint's own
noise schedule, exactly as ``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from ..steppers import DDIMStepper
from .base import Conditioning, ModelFamily

__all__ = ["StableDiffusion"]


class StableDiffusion(ModelFamily):
    """Stable Diffusion 1.x/2.x (UNet, one CLIP text encoder, DDIM)."""

    name = "sd"
    description = "Stable Diffusion 1.x/2.x"
    pipeline_classes = ("StableDiffusionPipeline",)
    required_components: ClassVar[tuple[str, ...]] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # SDXL adds more
    denoiser_name = "unet"
    default_steps = 50
    default_guidance = 7.5
    load_kwargs = {"safety_checker": None, "requires_safety_checker": False}

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
        model_in, merged = self.cfg_batch(latents, cond)
        out = unet(model_in.to(unet.dtype), timestep, **self.denoiser_kwargs(merged), return_dict=False)[0]
        return self.apply_cfg(out, cond, guidance_scale)

    # -- decoding -------------------------------------------------------------------------------------
    def unscale_latents(self, pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
        return latents / pipeline.vae.config.scaling_factor

    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        return self.vae_decode(pipeline, self.unscale_latents(pipeline, latents))
