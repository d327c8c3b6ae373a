"""DRaFT-K: the gradient flows through the last K steps only; the first T - K run under no_grad."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .base import StepContext
from .draft import DRaFT


class DRaFTKOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(1, ge=1, description="Steps with gradient (DRaFT-K).")


class DRaFTK(DRaFT):
    """DRaFT-K: truncated backpropagation through the last K sampling steps (K = 1 is DRaFT-1)."""

    name = "draft-k"
    Options = DRaFTKOptions
    options: DRaFTKOptions  # the instance of ``Options`` the trainer built

    def check(self, num_steps: int) -> None:
        if self.options.k > num_steps:
            raise ValueError(f"k: k={self.options.k} is larger than num_inference_steps={num_steps}; use k <= num_inference_steps")

    def grad_steps_range(self) -> tuple[int, int]:
        return (self.options.k, self.options.k)

    def truncation(self, ctx: StepContext) -> int:
        return self.options.k
