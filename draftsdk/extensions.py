"""Registries of model families and variants, filled through plugin hooks like the reward registry.

``register_model_families(register)`` and ``register_variants(register)`` each receive a
``register(cls)`` callable; the class's ``name`` attribute is its key. Classes are only recorded at
listing time (nothing is instantiated, no model code imported). A plugin whose hook raises is
recorded as broken in ``draftsdk plugins`` and the others still register.
"""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from .errors import DraftError
from .plugins import PluginInfo, get_plugin_manager, plugin_info, trace

__all__ = ["Registered", "NamedRegistry", "UnknownNameError", "families", "variants"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
T = TypeVar("T")


class UnknownNameError(DraftError, KeyError):
    """No registered model family or variant has that name (the message lists close matches)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Registered(Generic[T]):
    """One registered class and where it came from."""

    name: str
    cls: type[T]
    plugin: str
    version: str
    description: str


@dataclass
class NamedRegistry(Generic[T]):
    """Classes registered through one hook, looked up by their ``name`` attribute."""

    hook: str
    kind: str
    _table: dict[str, Registered[T]] | None = field(default=None, repr=False)

    def _collect(self) -> dict[str, Registered[T]]:
        pm = get_plugin_manager()
        table: dict[str, Registered[T]] = {}
        for impl in getattr(pm.hook, self.hook).get_hookimpls():
            info = plugin_info(impl.plugin_name)

            def register(cls: Any, _info: PluginInfo = info) -> None:
                name = getattr(cls, "name", None)
                if not inspect.isclass(cls):
                    raise TypeError(f"plugin {_info.label}: register() takes a {self.kind} class, not {type(cls).__name__}")
                if not isinstance(name, str) or not _NAME.match(name):
                    raise TypeError(f"plugin {_info.label}: {self.kind} {cls.__name__} needs a lower-case `name` attribute, got {name!r}")
                if name in table:
                    raise TypeError(f"plugin {_info.label}: {self.kind} {name!r} is already registered by {table[name].plugin}")
                doc = (getattr(cls, "description", None) or inspect.getdoc(cls) or "").strip().splitlines()
                # cast: only checked to be a class, not a T (the registries hold Any)
                table[name] = Registered(name, cast("type[T]", cls), _info.distribution, _info.version, doc[0] if doc else "")
                trace(f"  {_info.name} registered {self.kind} {name!r}")

            trace(f"calling {self.hook} of {info.name} ({info.label})")
            try:
                impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
            except Exception as exc:  # a broken plugin must not hide the others
                info.error = f"{self.hook} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        return table

    def table(self) -> dict[str, Registered[T]]:
        if self._table is None:
            self._table = self._collect()
        return self._table

    def names(self) -> list[str]:
        return sorted(self.table())

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; UnknownNameError with close matches otherwise."""
        table = self.table()
        if name in table:
            return table[name].cls
        close = difflib.get_close_matches(name, list(table), n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(sorted(table)) or 'none'}")

    def invalidate(self) -> None:
        self._table = None


families: NamedRegistry[Any] = NamedRegistry("register_model_families", "model family")
"""The model families of every plugin (``draftsdk.models.get_family`` looks names up here)."""
variants: NamedRegistry[Any] = NamedRegistry("register_variants", "variant")
"""The variants of every plugin (``TrainConfig.variant`` names one of them)."""
