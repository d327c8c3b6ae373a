"""The plugin hooks. A plugin implements them with ``@draftsdk.hookimpl``."""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "draftsdk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_rewards(register: Callable[..., Any]) -> None:
    """Register reward classes or factories: ``register(factory, *, name=None, aliases=(), description=None)``."""
