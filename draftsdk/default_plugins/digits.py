"""The digits-world rewards of ``draftsdk demo``, registered like any plugin's."""

from __future__ import annotations

from ..demo.rewards import DigitBoldness, DigitTarget
from ..hookspecs import hookimpl


@hookimpl
def register_rewards(register):  # type: ignore[no-untyped-def]
    register(DigitTarget)
    register(DigitBoldness)
