"""A griffe extension for the API reference: read ``Example:`` docstring sections as examples.

draftsdk's docstrings head their doctests with ``Example:``. Griffe's Google-style parser knows only
the plural ``Examples:``; the singular becomes an admonition whose ``>>>`` lines render as running
text. This extension renames the heading before parsing, so the doctests render as code blocks.
Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite ``Example:`` to ``Examples:`` in every docstring draftsdk's reference renders."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
