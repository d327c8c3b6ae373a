"""DDPO (Black et al. 2023): policy-gradient fine-tuning on the sampler's step log-probabilities.

The baseline DRaFT is compared against, and the way to train on rewards without a gradient (e.g.
JPEG compressibility). Sampling is stochastic (``eta > 0``, DDPO uses 1): each step draws
``x_{t-1} ~ N(mean_θ(x_t), σ_t²)`` (the stepper's ``mean`` and ``std``), whose log-probability is
differentiable in θ. Rewards are normalised per prompt (a running buffer, as in ddpo-pytorch),
clipped, and the PPO-clipped surrogate ``max(-A·ρ, -A·clip(ρ, 1±ε))`` is accumulated over the
trained timesteps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DraftError
from .base import StepContext, StepResult, Variant, batch_diversity

__all__ = ["DDPO", "PerPromptStats", "gaussian_log_prob"]


class PerPromptStats:
    """Per-prompt running mean/std of rewards (buffer of the last ``buffer`` values per prompt).

    Prompts with fewer than ``min_count`` values so far are normalised with the batch statistics.
    """

    def __init__(self, buffer: int = 32, min_count: int = 16) -> None:
        self.buffer, self.min_count = buffer, min_count
        self.values: dict[str, deque[float]] = {}

    def advantages(self, prompts: Sequence[str], rewards: torch.Tensor) -> torch.Tensor:
        r = rewards.detach().float().cpu()
        out = torch.empty_like(r)
        batch_mean, batch_std = float(r.mean()), float(r.std(unbiased=False)) + 1e-6
        for prompt in set(prompts):
            idx = [i for i, p in enumerate(prompts) if p == prompt]
            store = self.values.setdefault(prompt, deque(maxlen=self.buffer))
            store.extend(float(r[i]) for i in idx)
            if len(store) >= self.min_count:
                values = torch.tensor(list(store))
                mean, std = float(values.mean()), float(values.std(unbiased=False)) + 1e-6
            else:
                mean, std = batch_mean, batch_std
            out[idx] = (r[idx] - mean) / std
        return out

    def state_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.values.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.values = {k: deque(v, maxlen=self.buffer) for k, v in state.items()}


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Log-density of ``x`` under N(mean, std²), averaged over all but the batch dimension."""
    log = -((x.float() - mean.float()) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return log.flatten(1).mean(dim=1)


class DDPOOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ddpo_clip_range: float = Field(1e-4, gt=0, description="PPO clip range.")
    ddpo_adv_clip: float = Field(5.0, gt=0, description="Advantage clipping.")
    ddpo_train_fraction: float = Field(1.0, gt=0, le=1.0, description="Fraction of timesteps trained per rollout.")


class DDPO(Variant):
    """DDPO: PPO on the step log-probabilities of a stochastic sampler (rewards need no gradient)."""

    name = "ddpo"
    needs_gradient = False
    needs_stochastic_sampler = True
    Options = DDPOOptions

    def __init__(self, options: BaseModel, num_steps: int) -> None:
        super().__init__(options, num_steps)
        self.stats = PerPromptStats()

    def grad_steps_range(self) -> tuple[int, int]:
        return (0, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"per_prompt": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state.get("per_prompt", {}))

    def train_step(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> StepResult:
        opts, s = self.options, ctx.sampler
        T = s.num_steps
        with ctx.autocast():
            cond = ctx.encode(prompts)
            latents = noise.float()
            trajectory: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
            with torch.no_grad():
                for index in range(T):
                    out = s.model_output(latents, index, cond, grad=False)
                    step = s.step(index, latents, out, s.variance_noise(latents.shape, ctx.noise_gen))
                    if step.std > 0:  # a deterministic step (e.g. to alpha = 1 at the end) has no log-probability
                        trajectory.append((index, latents, step.prev, gaussian_log_prob(step.prev, step.mean, step.std)))
                    latents = step.prev
                images = s.decode(latents, grad=False)
        scores = ctx.score(images, prompts)
        advantages = self.stats.advantages(list(prompts), scores.total)
        advantages = advantages.clamp(-opts.ddpo_adv_clip, opts.ddpo_adv_clip).to(s.device)
        if not trajectory:
            raise DraftError("ddpo: no sampling step is stochastic (eta > 0 gives every step a variance); raise eta")
        n_train = min(len(trajectory), max(1, round(T * opts.ddpo_train_fraction)))
        chosen = sorted(ctx.rng.sample(range(len(trajectory)), n_train))
        ctx.use_checkpointing(1)
        total_loss, clipped = 0.0, 0.0
        finite = bool(torch.isfinite(scores.total).all())
        for index, x_t, x_prev, old_log_prob in (trajectory[i] for i in chosen):
            with ctx.autocast():
                out = s.model_output(x_t, index, cond, grad=True)
                with torch.enable_grad():
                    step = s.step(index, x_t, out, torch.zeros_like(x_t))
                    log_prob = gaussian_log_prob(x_prev, step.mean, step.std)
            ratio = torch.exp(log_prob - old_log_prob)
            unclipped = -advantages * ratio
            clipped_loss = -advantages * ratio.clamp(1 - opts.ddpo_clip_range, 1 + opts.ddpo_clip_range)
            loss = torch.maximum(unclipped, clipped_loss).mean() / n_train
            finite = finite and ctx.backward(loss)
            total_loss += float(loss.detach())
            clipped += float(((ratio - 1).abs() > opts.ddpo_clip_range).float().mean()) / n_train
        metrics = {"loss": total_loss, **scores.summary(), "diversity": batch_diversity(images), "grad_steps": n_train}
        metrics["clip_fraction"] = clipped
        return StepResult(metrics, finite, len(prompts))
