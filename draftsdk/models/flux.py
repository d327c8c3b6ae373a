"""FLUX.1 (dev and schnell): ``FluxPipeline``, a double/single-stream transformer, rectified flow.

CLIP's pooled embedding and T5's hidden states condition the transformer; latents are packed 2x2
into a sequence of tokens with position ids (``img_ids``, ``txt_ids``). FLUX.1-dev is
guidance-distilled: the guidance scale is an input of the transformer (``guidance_embeds``), one call
per step and no negative prompts; schnell has no guidance input. The stepper is flow-matching Euler
with the pipeline's sigmas (``linspace(1, 1/T, T)``) shifted by ``mu``, which grows with the number
of image tokens. LoRA adapts the attention projections of both streams (``to_q/k/v``, ``to_out.0``,
``add_q/k/v_proj``, ``to_add_out``), as the community's FLUX LoRAs do; keys start with ``transformer.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import Conditioning, PackedLatents

__all__ = ["Flux"]


class Flux(PackedLatents):
    """FLUX.1 dev/schnell (MMDiT transformer, CLIP + T5, packed latents, flow matching)."""

    name = "flux"
    description = "FLUX.1"
    pipeline_classes = ("FluxPipeline",)
    required_components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    denoiser_name = "transformer"
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    default_steps = 28
    default_guidance = 3.5

    def uses_cfg(self, pipeline: Any, guidance_scale: float) -> bool:
        return False  # guidance is embedded (dev) or absent (schnell)

    def max_sequence_length(self, pipeline: Any) -> int:
        """T5 tokens: 512 (the pipeline's default), or fewer when the tokenizer is shorter."""
        return int(min(512, getattr(pipeline.tokenizer_2, "model_max_length", 512)))

    # -- shapes -----------------------------------------------------------------------------------
    def latent_shape(self, pipeline: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
        h, w = self._grid(pipeline, height, width)
        return (batch, h * w, int(pipeline.transformer.config.in_channels))

    # -- conditioning and the denoiser ------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder.device
        embeds, pooled, text_ids = pipeline.encode_prompt(
            list(prompts), None, device=device, num_images_per_prompt=1, max_sequence_length=self.max_sequence_length(pipeline)
        )
        h, w = self._grid(pipeline, height, width)
        image_ids = pipeline._prepare_latent_image_ids(1, h, w, device, embeds.dtype)
        return Conditioning({"encoder_hidden_states": embeds, "pooled_projections": pooled},
                            shared={"txt_ids": text_ids, "img_ids": image_ids})

    def predict(self, pipeline: Any, latents: torch.Tensor, timestep: Any, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        transformer = pipeline.transformer
        batch = latents.shape[0]
        guidance = None
        if transformer.config.guidance_embeds:
            guidance = torch.full((batch,), guidance_scale, device=latents.device, dtype=torch.float32)
        return transformer(
            hidden_states=latents.to(transformer.dtype),
            timestep=timestep.expand(batch).to(latents.dtype) / 1000,
            guidance=guidance,
            pooled_projections=cond.cond["pooled_projections"],
            encoder_hidden_states=cond.cond["encoder_hidden_states"],
            txt_ids=cond.shared["txt_ids"],
            img_ids=cond.shared["img_ids"],
            return_dict=False,
        )[0]

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        config = pipeline.vae.config
        h, w = self._grid(pipeline, height, width)
        batch, _, channels = latents.shape
        grid = latents.view(batch, h, w, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(batch, channels // 4, 2 * h, 2 * w)
        return self.vae_decode(pipeline, grid / config.scaling_factor + (config.shift_factor or 0.0))
