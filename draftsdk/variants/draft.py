"""Full DRaFT: the gradient flows through all T sampling steps, each denoiser call checkpointed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import RewardBackprop, Rollout, StepContext


class DRaFT(RewardBackprop):
    """Full DRaFT: backpropagate through every sampling step (memory flat in T with checkpointing)."""

    name = "draft"

    def grad_steps_range(self) -> tuple[int, int]:
        return (self.num_steps, self.num_steps)

    def truncation(self, ctx: StepContext) -> int:
        """K, the number of final steps with gradient for the next rollout."""
        return self.num_steps

    def rollout(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> Rollout:
        s = ctx.sampler
        k = self.truncation(ctx)
        ctx.use_checkpointing(k)
        cond = ctx.encode(prompts)
        latents = s.denoise(noise, cond, grad_from=s.num_steps - k, generator=ctx.noise_gen, on_grad_step=ctx.guard_hook(cond))
        return Rollout(s.decode(latents, grad=True), list(prompts), k, ctx.take_kl())
