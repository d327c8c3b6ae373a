"""The digits-world rewards of ``draftsdk demo``, registered like any plugin's."""

from __future__ import annotations

from ..demo.rewards import DigitTarget, DIGIT_STYLE_REWARD
from ..hookspecs import hookimpl


@hookimpl
def register_rewards(register):  # type: ignore[no-untyped-def]
    register(DigitTarget)
    register(DIGIT_STYLE_REWARD)
