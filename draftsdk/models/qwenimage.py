"""Qwen-Image: ``QwenImagePipeline``, an MMDiT transformer on a Qwen2.5-VL text encoder, rectified flow.

The prompt is wrapped in the pipeline's system/user template; the last hidden states of Qwen2.5-VL,
less the template's first 34 tokens, are the text conditioning, with a mask over the valid tokens.
The pipeline pads each batch to its longest prompt; draftsdk pads every prompt to one fixed length
(the masked tokens are excluded from attention and the text positions do not depend on the padding,
so the images are the same) so that prompts encoded once and cached can be batched in any mix.
Guidance is true CFG (``true_cfg_scale``) against a negative prompt (``" "`` when none is given, as
the pipeline's examples use), with the guided velocity rescaled per token to the norm of the
conditional one. Latents are the 3D VAE's 16-channel latents packed 2x2 into 64-channel tokens;
decoding undoes ``latents_mean``/``latents_std`` and decodes one frame. The stepper is flow-matching
Euler on ``linspace(1, 1/T, T)`` with the dynamic shift ``mu`` from the number of image tokens and
the checkpoint's ``shift_terminal``. LoRA adapts the attention projections of both streams
(``to_q/k/v``, ``to_out.0``, ``add_q/k/v_proj``, ``to_add_out``); keys start with ``transformer.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import Conditioning, PackedLatents

__all__ = ["QwenImage"]


class QwenImage(PackedLatents):
    """Qwen-Image (MMDiT transformer, Qwen2.5-VL text encoder, true CFG with norm rescale, flow matching)."""

    name = "qwenimage"
    description = "Qwen-Image"
    pipeline_classes = ("QwenImagePipeline",)
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    denoiser_name = "transformer"
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
    default_steps = 50
    default_guidance = 4.0  # the pipeline's true_cfg_scale
    default_negative_prompt = " "
    honours_flow_sigmas = False  # QwenImagePipeline passes linspace sigmas whatever the scheduler config says

    def max_sequence_length(self, pipeline: Any) -> int:
        """Text tokens every prompt is padded to: 512 (the pipeline's default cut), or fewer when the tokenizer is shorter."""
        return int(min(512, getattr(pipeline.tokenizer, "model_max_length", 512)))

    # -- shapes -----------------------------------------------------------------------------------
    def vae_scale_factor(self, pipeline: Any) -> int:
        return 2 ** len(pipeline.vae.temperal_downsample)  # 8 for the published VAE

    def latent_shape(self, pipeline: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
        h, w = self._grid(pipeline, height, width)
        return (batch, h * w, int(pipeline.transformer.config.in_channels))

    # -- conditioning and the denoiser ------------------------------------------------------------
    def _embed(self, pipeline: Any, prompts: Sequence[str], device: Any) -> dict[str, torch.Tensor]:
        length = self.max_sequence_length(pipeline)
        embeds, mask = pipeline.encode_prompt(list(prompts), device=device, num_images_per_prompt=1, max_sequence_length=length)
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        pad = length - embeds.shape[1]  # to one fixed length, so that any cached prompts batch together
        embeds = torch.nn.functional.pad(embeds, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
        return {"encoder_hidden_states": embeds, "encoder_hidden_states_mask": mask}

    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder.device
        negative = None
        if guided:
            negatives = list(negative_prompts) if negative_prompts is not None else [self.default_negative_prompt] * len(prompts)
            negative = self._embed(pipeline, negatives, device)
        h, w = self._grid(pipeline, height, width)
        # the token grid for the transformer's RoPE, kept in the shape of an empty tensor: it moves with the
        # conditioning and reading it never waits for the GPU
        return Conditioning(self._embed(pipeline, prompts, device), negative, shared={"img_grid": torch.empty(h, w, 0)})

    def predict(self, pipeline: Any, latents: torch.Tensor, timestep: Any, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        transformer = pipeline.transformer
        model_in, merged = self.cfg_batch(latents, cond)
        batch = model_in.shape[0]
        h, w = cond.shared["img_grid"].shape[:2]
        out = transformer(  # no guidance input: diffusers' QwenImage transformer has no guidance embedding
            hidden_states=model_in.to(transformer.dtype),
            timestep=timestep.expand(batch).to(latents.dtype) / 1000,
            encoder_hidden_states=merged["encoder_hidden_states"],
            encoder_hidden_states_mask=merged["encoder_hidden_states_mask"],
            img_shapes=[[(1, h, w)]] * batch,
            return_dict=False,
        )[0]
        if cond.uncond is None:
            return out
        uncond, text = out.chunk(2)
        combined = uncond + guidance_scale * (text - uncond)
        # the pipeline's norm rescale: each token's guided velocity gets the conditional one's norm
        return combined * (torch.norm(text, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True))

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        vae = pipeline.vae
        h, w = self._grid(pipeline, height, width)
        batch, _, channels = latents.shape
        x = latents.view(batch, h, w, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(batch, channels // 4, 1, 2 * h, 2 * w)
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(x.device, x.dtype)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(x.device, x.dtype)
        image = vae.decode((x * std + mean).to(vae.dtype), return_dict=False)[0][:, :, 0]
        return (image / 2 + 0.5).clamp(0, 1)
