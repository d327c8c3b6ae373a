"""Plugin discovery: built-in plugins plus ``draftsdk`` entry points, each loaded behind a guard.

A plugin that fails to import, declares a hook that does not exist (a typo such as
``register_reward``) or has a hookimpl with wrong arguments is recorded as a load error with its
distribution, version and entry point; the other plugins still load.

Environment variables:

- ``DRAFTSDK_LOAD_PLUGINS=a,b`` loads only these plugins (distribution or entry-point names);
  an empty value loads none besides the built-ins. A name that matches no installed plugin is
  reported in the "unknown reward" error.
- ``DRAFTSDK_TRACE_PLUGINS=1`` prints to stderr, prefixed ``draftsdk-trace:``, every plugin found
  (loaded, skipped by ``DRAFTSDK_LOAD_PLUGINS`` or failed, with its distribution and version),
  every hook implementation called and what it registered.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import os
import sys
from dataclasses import dataclass, field

import pluggy

from . import hookspecs

__all__ = [
    "DEFAULT_PLUGINS",
    "PluginInfo",
    "get_plugin_manager",
    "list_plugins",
    "plugin_info",
    "register_plugin",
    "reset_plugins",
    "load_plugins_problem",
    "trace",
    "tracing",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "draftsdk"
DEFAULT_PLUGINS = (
    "draftsdk.default_plugins.basic",
    "draftsdk.default_plugins.digits",
    "draftsdk.default_plugins.families",
    "draftsdk.default_plugins.jpeg",
    "draftsdk.default_plugins.variants",
)


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as shown by ``draftsdk plugins``."""

    name: str
    distribution: str
    version: str
    entry_point: str | None = None
    error: str | None = None
    rewards: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``dist version (entry point ...)``, used in error messages."""
        where = f" (entry point {self.entry_point})" if self.entry_point else ""
        return f"{self.distribution} {self.version}{where}"


_pm: pluggy.PluginManager | None = None
_plugins: dict[str, PluginInfo] = {}
_skipped: list[tuple[str, str]] = []  # (entry-point name, distribution) left out by DRAFTSDK_LOAD_PLUGINS
_unmatched: list[str] = []  # DRAFTSDK_LOAD_PLUGINS names that match no installed plugin


def tracing() -> bool:
    """True when ``DRAFTSDK_TRACE_PLUGINS`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("DRAFTSDK_TRACE_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")


def trace(message: str) -> None:
    """Print ``draftsdk-trace: message`` to stderr when ``DRAFTSDK_TRACE_PLUGINS`` is set."""
    if tracing():
        print(f"draftsdk-trace: {message}", file=sys.stderr, flush=True)


def _core_version() -> str:
    try:
        return metadata.version("draftsdk")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _allowed() -> set[str] | None:
    raw = os.environ.get("DRAFTSDK_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _unknown_hook_message(pm: pluggy.PluginManager, plugin: object) -> str | None:
    known = set(vars(hookspecs))
    for hook_name in dir(plugin):
        if hook_name in known or hook_name.startswith("_"):
            continue
        opts = pm.parse_hookimpl_opts(plugin, hook_name)
        if opts is None:
            continue
        close = difflib.get_close_matches(hook_name, [n for n in known if n.startswith("register_")], 1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"implements unknown hook '{hook_name}'{hint}"
    return None


def _import_failure(exc: BaseException) -> str:
    return f"failed to import: {type(exc).__name__}: {exc}".splitlines()[0]


def _register(pm: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    try:
        pm.register(plugin, name=info.name)
    except pluggy.PluginValidationError as exc:
        info.error = f"invalid hook implementation: {str(exc).splitlines()[-1]}"
        return
    problem = _unknown_hook_message(pm, plugin)
    if problem is not None:
        pm.unregister(plugin)
        info.error = problem
    if info.error:
        trace(f"plugin {info.name} ({info.label}) failed: {info.error}")
    else:
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        trace(f"plugin {info.name} ({info.label}) loaded; implements {', '.join(hooks) or 'no hooks'}")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = _allowed()
    seen: set[str] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "<unknown>"
        version = dist.version if dist is not None else "?"
        seen.update((dist_name, ep.name))
        if allowed is not None and dist_name not in allowed and ep.name not in allowed:
            _skipped.append((ep.name, dist_name))
            trace(f"plugin {ep.name} ({dist_name} {version}) skipped: not in DRAFTSDK_LOAD_PLUGINS")
            continue
        if ep.name in _plugins:
            continue  # the same distribution seen twice on sys.path
        info = PluginInfo(ep.name, dist_name, version, f"{ep.name} = {ep.value}")
        _plugins[ep.name] = info
        try:
            plugin = ep.load()
        except Exception as exc:  # any import failure must not take the other plugins down
            info.error = _import_failure(exc)
            trace(f"plugin {info.name} ({info.label}) failed: {info.error}")
            continue
        _register(pm, plugin, info)
    if allowed is not None:
        _unmatched.extend(sorted(allowed - seen))
        for name in _unmatched:
            trace(f"DRAFTSDK_LOAD_PLUGINS names {name!r}, which matches no installed plugin")


def load_plugins_problem(name: str) -> str:
    """Why ``DRAFTSDK_LOAD_PLUGINS`` may explain a missing reward ``name`` ("" when it does not).

    Names the variable's entries that match no installed plugin (with the closest installed name)
    and the installed plugin that provides ``name`` by the naming convention but was left out.
    """
    get_plugin_manager()
    notes = []
    installed = sorted({n for pair in _skipped for n in pair} | {p.distribution for p in _plugins.values()} | set(_plugins))
    for typo in _unmatched:
        close = difflib.get_close_matches(typo, installed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        notes.append(f"DRAFTSDK_LOAD_PLUGINS names {typo!r}, which matches no installed plugin{hint}")
    for ep_name, dist_name in _skipped:
        if name in (ep_name, dist_name) or dist_name == f"draftsdk-{name}":
            notes.append(f"plugin {dist_name} is installed but DRAFTSDK_LOAD_PLUGINS does not load it")
    return "; ".join(notes)


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading built-ins and entry points on first use.

    Examples:
        >>> pm = get_plugin_manager()
        >>> "draftsdk.default_plugins.basic" in [pm.get_name(p) for p in pm.get_plugins()]
        True
    """
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        for module_name in DEFAULT_PLUGINS:
            info = PluginInfo(module_name, "draftsdk", _core_version())
            _plugins[module_name] = info
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                info.error = _import_failure(exc)
                continue
            _register(pm, module, info)
        _load_entry_points(pm)
        if tracing():  # hook calls made through pm.hook (the registries call implementations and trace them)
            pm.trace.root.setwriter(lambda text: sys.stderr.write(f"draftsdk-trace: {text}"))
            pm.enable_tracing()
        _pm = pm
    return _pm


def register_plugin(plugin: object, name: str, distribution: str = "<local>", version: str = "") -> PluginInfo:
    """Register an in-process plugin object (a module or an object with hookimpls).

    Useful in notebooks and tests; installed plugins are found through entry points instead.

    Examples:
        >>> import draftsdk
        >>> class MyPlugin:
        ...     @draftsdk.hookimpl
        ...     def register_rewards(self, register):
        ...         pass
        >>> register_plugin(MyPlugin(), name="my-plugin").error is None
        True
        >>> unregister_plugin("my-plugin")
    """
    pm = get_plugin_manager()
    info = PluginInfo(name, distribution, version)
    _plugins[name] = info
    _register(pm, plugin, info)
    _invalidate_registry()
    return info


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with [register_plugin][draftsdk.plugins.register_plugin]."""
    pm = get_plugin_manager()
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    _plugins.pop(name, None)
    _invalidate_registry()


def plugin_info(name: str) -> PluginInfo:
    """The [PluginInfo][draftsdk.plugins.PluginInfo] of a loaded plugin, by its registered name."""
    get_plugin_manager()
    return _plugins[name]


def list_plugins() -> list[PluginInfo]:
    """Every plugin draftsdk tried to load, built-ins first, with load errors and its rewards."""
    from .registry import reward_table

    table = reward_table()
    for info in _plugins.values():
        info.rewards = sorted(r.name for r in table.infos if r.plugin_name == info.name)
    return list(_plugins.values())


def _invalidate_registry() -> None:
    from . import extensions, registry

    registry._table = None
    extensions.families.invalidate()
    extensions.variants.invalidate()


def reset_plugins() -> None:
    """Forget every loaded plugin; the next use re-discovers them (for tests and long sessions)."""
    global _pm
    _pm = None
    _plugins.clear()
    _skipped.clear()
    _unmatched.clear()
    _invalidate_registry()
