"""The reward registry: runs every plugin's ``register_rewards`` hook and looks rewards up by name.

Listing only records classes and factories; nothing is instantiated (and no weights load) until
[get_reward][draftsdk.get_reward] is called.
"""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DuplicateRewardError, PluginLoadError, RewardContractError, UnknownRewardError
from .plugins import PluginInfo, get_plugin_manager, plugin_info

__all__ = ["RewardInfo", "list_rewards", "get_reward", "reward_info"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class RewardInfo:
    """What ``draftsdk rewards`` shows about one registered reward.

    Attributes:
        name: the name used in configs and `get_reward`.
        plugin: the distribution that provides it (``draftsdk`` for built-ins).
        description: one line, from ``description=`` or the factory's docstring.
        differentiable: the factory's ``differentiable`` attribute (None when unknown).
        aliases: other accepted names.
    """

    name: str
    plugin: str
    description: str
    differentiable: bool | None
    aliases: tuple[str, ...] = ()
    version: str = ""
    factory: Callable[..., Any] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    plugin_name: str = field(default="", repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (used by ``draftsdk rewards --json``)."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "version": self.version,
            "description": self.description,
            "differentiable": self.differentiable,
            "aliases": list(self.aliases),
        }


@dataclass
class _Table:
    infos: list[RewardInfo] = field(default_factory=list)
    by_name: dict[str, RewardInfo] = field(default_factory=dict)
    conflicts: dict[str, list[RewardInfo]] = field(default_factory=dict)


_table: _Table | None = None


def _describe(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _as_factory(factory: Any, plugin: PluginInfo) -> Callable[..., Any]:
    from .rewards import FunctionReward

    if isinstance(factory, FunctionReward):
        return factory.with_options
    if inspect.isclass(factory) or inspect.isroutine(factory) or hasattr(factory, "func"):
        return factory
    kind = type(factory).__name__
    raise TypeError(
        f"plugin {plugin.label}: register() takes a reward class or a factory function, "
        f"not a {kind} instance; pass the class (weights must load only when the reward is used)"
    )


def _collect() -> _Table:
    pm = get_plugin_manager()
    table = _Table()
    for impl in pm.hook.register_rewards.get_hookimpls():
        info = plugin_info(pm.get_name(impl.plugin))

        def register(
            factory: Any,
            *,
            name: str | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            description: str | None = None,
            _info: PluginInfo = info,
        ) -> None:
            made = _as_factory(factory, _info)
            reward_name = name or getattr(factory, "name", None)
            if not isinstance(reward_name, str) or not _NAME.match(reward_name):
                raise TypeError(
                    f"plugin {_info.label}: reward name {reward_name!r} is invalid; give the class a "
                    "lower-case `name` attribute or pass register(..., name='my-reward')"
                )
            entry = RewardInfo(
                name=reward_name,
                plugin=_info.distribution,
                version=_info.version,
                description=description or _describe(factory),
                differentiable=getattr(factory, "differentiable", None),
                aliases=tuple(aliases),
                factory=made,
                plugin_name=_info.name,
            )
            for key in (reward_name, *entry.aliases):
                previous = table.by_name.get(key) or (table.conflicts.get(key) or [None])[0]
                if previous is not None:
                    table.conflicts.setdefault(key, [previous]).append(entry)
                    table.by_name.pop(key, None)
                else:
                    table.by_name[key] = entry
            table.infos.append(entry)

        try:
            impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
        except Exception as exc:  # a broken plugin must not hide the others
            info.error = f"register_rewards failed: {type(exc).__name__}: {exc}".splitlines()[0]
    return table


def reward_table() -> _Table:
    """The collected registrations (built once per process, rebuilt after plugin changes)."""
    global _table
    if _table is None:
        _table = _collect()
    return _table


def list_rewards() -> list[RewardInfo]:
    """All registered rewards, sorted by name. Loads no weights and imports no model code.

    Examples:
        >>> import draftsdk
        >>> "brightness" in [r.name for r in draftsdk.list_rewards()]
        True
    """
    return sorted(reward_table().infos, key=lambda r: r.name)


def _duplicate_error(name: str, entries: list[RewardInfo]) -> DuplicateRewardError:
    first, *others = entries
    clash = ", ".join(f"{e.plugin} {e.version}" for e in others)
    return DuplicateRewardError(
        f"reward '{name}' from {clash} is already registered by {first.plugin} {first.version}; "
        "uninstall one of them or choose with DRAFTSDK_LOAD_PLUGINS"
    )


def reward_info(name: str) -> RewardInfo:
    """Look a reward up by name or alias without instantiating it.

    Raises:
        UnknownRewardError: no plugin provides ``name`` (the message suggests close matches).
        DuplicateRewardError: two plugins register ``name``.
        PluginLoadError: the plugin whose entry point is ``name`` failed to load.
    """
    table = reward_table()
    if name in table.conflicts:
        raise _duplicate_error(name, table.conflicts[name])
    if name in table.by_name:
        return table.by_name[name]
    from .plugins import list_plugins

    broken = [p for p in list_plugins() if p.error]
    for plugin in broken:
        if name == plugin.name or plugin.distribution in (f"draftsdk-{name}", name):
            raise PluginLoadError(f"reward '{name}' is unavailable: plugin {plugin.label} {plugin.error}")
    known = sorted(set(table.by_name) | set(table.conflicts))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    note = f" ({len(broken)} plugin(s) failed to load: run `draftsdk plugins`)" if broken else ""
    raise UnknownRewardError(
        f"unknown reward {name!r}.{hint} Installed: {', '.join(known) or 'none'}{note}"
    )


def get_reward(name: str, **options: Any) -> Any:
    """Instantiate the reward registered as ``name`` with its options.

    Examples:
        >>> import draftsdk, torch
        >>> reward = draftsdk.get_reward("brightness")
        >>> reward(torch.ones(2, 3, 8, 8), ["a", "b"]).tolist()
        [1.0, 1.0]

    Raises:
        UnknownRewardError: see [reward_info][draftsdk.registry.reward_info].
        TypeError: an option the reward does not take (the message lists the valid ones).
    """
    info = reward_info(name)
    factory = info.factory
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**options)
        except TypeError:
            valid = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            bad = [k for k in options if k not in signature.parameters]
            raise TypeError(
                f"reward {name!r} got unknown option(s) {', '.join(map(repr, bad)) or repr(options)}; "
                f"it accepts: {', '.join(valid) or 'no options'}"
            ) from None
    reward = factory(**options)
    from .rewards import Reward

    if not isinstance(reward, Reward):
        raise RewardContractError(
            f"reward {name!r} from {info.plugin}: its factory returned {type(reward).__name__}, "
            "which lacks `name`, `differentiable` or `__call__`"
        )
    return reward
