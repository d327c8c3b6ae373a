"""The digits-world rewards of ``draftsdk demo``, registered like any plugin's."""

from __future__ import annotations

from typing import Any

from ..demo.rewards import DigitBoldness, DigitTarget
from ..hookspecs import hookimpl
from ..registry import RewardMeta

_LICENSE = "same as draftsdk (weights shipped in the package, reproducible from scikit-learn's digits)"


@hookimpl
def register_rewards(register: Any) -> None:
    register(DigitTarget, meta=RewardMeta(
        inputs="image (the demo's 8x8 digits world)", score_range=(-20.0, 0.0), memory_gb=0.0, weights_license=_LICENSE,
    ))
    register(DigitBoldness, meta=RewardMeta(inputs="image", score_range=(0.0, 1.0), memory_gb=0.0, weights_license="none (no weights)"))
