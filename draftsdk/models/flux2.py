"""FLUX.2-Klein: ``Flux2KleinPipeline``, a FLUX.2 double/single-stream transformer on a Qwen3 text encoder.

The prompt goes through Qwen3's chat template (one user turn, thinking disabled), is padded to a fixed
length, and the hidden states of three decoder layers (9, 18, 27) are concatenated per token as the
text conditioning; text and image tokens carry 4-axis position ids ``(t, h, w, l)``. There is no
pooled embedding and no guidance input: the base models run true classifier-free guidance against
the empty prompt (``guidance_scale > 1``), the step-distilled ones (``is_distilled``) run no guidance.

Latents are the VAE's 32-channel latents patchified 2x2 into 128 channels at 1/16 of the image size,
``(B, 128, H/16, W/16)``, the form the pipeline takes as ``latents``; each transformer call packs them
into a token sequence and back. Decoding undoes the VAE's batch-norm statistics
(``x * sqrt(running_var + eps) + running_mean``) and the 2x2 patchify before the VAE decoder.
The stepper is flow-matching Euler on ``linspace(1, 1/T, T)`` shifted by FLUX.2's empirical ``mu``,
which depends on the number of image tokens and on T. LoRA adapts the attention projections of both
streams of the double blocks and the fused ``to_qkv_mlp_proj`` of the single blocks, the layers the
community's FLUX.2 LoRAs train (BFL's ``img_attn.qkv``/``proj``, ``txt_attn.qkv``/``proj``, ``linear1``);
keys start with ``transformer.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import Conditioning, PackedLatents

__all__ = ["Flux2Klein", "flux2_empirical_mu"]


def flux2_empirical_mu(image_seq_len: int, num_steps: int) -> float:
    """FLUX.2's shift ``mu`` for ``image_seq_len`` tokens and ``num_steps`` steps (diffusers'
    ``compute_empirical_mu``: a fit in both, linear in the tokens alone beyond 4300 tokens).

    Examples:
        >>> round(flux2_empirical_mu(4096, 50), 4)
        2.0234
    """
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return float(a2 * image_seq_len + b2)
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    a = (m_200 - m_10) / 190.0
    b = m_200 - 200.0 * a
    return float(a * num_steps + b)


class Flux2Klein(PackedLatents):
    """FLUX.2-Klein base and distilled (FLUX.2 transformer, Qwen3 text encoder, flow matching)."""

    name = "flux2-klein"
    description = "FLUX.2-Klein"
    pipeline_classes = ("Flux2KleinPipeline",)
    required_components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    denoiser_name = "transformer"
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "to_qkv_mlp_proj")
    default_steps = 50
    default_guidance = 4.0
    text_encoder_out_layers = (9, 18, 27)  # the pipeline's default: the hidden states concatenated per token

    def is_distilled(self, pipeline: Any) -> bool:
        return bool(getattr(pipeline.config, "is_distilled", False))

    def uses_cfg(self, pipeline: Any, guidance_scale: float) -> bool:
        return guidance_scale > 1.0 and not self.is_distilled(pipeline)  # as the pipeline's do_classifier_free_guidance

    def max_sequence_length(self, pipeline: Any) -> int:
        """Text tokens: 512 (the pipeline's default), or fewer when the tokenizer is shorter."""
        return int(min(512, getattr(pipeline.tokenizer, "model_max_length", 512)))

    # -- shapes -----------------------------------------------------------------------------------
    def latent_shape(self, pipeline: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
        h, w = self._grid(pipeline, height, width)
        return (batch, int(pipeline.transformer.config.in_channels), h, w)

    def shift_mu(self, image_tokens: int, num_inference_steps: int, scheduler_config: dict[str, Any]) -> float:
        return flux2_empirical_mu(image_tokens, num_inference_steps)

    # -- conditioning and the denoiser ------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        device = pipeline.text_encoder.device
        kwargs = dict(device=device, num_images_per_prompt=1, max_sequence_length=self.max_sequence_length(pipeline),
                      text_encoder_out_layers=self.text_encoder_out_layers)
        embeds, text_ids = pipeline.encode_prompt(list(prompts), **kwargs)
        negative = None
        if guided:  # the pipeline's negative prompt is "" (it takes other negatives only as embeddings)
            negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
            negative = {"encoder_hidden_states": pipeline.encode_prompt(negatives, **kwargs)[0]}
        h, w = self._grid(pipeline, height, width)
        image_ids = pipeline._prepare_latent_ids(torch.empty(1, 0, h, w)).to(device)
        return Conditioning({"encoder_hidden_states": embeds}, negative, shared={"txt_ids": text_ids[:1], "img_ids": image_ids})

    def predict(self, pipeline: Any, latents: torch.Tensor, timestep: Any, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        transformer = pipeline.transformer
        model_in, merged = self.cfg_batch(latents, cond)
        batch, channels, h, w = model_in.shape
        tokens = model_in.reshape(batch, channels, h * w).permute(0, 2, 1)  # the pipeline's _pack_latents
        out = transformer(
            hidden_states=tokens.to(transformer.dtype),
            timestep=timestep.expand(batch).to(latents.dtype) / 1000,
            guidance=None,
            encoder_hidden_states=merged["encoder_hidden_states"],
            txt_ids=cond.shared["txt_ids"],
            img_ids=cond.shared["img_ids"],
            return_dict=False,
        )[0]
        out = out.permute(0, 2, 1).reshape(batch, -1, h, w)  # tokens back on the grid (the ids' row-major order)
        return self.apply_cfg(out, cond, guidance_scale)

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        vae = pipeline.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(latents.device, latents.dtype)
        x = latents * std + mean
        batch, channels, h, w = x.shape  # unpatchify 2x2, as the pipeline's _unpatchify_latents
        x = x.reshape(batch, channels // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(batch, channels // 4, 2 * h, 2 * w)
        return self.vae_decode(pipeline, x)
