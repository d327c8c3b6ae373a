"""DDPO (Black et al. 2023): policy-gradient fine-tuning on the sampler's step log-probabilities.

The baseline DRaFT is compared against, and the way to train on rewards without a gradient (e.g.
JPEG compressibility). Sampling is stochastic (``eta > 0``, DDPO uses 1): each step draws
``x_{t-1} ~ N(mean_θ(x_t), σ_t²)`` (the stepper's ``mean`` and ``std``), whose log-probability is
differentiable in θ. Rewards are normalised per prompt (a running buffer over the samples of every
process, as in ddpo-pytorch), clipped, and the PPO-clipped surrogate ``max(-A·ρ, -A·clip(ρ, 1±ε))``
is accumulated over the trained timesteps. As in the reference implementation, one rollout batch
feeds several optimizer updates (``ddpo_minibatches`` × ``ddpo_inner_epochs``): after the first, the
policy has moved, ``ρ ≠ 1`` and the clipping bounds the update.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DraftError
from .base import StepContext, StepResult, Variant, batch_diversity, find_fault

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
    ddpo_minibatches: int = Field(
        2, ge=1, le=64,
        description="Optimizer updates per rollout batch: the batch is split into this many minibatches; the later "
        "ones are off-policy, which is where PPO clipping acts (at most batch_size).",
    )
    ddpo_inner_epochs: int = Field(1, ge=1, le=16, description="Passes over each rollout batch (DDPO's num_inner_epochs).")


class DDPO(Variant):
    """DDPO: PPO on the step log-probabilities of a stochastic sampler (rewards need no gradient)."""

    name = "ddpo"
    needs_gradient = False
    needs_stochastic_sampler = True
    Options = DDPOOptions
    options: DDPOOptions  # the instance of ``Options`` the trainer built

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
        batch = len(prompts)
        minibatches = min(opts.ddpo_minibatches, batch)
        if ctx.accumulation > 1 and minibatches * opts.ddpo_inner_epochs > 1:
            raise DraftError(
                "ddpo: grad_accum_steps > 1 cannot be combined with several updates per rollout batch; "
                "set ddpo_minibatches = ddpo_inner_epochs = 1, or grad_accum_steps = 1 and a larger batch_size"
            )
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
        fault = find_fault(scores)
        if fault is not None:  # nothing to learn from: skip the update (same metric keys on every rank)
            metrics = {"loss": float("nan"), **scores.summary(), "diversity": batch_diversity(images), "grad_steps": 0}
            return StepResult({**metrics, "clip_fraction": float("nan"), "updates": 0.0}, False, batch, fault)
        if not trajectory:
            raise DraftError("ddpo: no sampling step is stochastic (eta > 0 gives every step a variance); raise eta")
        advantages = self._advantages(ctx, list(prompts), scores.total).to(s.device)
        n_train = min(len(trajectory), max(1, round(T * opts.ddpo_train_fraction)))
        ctx.use_checkpointing(1)
        updates = opts.ddpo_inner_epochs * minibatches
        total_loss, clipped, done, finite = 0.0, 0.0, 0, True
        for _ in range(opts.ddpo_inner_epochs):
            order = list(range(batch))
            ctx.rng.shuffle(order)
            for part in range(minibatches):
                rows = sorted(order[part::minibatches])
                chosen = sorted(ctx.rng.sample(range(len(trajectory)), n_train))
                loss, frac, ok = self._minibatch_loss(ctx, [prompts[i] for i in rows], rows, advantages, trajectory, chosen)
                total_loss += loss / updates
                clipped += frac / updates
                finite = finite and ok
                done += 1
                if done < updates:  # the last update is the trainer's own optimizer step
                    ctx.optimizer_step()
        metrics = {"loss": total_loss, **scores.summary(), "diversity": batch_diversity(images), "grad_steps": n_train}
        metrics["clip_fraction"] = clipped
        metrics["updates"] = float(updates)
        return StepResult(metrics, finite, batch)

    def _advantages(self, ctx: StepContext, prompts: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """Per-prompt normalised, clipped advantages, with statistics over every process's samples."""
        everyone = ctx.gather((prompts, rewards.detach().float().cpu().tolist()))
        all_prompts = [p for ps, _ in everyone for p in ps]
        all_rewards = torch.tensor([r for _, rs in everyone for r in rs])
        start = sum(len(ps) for ps, _ in everyone[: ctx.rank])
        advantages = self.stats.advantages(all_prompts, all_rewards)[start : start + len(prompts)]
        return advantages.clamp(-self.options.ddpo_adv_clip, self.options.ddpo_adv_clip)

    def _minibatch_loss(
        self,
        ctx: StepContext,
        prompts: list[str],
        rows: list[int],
        advantages: torch.Tensor,
        trajectory: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]],
        chosen: list[int],
    ) -> tuple[float, float, bool]:
        """Backpropagate the clipped surrogate of ``rows`` over the ``chosen`` timesteps; (loss, clip fraction, finite)."""
        s, clip = ctx.sampler, self.options.ddpo_clip_range
        cond = ctx.encode(prompts)
        adv = advantages[rows]
        total, clipped, finite = 0.0, 0.0, True
        for index, x_t, x_prev, old_log_prob in (trajectory[i] for i in chosen):
            with ctx.autocast():
                out = s.model_output(x_t[rows], index, cond, grad=True)
                with torch.enable_grad():
                    step = s.step(index, x_t[rows], out, torch.zeros_like(x_t[rows]))
                    log_prob = gaussian_log_prob(x_prev[rows], step.mean, step.std)
            ratio = torch.exp(log_prob - old_log_prob[rows])
            loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean() / len(chosen)
            finite = ctx.backward(loss) and finite
            total += float(loss.detach())
            clipped += float(((ratio - 1).abs() > clip).float().mean()) / len(chosen)
        return total, clipped, finite
