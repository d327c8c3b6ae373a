"""ReFL (ImageReward's reward feedback learning): stop at a random late step, score the one-step x0 estimate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import RewardBackprop, Rollout, StepContext


class ReFLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refl_last_steps: int = Field(10, ge=1, description="Stop at a random step among the last m.")


class ReFL(RewardBackprop):
    """ReFL: one step with gradient at a random point among the last m, scored on its x0 prediction."""

    name = "refl"
    Options = ReFLOptions
    options: ReFLOptions  # the instance of ``Options`` the trainer built

    def check(self, num_steps: int) -> None:
        if self.options.refl_last_steps > num_steps:
            raise ValueError(f"refl_last_steps: {self.options.refl_last_steps} exceeds num_inference_steps={num_steps}")

    def rollout(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> Rollout:
        s = ctx.sampler
        ctx.use_checkpointing(1)
        cond = ctx.encode(prompts)
        stop = ctx.rng.randint(s.num_steps - self.options.refl_last_steps, s.num_steps - 1)
        latents = s.denoise(noise, cond, stop=stop, generator=ctx.noise_gen)
        out = s.model_output(latents, stop, cond, grad=True)
        ctx.guard(stop, latents, out, cond)
        with torch.enable_grad():
            pred_x0 = s.step(stop, latents, out, s.variance_noise(latents.shape, ctx.noise_gen)).pred_x0
        return Rollout(s.decode(pred_x0, grad=True), list(prompts), 1, ctx.take_kl(), {"stop_step": float(stop)})
