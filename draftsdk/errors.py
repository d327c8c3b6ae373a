"""Exceptions raised by draftsdk.

Every error carries a one-line message that says what went wrong and how to fix it; the CLI prints
that line and exits with status 2, without a traceback.
"""

from __future__ import annotations

__all__ = [
    "DraftError",
    "UnknownRewardError",
    "DuplicateRewardError",
    "PluginLoadError",
    "RewardContractError",
]


class DraftError(Exception):
    """Base class of every draftsdk error."""


class UnknownRewardError(DraftError, KeyError):
    """No installed plugin provides a reward of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateRewardError(DraftError):
    """Two plugins register the same reward name (never silently renamed)."""


class PluginLoadError(DraftError):
    """A plugin distribution failed to import or to register its rewards."""


class RewardContractError(DraftError):
    """A reward broke the protocol: wrong output shape, non-finite values or no gradient."""
