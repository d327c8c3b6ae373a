"""Training variants: where the gradient flows and which images are scored, one strategy per file.

| variant | gradient flows through |
| --- | --- |
| ``draft`` | all T steps (each denoiser call checkpointed: memory flat in T) |
| ``draft-k`` | the last K steps; the first T-K run under ``torch.no_grad()`` |
| ``draft-random-k`` | the last K steps, K drawn once per rollout from ``k_range`` |
| ``draft-lv`` | the last step, plus ``lv_copies`` re-noised copies of the final latent (DRaFT-LV) |
| ``refl`` | one step at a random point among the last m, with a one-step x0 prediction |
| ``ddpo`` | none: PPO on the sampler's step log-probabilities (for non-differentiable rewards) |

Third parties add one with the ``register_variants`` hook (see the "write a variant" how-to).

Examples:
    >>> from draftsdk.variants import get_variant, list_variants
    >>> list_variants()
    ['ddpo', 'draft', 'draft-k', 'draft-lv', 'draft-random-k', 'refl']
    >>> get_variant("draft-k").Options(k=3).k
    3
"""

from __future__ import annotations

from typing import Any

from ..extensions import variants as _registry
from .base import NoOptions, RewardBackprop, Rollout, StepContext, StepResult, Variant, batch_diversity, find_fault

__all__ = [
    "NoOptions",
    "RewardBackprop",
    "Rollout",
    "StepContext",
    "StepResult",
    "Variant",
    "batch_diversity",
    "find_fault",
    "get_variant",
    "list_variants",
]


def list_variants() -> list[str]:
    """Names of the registered variants."""
    return _registry.names()


def get_variant(name: str) -> Any:
    """The variant class registered as ``name`` (UnknownNameError with suggestions otherwise)."""
    return _registry.get(name)
