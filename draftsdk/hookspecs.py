"""The plugin hooks. A plugin implements any of them with ``@draftsdk.hookimpl``."""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "draftsdk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_rewards(register: Callable[..., Any]) -> None:
    """Register reward classes or factories: ``register(factory, *, name=None, aliases=(), description=None, meta=None)``.

    ``meta`` is a [RewardMeta][draftsdk.registry.RewardMeta] (input, typical range, memory, reference
    and parity tolerance, weights licence, home page), shown by ``draftsdk rewards --json``.
    """


@hookspec
def register_model_families(register: Callable[..., Any]) -> None:
    """Register [ModelFamily][draftsdk.models.ModelFamily] subclasses: ``register(cls)`` (keyed by ``cls.name``)."""


@hookspec
def register_variants(register: Callable[..., Any]) -> None:
    """Register [Variant][draftsdk.variants.Variant] subclasses: ``register(cls)`` (keyed by ``cls.name``)."""
