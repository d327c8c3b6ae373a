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


def read_user_text(path: object, what: str) -> str:
    """The UTF-8 text of a user's file; a missing or non-UTF-8 file is a one-line DraftError naming
    ``what`` wanted it (e.g. ``"prompt file"``) and the file."""
    from pathlib import Path

    file = Path(str(path))
    if not file.is_file():
        raise DraftError(f"{what} {str(file)!r} does not exist")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DraftError(
            f"{what} {str(file)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise DraftError(f"{what} {str(file)!r} cannot be read: {exc.strerror or exc}") from None
