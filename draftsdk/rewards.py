"""The `Reward` protocol, the `@reward` decorator and weighted sums of rewards.

A reward is any object with a ``name``, a ``differentiable`` flag and
``__call__(images, prompts) -> Tensor[B]`` where ``images`` is ``(B, 3, H, W)`` float in ``[0, 1]``
and higher is better. No base class is needed.

Decided once for every reward: images outside ``[0, 1]`` are an error, not clamped silently
(a 0..255 image would otherwise score as pure white). [check_inputs][draftsdk.rewards.check_inputs]
enforces it; draftsdk calls it before every weighted-sum evaluation and plugins may call it too.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from .errors import RewardContractError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Reward", "reward", "FunctionReward", "Term", "WeightedSum", "RewardOutput", "combine", "check_inputs"]


@runtime_checkable
class Reward(Protocol):
    """What the trainer needs from a reward.

    Attributes:
        name: registry key and label in logs, e.g. ``"aesthetic"``.
        differentiable: True when the output has a gradient w.r.t. ``images`` (DRaFT needs it).

    Examples:
        >>> class Brightness:
        ...     name = "my-brightness"
        ...     differentiable = True
        ...     def __call__(self, images, prompts):
        ...         return images.mean(dim=(1, 2, 3))
        >>> isinstance(Brightness(), Reward)
        True
    """

    name: str
    differentiable: bool

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score ``images`` (B, 3, H, W) in [0, 1] against their ``prompts``; returns (B,)."""
        ...


class FunctionReward:
    """A plain function ``fn(images, prompts, **options)`` turned into a reward by [reward][draftsdk.reward]."""

    def __init__(self, fn: Callable[..., Tensor], name: str, differentiable: bool, options: dict[str, Any]):
        self.fn = fn
        self.name = name
        self.differentiable = differentiable
        self.options = options
        functools.update_wrapper(self, fn)

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.fn(images, prompts, **self.options)

    def with_options(self, **options: Any) -> FunctionReward:
        """A copy with keyword options bound (this is how the registry instantiates it)."""
        inspect.signature(self.fn).bind(None, None, **options)
        return FunctionReward(self.fn, self.name, self.differentiable, {**self.options, **options})

    def __repr__(self) -> str:
        return f"<reward {self.name!r} {self.options or ''}>"


def reward(
    fn: Callable[..., Tensor] | None = None, *, name: str | None = None, differentiable: bool = True
) -> Any:
    """Turn a function ``fn(images, prompts, **options) -> Tensor[B]`` into a reward.

    Extra keyword-only parameters become options (``get_reward("x", gamma=2.0)``).
    The result can be used directly, combined, or passed to ``register`` in a plugin.

    Examples:
        >>> import draftsdk, torch
        >>> @draftsdk.reward(name="redness")
        ... def redness(images, prompts):
        ...     return images[:, 0].mean(dim=(1, 2))
        >>> redness(torch.zeros(2, 3, 4, 4), ["a", "b"]).shape
        torch.Size([2])
    """

    def wrap(f: Callable[..., Tensor]) -> FunctionReward:
        return FunctionReward(f, name or f.__name__.replace("_", "-"), differentiable, {})

    return wrap(fn) if fn is not None else wrap


def check_inputs(images: Tensor, prompts: Sequence[str], *, who: str = "reward") -> None:
    """Raise a one-line ValueError unless ``images`` is (B, 3, H, W) float in [0, 1] with B prompts.

    Examples:
        >>> import torch
        >>> check_inputs(torch.full((1, 3, 4, 4), 255.0), ["x"])
        Traceback (most recent call last):
        ...
        ValueError: reward: images must be float in [0, 1], got values in [255, 255]; divide 0..255 images by 255
    """
    if getattr(images, "ndim", None) != 4 or images.shape[1] != 3:
        shape = tuple(getattr(images, "shape", ()))
        raise ValueError(f"{who}: images must have shape (B, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{who}: images must be a float tensor in [0, 1], got dtype {images.dtype}")
    if isinstance(prompts, str) or len(prompts) != images.shape[0]:
        got = "a single string" if isinstance(prompts, str) else f"{len(prompts)} prompts"
        raise ValueError(f"{who}: got {images.shape[0]} images but {got}; pass one prompt per image")
    lo, hi = map(float, images.detach().aminmax())
    if lo < -1e-4 or hi > 1 + 1e-4 or math.isnan(lo) or math.isnan(hi):
        fix = "; divide 0..255 images by 255" if hi > 2 else "; map [-1, 1] images with (x + 1) / 2" if lo < -0.5 else ""
        raise ValueError(f"{who}: images must be float in [0, 1], got values in [{lo:.4g}, {hi:.4g}]{fix}")


def _check_output(term: Term, images: Tensor, out: Any) -> None:
    """Shape on every call; the gradient on the first call that needs one. (NaN values are not a contract
    error: the trainer skips such an update and stops after ``max_nonfinite_steps`` in a row, naming the term.)"""
    import torch

    who = f"reward '{term.label}' (plugin: {term.plugin})"
    batch = images.shape[0]
    if not isinstance(out, torch.Tensor):
        raise RewardContractError(f"{who} returned {type(out).__name__}; expected a Tensor of shape ({batch},)")
    if tuple(out.shape) != (batch,):
        raise RewardContractError(f"{who} returned shape {tuple(out.shape)}; expected ({batch},)")
    wants_grad = term.reward.differentiable and images.requires_grad and torch.is_grad_enabled()
    if wants_grad and not term.grad_checked:
        if out.grad_fn is None:
            raise RewardContractError(
                f"{who} says differentiable=True but its output has no gradient w.r.t. the images; "
                "avoid .item()/.numpy()/PIL/no_grad inside the reward, or set differentiable = False"
            )
        term.grad_checked = True


@dataclass
class Term:
    """One weighted term of a [WeightedSum][draftsdk.WeightedSum]: ``weight * (reward - offset) / scale``.

    ``offset`` and ``scale`` normalise rewards of different ranges (PickScore ~20, HPSv2 ~0.27)
    before weighting.
    """

    reward: Any
    weight: float = 1.0
    offset: float = 0.0
    scale: float = 1.0
    label: str = ""
    plugin: str = "<local>"
    spec: dict[str, Any] | None = None
    grad_checked: bool = field(default=False, repr=False)


@dataclass
class RewardOutput:
    """The result of [WeightedSum.evaluate][draftsdk.WeightedSum.evaluate].

    Attributes:
        total: (B,) weighted sum, differentiable.
        terms: raw (un-normalised, unweighted) values of each term, by label.
        images_nonfinite: True when the images were NaN/inf and no reward saw them (every value is NaN).
    """

    total: Tensor
    terms: dict[str, Tensor]
    images_nonfinite: bool = False

    def nonfinite_terms(self) -> list[str]:
        """Labels of the terms with a NaN/inf value in this batch."""
        import torch

        return [label for label, values in self.terms.items() if not bool(torch.isfinite(values).all())]

    def summary(self) -> dict[str, float]:
        """Mean and std of the total and of each term, for logging."""
        out = {"reward/mean": float(self.total.detach().float().mean())}
        out["reward/std"] = float(self.total.detach().float().std(unbiased=False))
        for label, values in self.terms.items():
            v = values.detach().float()
            out[f"reward/{label}/mean"] = float(v.mean())
            out[f"reward/{label}/std"] = float(v.std(unbiased=False))
        return out


class WeightedSum:
    """A reward that is the weighted sum of other rewards; build it with [combine][draftsdk.combine].

    Calling it returns the total; [evaluate][draftsdk.WeightedSum.evaluate] also returns each
    term for logging. Every term's output is checked (shape on every call, gradient on the first call
    that needs one) and a broken term raises [RewardContractError][draftsdk.errors.RewardContractError]
    naming it.
    """

    name = "weighted-sum"

    def __init__(self, terms: Sequence[Term]):
        if not terms:
            raise ValueError("combine: no reward terms given; pass e.g. {'brightness': 1.0}")
        self.terms = list(terms)
        self.differentiable = all(t.reward.differentiable for t in self.terms)

    def evaluate(self, images: Tensor, prompts: Sequence[str]) -> RewardOutput:
        """Score the images; return the weighted total and each term's raw values."""
        check_inputs(images, prompts, who="reward")
        total = None
        raw: dict[str, Tensor] = {}
        for term in self.terms:
            try:
                out = term.reward(images, prompts)
            except Exception as exc:  # a plugin's bug keeps its traceback and names the reward (registry.plugin_error)
                from .registry import plugin_error, reward_version

                bug = None if term.plugin == "<local>" else plugin_error(exc, term.label, term.plugin, reward_version(term.spec))
                if bug is None:
                    raise
                raise bug from exc
            _check_output(term, images, out)
            raw[term.label] = out
            part = term.weight * (out.float() - term.offset) / term.scale
            total = part if total is None else total + part
        assert total is not None
        return RewardOutput(total=total, terms=raw)

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        return self.evaluate(images, prompts).total

    def spec(self) -> list[dict[str, Any]]:
        """A JSON-friendly description of the terms (stored in checkpoints and LoRA metadata)."""
        return [
            {
                **(t.spec or {"name": t.label, "local": True}),
                "weight": t.weight,
                "offset": t.offset,
                "scale": t.scale,
            }
            for t in self.terms
        ]

    def __repr__(self) -> str:
        parts = " + ".join(f"{t.weight:g}*{t.label}" for t in self.terms)
        return f"WeightedSum({parts})"


_TERM_KEYS = {"weight", "options", "offset", "scale"}


def _number(value: Any, what: str, label: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"combine: {what} of term '{label}' must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"combine: {what} of term '{label}' must be finite, got {value!r}")
    return number


def combine(terms: Mapping[Any, Any] | Sequence[Any], **shared_options: Any) -> WeightedSum:
    """Combine rewards into one weighted sum.

    Keys are reward names (resolved through the plugin registry) or reward objects. Values are a
    weight, or a dict with ``weight`` and optionally ``options`` (passed to the reward),
    ``offset`` and ``scale`` (normalisation: the term is ``weight * (r - offset) / scale``).
    Negative weights minimise a term. A single reward or a list of names/rewards gets weight 1.

    Examples:
        >>> import draftsdk, torch
        >>> objective = draftsdk.combine({"brightness": 1.0, "saturation": {"weight": -0.5}})
        >>> out = objective.evaluate(torch.full((2, 3, 4, 4), 0.5), ["a", "b"])
        >>> out.total.tolist(), sorted(out.terms)
        ([0.5, 0.5], ['brightness', 'saturation'])
    """
    from .registry import get_reward, reward_info

    if isinstance(terms, Reward) and not isinstance(terms, (Mapping, str)):
        terms = {terms: 1.0}
    elif isinstance(terms, (str, bytes)) or not isinstance(terms, Mapping):
        items = [terms] if isinstance(terms, (str, bytes)) else list(terms)
        terms = {item: 1.0 for item in items}
    if shared_options:
        raise TypeError(f"combine: unexpected keyword(s) {sorted(shared_options)}; put options in the term's dict")
    built: list[Term] = []
    seen: dict[str, int] = {}
    for key, value in terms.items():
        label = key if isinstance(key, str) else str(getattr(key, "name", type(key).__name__))
        if isinstance(value, Mapping):
            unknown = set(value) - _TERM_KEYS
            if unknown:
                raise ValueError(
                    f"combine: term '{label}' has unknown key(s) {sorted(unknown)}; allowed: {sorted(_TERM_KEYS)}"
                )
            settings = dict(value)
        else:
            settings = {"weight": value}
        weight = _number(settings.get("weight", 1.0), "weight", label)
        offset = _number(settings.get("offset", 0.0), "offset", label)
        scale = _number(settings.get("scale", 1.0), "scale", label)
        if scale == 0:
            raise ValueError(f"combine: scale of term '{label}' must not be 0")
        options = dict(settings.get("options") or {})
        if isinstance(key, str):
            info = reward_info(key)
            obj, plugin, spec = get_reward(key, **options), info.plugin, {"name": key, "options": options}
        elif isinstance(key, Reward):
            if options:
                raise ValueError(f"combine: term '{label}' is a reward object; options apply only to names")
            obj, plugin, spec = key, "<local>", None
        else:
            raise TypeError(
                f"combine: key {key!r} is neither a reward name nor a Reward (needs name, differentiable, __call__)"
            )
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        built.append(Term(obj, weight, offset, scale, label, plugin, spec))
    return WeightedSum(built)
