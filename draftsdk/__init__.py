"""draftsdk: fine-tune text-to-image diffusion models directly on differentiable rewards (DRaFT).

Examples:
    >>> import draftsdk
    >>> objective = draftsdk.combine({"brightness": 1.0, "saturation": 0.2})
    >>> objective
    WeightedSum(1*brightness + 0.2*saturation)

Importing draftsdk is cheap: torch, diffusers and peft load only when the trainer, the sampler or a
reward is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DraftError, DuplicateRewardError, PluginLoadError, RewardContractError, UnknownRewardError
from .hookspecs import hookimpl
from .registry import RewardInfo, RewardMeta, get_reward, list_rewards, reward_info
from .rewards import Reward, RewardOutput, Term, WeightedSum, check_inputs, combine, reward

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "draftsdk.config",
    "Trainer": "draftsdk.trainer",
    "TrainResult": "draftsdk.trainer",
    "sample": "draftsdk.sampling",
    "SampleOutput": "draftsdk.sampling",
    "load_pipeline": "draftsdk.sampling",
}
_LAZY_MODULES = {"lora", "models", "plugins", "prompts", "sampling", "steppers", "testing", "variants"}

__all__ = [
    "DraftError",
    "DuplicateRewardError",
    "PluginLoadError",
    "Reward",
    "RewardContractError",
    "RewardInfo",
    "RewardMeta",
    "RewardOutput",
    "Term",
    "UnknownRewardError",
    "WeightedSum",
    "check_inputs",
    "combine",
    "get_reward",
    "hookimpl",
    "list_rewards",
    "reward",
    "reward_info",
    *_LAZY,
    *sorted(_LAZY_MODULES),
]

if TYPE_CHECKING:
    from . import lora, models, plugins, prompts, sampling, steppers, testing, variants
    from .config import TrainConfig
    from .sampling import SampleOutput, load_pipeline, sample
    from .trainer import Trainer, TrainResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"draftsdk.{name}")
    raise AttributeError(f"module 'draftsdk' has no attribute {name!r}")
