"""DRaFT-LV: DRaFT-1 plus n re-noised copies of the final latent, each denoised one step with gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import RewardBackprop, Rollout, StepContext


class DRaFTLVOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lv_copies: int = Field(2, ge=1, le=64, description="Re-noised copies of the final latent (n).")


class DRaFTLV(RewardBackprop):
    """DRaFT-LV: lower-variance DRaFT-1 (the last step, plus ``lv_copies`` re-noised copies of its result)."""

    name = "draft-lv"
    Options = DRaFTLVOptions
    options: DRaFTLVOptions  # the instance of ``Options`` the trainer built

    def rollout(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> Rollout:
        # DRaFT-1 on the trajectory, then n copies of its final latent (stop-grad) re-noised to the
        # last step's noise level and denoised in one batched call: no VAE re-encode, no repeated forward.
        s, n = ctx.sampler, self.options.lv_copies
        ctx.use_checkpointing(1)
        cond = ctx.encode(prompts)
        last = s.num_steps - 1
        before = s.denoise(noise, cond, stop=last, generator=ctx.noise_gen)
        out = s.model_output(before, last, cond, grad=True)
        ctx.guard(last, before, out, cond)
        with torch.enable_grad():
            first = s.step(last, before, out, s.variance_noise(before.shape, ctx.noise_gen)).prev
        final = first.detach()
        copies = torch.cat([
            s.add_noise(final, last, torch.randn(final.shape, generator=ctx.noise_gen).to(final)) for _ in range(n)
        ])
        repeated = cond.repeat(n)
        out = s.model_output(copies, last, repeated, grad=True)
        ctx.guard(last, copies, out, repeated)
        with torch.enable_grad():
            renoised = s.step(last, copies, out, s.variance_noise(copies.shape, ctx.noise_gen)).prev
        images = s.decode(torch.cat([first, renoised]), grad=True)
        return Rollout(images, list(prompts) * (n + 1), 1, ctx.take_kl())
