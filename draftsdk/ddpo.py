"""DDPO (Black et al. 2023): policy-gradient fine-tuning on the DDIM log-probabilities.

The baseline DRaFT is compared against, and the way to train on rewards without a gradient (e.g.
JPEG compressibility). Sampling is stochastic (``eta > 0``, DDPO uses 1): each DDIM step draws
``x_{t-1} ~ N(mean_θ(x_t), σ_t²)``, whose log-probability is differentiable in θ. Rewards are
normalised per prompt (a running buffer, as in ddpo-pytorch), clipped, and the PPO-clipped
surrogate ``max(-A·ρ, -A·clip(ρ, 1±ε))`` is accumulated over the trained timesteps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["PerPromptStats", "gaussian_log_prob", "ddpo_step"]


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


def ddpo_step(trainer: Trainer, prompts: Sequence[str], noise: torch.Tensor) -> tuple[dict[str, Any], bool]:
    """One DDPO rollout and backward pass (the optimizer step is the trainer's)."""
    cfg, s = trainer.config, trainer.sampler
    T = s.num_steps
    if not hasattr(trainer, "ddpo_stats"):
        trainer.ddpo_stats = PerPromptStats()
    negatives = [cfg.negative_prompt] * len(prompts) if cfg.negative_prompt else None
    with trainer._autocast():
        embeds = s.encode(prompts, negatives)
        latents = noise
        trajectory: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        with torch.no_grad():
            for index in range(T):
                out = s.model_output(latents, index, embeds, grad=False)
                step = s.step(index, latents, out, s.variance_noise(latents.shape, trainer.noise_gen))
                trajectory.append((index, latents, step.prev, gaussian_log_prob(step.prev, step.mean, step.std)))
                latents = step.prev
            images = s.decode(latents, grad=False)
            scores = trainer.objective.evaluate(images, list(prompts))
    advantages = trainer.ddpo_stats.advantages(list(prompts), scores.total)
    advantages = advantages.clamp(-cfg.ddpo_adv_clip, cfg.ddpo_adv_clip).to(trainer.device)
    n_train = max(1, round(T * cfg.ddpo_train_fraction))
    chosen = sorted(trainer.rng.sample(range(T), n_train))
    trainer._use_checkpointing(1)
    total_loss = 0.0
    clipped = 0.0
    finite = bool(torch.isfinite(scores.total).all())
    for index, x_t, x_prev, old_log_prob in (trajectory[i] for i in chosen):
        with trainer._autocast():
            out = s.model_output(x_t, index, embeds, grad=True)
            with torch.enable_grad():
                step = s.step(index, x_t, out, torch.zeros_like(x_t) if s.eta > 0 else None)
                log_prob = gaussian_log_prob(x_prev, step.mean, step.std)
        ratio = torch.exp(log_prob - old_log_prob)
        unclipped = -advantages * ratio
        clipped_loss = -advantages * ratio.clamp(1 - cfg.ddpo_clip_range, 1 + cfg.ddpo_clip_range)
        loss = torch.maximum(unclipped, clipped_loss).mean() / n_train
        finite = finite and bool(torch.isfinite(loss))
        if finite:
            trainer.scaler.scale(loss / cfg.grad_accum_steps).backward()
        total_loss += float(loss.detach())
        clipped += float(((ratio - 1).abs() > cfg.ddpo_clip_range).float().mean()) / n_train
    trainer.queries += len(prompts) * trainer.dist.world_size
    from .trainer import batch_diversity

    metrics = {"loss": total_loss, **scores.summary(), "diversity": batch_diversity(images), "grad_steps": n_train}
    metrics["clip_fraction"] = clipped
    return metrics, finite
