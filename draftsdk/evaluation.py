"""Evaluation during training: fixed prompts x fixed seeds, sampled without gradient, scored, gridded."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .images import make_grid, save_png
from .rewards import RewardOutput, WeightedSum
from .sampling import Sampler
from .variants.base import batch_diversity

__all__ = ["Evaluator"]


class Evaluator:
    """Samples every evaluation prompt with every seed (same noise at every evaluation) and scores them.

    Args:
        sampler: the trainer's sampler (its denoiser carries the adapter being trained).
        objective: what is scored.
        seeds: one image per seed and prompt.
        negative_prompt: the config's negative prompt.
        autocast: a context-manager factory for the sampling part.
        watched: rewards scored on the same images and logged as ``eval/<name>`` (not optimised).
    """

    def __init__(
        self,
        sampler: Sampler,
        objective: WeightedSum,
        seeds: Sequence[int],
        *,
        negative_prompt: str | None = None,
        autocast: Any = contextlib.nullcontext,
        watched: WeightedSum | None = None,
    ) -> None:
        self.sampler, self.objective, self.seeds = sampler, objective, list(seeds)
        self.negative_prompt = negative_prompt
        self.autocast = autocast
        self.watched = watched

    def noise(self) -> torch.Tensor:
        return torch.cat([self.sampler.initial_noise(1, torch.Generator().manual_seed(seed)) for seed in self.seeds])

    @torch.no_grad()
    def evaluate(self, prompts: Sequence[str]) -> tuple[torch.Tensor, RewardOutput]:
        """Images (rows are prompts, columns seeds) and their scores."""
        s = self.sampler
        all_prompts = [p for p in prompts for _ in self.seeds]
        noise = self.noise()
        noise = noise.repeat(len(prompts), *([1] * (noise.dim() - 1)))
        negatives = [self.negative_prompt] * len(all_prompts) if self.negative_prompt else None
        with self.autocast():
            cond = s.encode(all_prompts, negatives)
            latents = s.denoise(noise, cond, generator=torch.Generator().manual_seed(12345))
            images = s.decode(latents, grad=False).float()
        return images, self.objective.evaluate(images, all_prompts)

    def record(self, step: int, prompts: Sequence[str], grid_path: Path | None) -> dict[str, Any]:
        """The ``kind == "eval"`` metrics record of ``step``; writes the image grid to ``grid_path`` when given."""
        images, scores = self.evaluate(prompts)
        record: dict[str, Any] = {"kind": "eval", "step": step, **{f"eval/{k.split('/', 1)[1]}": v for k, v in scores.summary().items()}}
        record["eval/diversity"] = batch_diversity(images)
        if self.watched is not None:
            with torch.no_grad():
                watched = self.watched.evaluate(images, [p for p in prompts for _ in self.seeds])
            for label, values in watched.terms.items():
                record[f"eval/{label}"] = float(values.float().mean())
                record[f"eval/{label}/std"] = float(values.float().std(unbiased=False))
        if grid_path is not None:
            labels = [p if len(p) <= 28 else p[:25] + "..." for p in prompts]
            grid = make_grid(
                images,
                ncol=len(self.seeds),
                row_labels=labels,
                col_labels=[f"seed {s}" for s in self.seeds],
                title=f"step {step}  reward {record['eval/mean']:.4g}",
                scale=max(1, 128 // images.shape[-1]),
            )
            save_png(grid, grid_path)
        return record
