"""Prompt sources: a list, a text file (one prompt per line) or a bundled prompt set.

Bundled sets:

- ``simple-animals``: the 45 common animals of DDPO's and DRaFT's aesthetic experiments.
- ``digits``: "a handwritten digit 0" ... "9", the prompts of the embedded digits model.

Examples:
    >>> from draftsdk.prompts import prompt_set
    >>> animals = prompt_set("simple-animals")
    >>> len(animals), animals[:3]
    (45, ['cat', 'dog', 'horse'])
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from ..errors import DraftError, read_user_text

__all__ = ["prompt_set", "read_prompt_file", "resolve_prompts", "PROMPT_SETS"]

PROMPT_SETS = ("simple-animals", "digits")


def prompt_set(name: str) -> list[str]:
    """The prompts of a bundled set (see the module docs)."""
    if name == "digits":
        return [f"a handwritten digit {d}" for d in range(10)]
    if name not in PROMPT_SETS:
        close = difflib.get_close_matches(name, PROMPT_SETS, 1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DraftError(f"unknown prompt set {name!r}.{hint} Bundled: {', '.join(PROMPT_SETS)}")
    text = resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_prompt_file(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file; lines starting with ``#`` are comments."""
    file = Path(path)
    prompts = [line.strip() for line in read_user_text(file, "prompt file").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise DraftError(f"prompt file {str(file)!r} has no prompts (one per line)")
    return prompts


def resolve_prompts(
    prompts: list[str] | None = None, prompt_file: str | Path | None = None, prompt_set_name: str | None = None
) -> list[str]:
    """Exactly one source of prompts must be given; returns the list."""
    given = [x is not None for x in (prompts, prompt_file, prompt_set_name)]
    if sum(given) != 1:
        raise DraftError(
            "give exactly one prompt source: prompts (a list), prompt_file or prompt_set "
            f"(got {sum(given)}); bundled sets: {', '.join(PROMPT_SETS)}"
        )
    if prompts is not None:
        cleaned = [p.strip() for p in prompts if isinstance(p, str) and p.strip()]
        if not cleaned:
            raise DraftError("prompts: the list is empty; give at least one prompt")
        return cleaned
    if prompt_file is not None:
        return read_prompt_file(prompt_file)
    return prompt_set(prompt_set_name)  # type: ignore[arg-type]
