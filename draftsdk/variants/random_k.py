"""Randomised truncation (AlignProp-style): K drawn once per rollout, not once per step."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .base import StepContext
from .draft import DRaFT


class RandomKOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k_range: tuple[int, int] | None = Field(None, description="Inclusive range K is drawn from (default: 1..T).")


class RandomK(DRaFT):
    """DRaFT with K drawn uniformly from ``k_range`` once per rollout."""

    name = "draft-random-k"
    Options = RandomKOptions
    options: RandomKOptions  # the instance of ``Options`` the trainer built

    def check(self, num_steps: int) -> None:
        low, high = self.grad_steps_range()
        if not 1 <= low <= high <= num_steps:
            raise ValueError(f"k_range: {[low, high]} must satisfy 1 <= low <= high <= num_inference_steps={num_steps}")

    def grad_steps_range(self) -> tuple[int, int]:
        return self.options.k_range if self.options.k_range else (1, self.num_steps)  # pydantic made it a tuple

    def truncation(self, ctx: StepContext) -> int:
        return ctx.rng.randint(*self.grad_steps_range())
