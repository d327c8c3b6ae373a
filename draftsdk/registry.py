"""The reward registry: runs every plugin's ``register_rewards`` hook and looks rewards up by name.

Listing only records classes and factories; nothing is instantiated (and no weights load) until
[get_reward][draftsdk.get_reward] is called.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DraftError, DuplicateRewardError, PluginLoadError, RewardContractError, UnknownRewardError
from .plugins import PluginInfo, get_plugin_manager, load_plugins_problem, plugin_info, trace

__all__ = [
    "RewardInfo", "RewardMeta", "RewardPluginError", "list_rewards", "get_reward", "reward_info", "plugin_error",
    "objective_record",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class RewardMeta:
    """What a user choosing a reward wants to know, given at registration (``register(cls, meta=...)``).

    Plain data: nothing is loaded to build it, so listing rewards stays free. Every field is optional;
    the plugin directory (docs/rewards/index.md) and ``draftsdk rewards --json`` show them.

    Attributes:
        inputs: what the reward reads, e.g. ``"image + prompt"`` or ``"image"``.
        score_range: the typical ``(low, high)`` of scores on real models and images (not a bound).
        memory_gb: approximate accelerator memory of the reward model at bf16, in GB (0 for no model).
        reference: the implementation it reproduces (package or repository, and the function).
        parity_tol: the tolerance on the score that the plugin's parity test against ``reference``
            asserts (and passes) on tiny random weights; None when there is no reference.
        weights_license: licence of the default weights ("none" when the reward has none).
        homepage: where the method or its weights are described.
        differentiable: yes/no; None (the default) takes the reward's ``differentiable`` attribute.

    Examples:
        >>> meta = RewardMeta(inputs="image", score_range=(0.0, 1.0), memory_gb=0)
        >>> meta.as_dict()["score_range"]
        [0.0, 1.0]
    """

    inputs: str = ""
    score_range: tuple[float, float] | None = None
    memory_gb: float | None = None
    reference: str = ""
    parity_tol: float | None = None
    weights_license: str = ""
    homepage: str = ""
    differentiable: bool | None = None

    def __post_init__(self) -> None:
        for name in ("inputs", "reference", "weights_license", "homepage"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"RewardMeta: {name} must be a string, got {getattr(self, name)!r}")
        if self.score_range is not None:
            low_high = tuple(self.score_range)
            if len(low_high) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in low_high) or low_high[0] > low_high[1]:
                raise TypeError(f"RewardMeta: score_range must be (low, high) numbers, got {self.score_range!r}")
            object.__setattr__(self, "score_range", (float(low_high[0]), float(low_high[1])))
        for name in ("memory_gb", "parity_tol"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise TypeError(f"RewardMeta: {name} must be a non-negative number or None, got {value!r}")
        if self.differentiable is not None and not isinstance(self.differentiable, bool):
            raise TypeError(f"RewardMeta: differentiable must be True, False or None, got {self.differentiable!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``score_range`` as a list)."""
        out = dataclasses.asdict(self)
        out["score_range"] = list(self.score_range) if self.score_range is not None else None
        out.pop("differentiable")
        return out


class RewardPluginError(RuntimeError):
    """A reward raised an exception that is not a user error: a bug in its plugin.

    The original exception is chained (``raise ... from exc``), so its traceback is printed; the
    message names the reward and its distribution. User errors (``DraftError``, ``ValueError``,
    ``OSError``) are not wrapped and stay one line.
    """


_USER_ERRORS = (DraftError, ValueError, OSError)


def plugin_error(exc: BaseException, reward: str, plugin: str, version: str = "", during: str = "call") -> RewardPluginError | None:
    """The [RewardPluginError][draftsdk.registry.RewardPluginError] to raise ``from exc``, or None for user errors.

    Used around a reward's constructor and its ``__call__``; out-of-memory errors are not bugs either.

    Examples:
        >>> print(plugin_error(TypeError("bad"), "x", "draftsdk-x", "0.1"))
        reward 'x' from draftsdk-x 0.1 failed in its call with TypeError: bad; this is a bug in the plugin, not in your settings (its traceback is above): report it to draftsdk-x
        >>> plugin_error(ValueError("x: bad option"), "x", "draftsdk-x") is None
        True
    """
    if isinstance(exc, _USER_ERRORS) or not isinstance(exc, Exception) or type(exc).__name__ == "OutOfMemoryError":
        return None
    where = f"{plugin} {version}".strip()
    text = str(exc).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    return RewardPluginError(
        f"reward {reward!r} from {where} failed in its {during} with {type(exc).__name__}{detail}; this is a bug in "
        f"the plugin, not in your settings (its traceback is above): report it to {plugin}"
    )


@dataclass(frozen=True)
class RewardInfo:
    """What ``draftsdk rewards`` shows about one registered reward.

    Attributes:
        name: the name used in configs and `get_reward`.
        plugin: the distribution that provides it (``draftsdk`` for built-ins).
        description: one line, from ``description=`` or the factory's docstring.
        differentiable: the factory's ``differentiable`` attribute (None when unknown).
        aliases: other accepted names.
        version: the distribution's version.
        meta: the [RewardMeta][draftsdk.registry.RewardMeta] given at registration.
    """

    name: str
    plugin: str
    description: str
    differentiable: bool | None
    aliases: tuple[str, ...] = ()
    version: str = ""
    meta: RewardMeta = field(default_factory=RewardMeta)
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
            **self.meta.as_dict(),
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
        info = plugin_info(impl.plugin_name)

        def register(
            factory: Any,
            *,
            name: str | None = None,
            aliases: tuple[str, ...] | list[str] = (),
            description: str | None = None,
            meta: RewardMeta | None = None,
            _info: PluginInfo = info,
        ) -> None:
            made = _as_factory(factory, _info)
            if meta is None:
                meta = RewardMeta()
            elif not isinstance(meta, RewardMeta):
                raise TypeError(f"plugin {_info.label}: register(meta=...) takes a draftsdk.registry.RewardMeta, not {type(meta).__name__}")
            reward_name = name or getattr(factory, "name", None)
            if not isinstance(reward_name, str) or not _NAME.match(reward_name):
                raise TypeError(
                    f"plugin {_info.label}: reward name {reward_name!r} is invalid; give the class a "
                    "lower-case `name` attribute or pass register(..., name='my-reward')"
                )
            declared = getattr(factory, "differentiable", None)
            if meta.differentiable is not None and declared is not None and bool(declared) != meta.differentiable:
                raise TypeError(
                    f"plugin {_info.label}: reward {reward_name!r} says differentiable={declared!r} but its "
                    f"RewardMeta says differentiable={meta.differentiable!r}"
                )
            entry = RewardInfo(
                name=reward_name,
                plugin=_info.distribution,
                version=_info.version,
                description=description or _describe(factory),
                differentiable=declared if meta.differentiable is None else meta.differentiable,
                aliases=tuple(aliases),
                meta=meta,
                factory=made,
                plugin_name=_info.name,
            )
            for key in (reward_name, *entry.aliases):
                conflicting = table.conflicts.get(key)
                previous = table.by_name.get(key) or (conflicting[0] if conflicting else None)
                if previous is not None:
                    table.conflicts.setdefault(key, [previous]).append(entry)
                    table.by_name.pop(key, None)
                else:
                    table.by_name[key] = entry
            table.infos.append(entry)
            trace(f"  {_info.name} registered reward {reward_name!r} ({_info.distribution} {_info.version})")

        trace(f"calling register_rewards of {info.name} ({info.label})")
        try:
            impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
        except Exception as exc:  # a broken plugin must not hide the others
            info.error = f"register_rewards failed: {type(exc).__name__}: {exc}".splitlines()[0]
            trace(f"  register_rewards of {info.name} failed: {info.error}")
    return table


def reward_version(spec: dict[str, Any] | None) -> str:
    """The distribution version of the registered reward a term's ``spec`` names ("" when unknown)."""
    entry = reward_table().by_name.get(str((spec or {}).get("name", "")))
    return entry.version if entry is not None else ""


def objective_record(objective: Any) -> list[dict[str, Any]]:
    """A WeightedSum's ``spec()`` with each term's distribution and version (recorded in run directories).

    Registered rewards get ``plugin`` (the distribution, ``draftsdk`` for built-ins) and ``version``;
    reward objects passed directly get ``plugin: "<local>"`` and the class's ``module``.

    Examples:
        >>> import draftsdk
        >>> objective_record(draftsdk.combine({"brightness": 0.5}))[0]["plugin"]
        'draftsdk'
    """
    record = []
    for term, spec in zip(objective.terms, objective.spec()):
        entry = None if spec.get("local") else reward_table().by_name.get(str(spec.get("name", "")))
        extra: dict[str, Any] = {"plugin": entry.plugin if entry else term.plugin, "version": entry.version if entry else ""}
        if entry is None:
            extra["module"] = type(term.reward).__module__
        record.append({**spec, **extra})
    return record


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
    env = load_plugins_problem(name)
    env = f" Note: {env}." if env else ""
    raise UnknownRewardError(
        f"unknown reward {name!r}.{hint} Installed: {', '.join(known) or 'none'}{note}{env}"
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
        RewardPluginError: the reward's constructor raised something other than a user error (a bug
            in the plugin; the original traceback is chained).
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
    try:
        reward = factory(**options)
    except Exception as exc:
        bug = plugin_error(exc, name, info.plugin, info.version, during="constructor")
        if bug is None:
            raise
        raise bug from exc
    from .rewards import Reward

    if not isinstance(reward, Reward):
        raise RewardContractError(
            f"reward {name!r} from {info.plugin}: its factory returned {type(reward).__name__}, "
            "which lacks `name`, `differentiable` or `__call__`"
        )
    return reward
