"""draftsdk-adversarial: the log-probability of a target ImageNet class under a torchvision ResNet-50.

DRaFT's "adversarial" experiment fine-tunes a diffusion model so that images generated for prompts
such as "a bear", "a dog", "a mouse" are classified as a cat by a ResNet-50, while still looking like
the prompt to a human. This plugin provides that reward:

- ``score = log p(target | image)`` (log-softmax of the 1000 ImageNet logits); with a list of
  targets, ``log sum_t p(t | image)`` (the class group as a whole);
- ``margin=True``: ``max target logit - max other logit`` (positive once the image is classified as
  the target; unbounded above, so pair it with a KL guard or few steps).

Pre-processing is torchvision's ImageNet transform of the chosen weights (resize the short side to
232 for ``IMAGENET1K_V2`` / 256 for ``IMAGENET1K_V1``, bilinear with antialias; centre crop 224;
ImageNet mean/std), done in torch ops so gradients reach the pixels.

Importing this module loads nothing heavy: torch and torchvision are imported when the reward is
instantiated.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta
from draftsdk.plugin_utils import first_line, freeze, hub_offline, resolve_device, resolve_dtype
from draftsdk.rewards import check_inputs

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["AdversarialReward", "imagenet_categories", "resolve_targets", "describe_resnet"]
__version__ = "0.1.0"

_WEIGHTS = ("IMAGENET1K_V2", "IMAGENET1K_V1")
_RESNETS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


def _weights_enum(weights: str) -> Any:
    from torchvision.models import ResNet50_Weights

    key = str(weights).upper().removeprefix("RESNET50_WEIGHTS.")
    if key == "DEFAULT":
        key = "IMAGENET1K_V2"
    if key not in _WEIGHTS:
        raise ValueError(f"adversarial: weights must be 'IMAGENET1K_V2' (default) or 'IMAGENET1K_V1', got {weights!r}")
    return ResNet50_Weights[key]


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in index order (shipped with torchvision; no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def resolve_targets(target: Any, categories: Sequence[str]) -> list[int]:
    """Class indices for ``target``: an index, a class name (case-insensitive) or a list of them.

    Raises a one-line ValueError for an unknown name, listing close matches and the classes whose
    name contains it (ImageNet has no plain "cat": it has "tabby", "tiger cat", "Persian cat", ...).
    """
    items = list(target) if isinstance(target, (list, tuple)) else [target]
    if target is None or not items:
        raise ValueError(
            "adversarial: no target given; pass target='tabby' (an ImageNet class name), an index 0-999, "
            "or a list of them such as ['tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat']"
        )
    lowered = {name.lower(): i for i, name in enumerate(categories)}
    indices: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"adversarial: target must be a class index or name, got {item!r}")
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            index = int(item)
            if not 0 <= index < len(categories):
                raise ValueError(f"adversarial: target index {index} is out of range 0-{len(categories) - 1}")
        elif isinstance(item, str) and item.strip().lower() in lowered:
            index = lowered[item.strip().lower()]
        elif isinstance(item, str):
            raise ValueError(_unknown_class_message(item, categories))
        else:
            raise ValueError(f"adversarial: target must be a class index or name, got {item!r}")
        if index not in indices:
            indices.append(index)
    return indices


def _unknown_class_message(name: str, categories: Sequence[str]) -> str:
    wanted = name.strip().lower()
    lower = [c.lower() for c in categories]
    close = [categories[lower.index(c)] for c in difflib.get_close_matches(wanted, lower, n=5, cutoff=0.6)]
    word = re.compile(rf"\b{re.escape(wanted)}\b") if wanted else None
    containing = [c for c in categories if word and word.search(c.lower()) and c not in close][:6]
    hints = []
    if containing:
        hints.append(f"classes containing {name.strip()!r}: " + ", ".join(f"{c!r} ({categories.index(c)})" for c in containing))
    if close:
        hints.append("close matches: " + ", ".join(f"{c!r} ({categories.index(c)})" for c in close))
    hint = "; ".join(hints) if hints else "no close match"
    return (
        f"adversarial: unknown ImageNet class {name!r}; {hint}; pass a class name, an index 0-999, "
        "or a list of them to score a group"
    )


def describe_resnet(state_dict: dict[str, Any]) -> str:
    """A short guess of what a torchvision-style state dict holds, e.g. ``"resnet18"`` or ``"resnet50 with 10 classes"``."""
    keys = set(state_dict)
    if "conv1.weight" not in keys or not any(k.startswith("layer1.") for k in keys):
        sample = ", ".join(sorted(keys)[:3]) or "no tensors"
        return f"not a ResNet state dict (keys: {sample}, ...)"
    bottleneck = "layer1.0.conv3.weight" in keys
    blocks = tuple(
        len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.") and k.split(".")[1].isdigit()}) for i in range(1, 5)
    )
    name = _RESNETS.get((bottleneck, blocks), f"a ResNet with {list(blocks)} blocks")
    conv1 = state_dict.get("layer1.0.conv1.weight")
    conv2 = state_dict.get("layer1.0.conv2.weight")
    if bottleneck and conv1 is not None and conv2 is not None:
        if conv2.shape[1] != conv2.shape[0]:
            name = f"a ResNeXt ({name} layout)"
        elif conv1.shape[0] != 64:
            name = f"a wide ResNet ({name} layout, width {conv1.shape[0]})"
    fc = state_dict.get("fc.weight")
    if fc is not None and fc.shape[0] != 1000:
        name += f" with {fc.shape[0]} classes"
    return name


def _load_state_dict(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise OSError(f"adversarial: weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line message
            raise OSError(f"adversarial: cannot read {str(path)!r} as safetensors ({first_line(exc)})") from None
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            text = first_line(exc)
            if "weights_only" in str(exc) or "Unsupported global" in str(exc):
                raise OSError(
                    f"adversarial: {str(path)!r} holds pickled objects that torch.load(weights_only=True) refuses "
                    "(a whole model?); save model.state_dict() with torch.save or safetensors instead"
                ) from None
            raise OSError(f"adversarial: cannot read {str(path)!r} with torch.load ({text})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict) and "conv1.weight" not in obj:
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"adversarial: {str(path)!r} does not hold a state dict of tensors (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _hub_state_dict(weights: Any) -> dict[str, Any]:
    """The enum's weights from torch.hub's cache, downloading them unless offline."""
    import torch

    url = weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    how = f"download {url} on a connected machine and pass path='{cached.name}' (or copy it to {cached})"
    if cached.is_file():
        return torch.load(str(cached), map_location="cpu", weights_only=True)
    if hub_offline():
        raise OSError(f"adversarial: ResNet-50 weights {weights.name} are not cached and HF_HUB_OFFLINE is set; {how}")
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise OSError(
            f"adversarial: cannot download ResNet-50 weights {weights.name} ({type(exc).__name__}: {first_line(exc, 80)}); {how}"
        ) from None


class AdversarialReward:
    """Log-probability of a target ImageNet class under a ResNet-50 (DRaFT's adversarial reward).

    Args:
        target: an ImageNet class name (``"tabby"``, case-insensitive), an index 0-999, or a list
            of them (scored as a group: ``log sum p``). The names are torchvision's
            (``ResNet50_Weights.IMAGENET1K_V2.meta["categories"]``); there is no plain "cat".
        margin: score ``max target logit - max other logit`` instead of the log-probability.
        weights: ``"IMAGENET1K_V2"`` (default, torchvision's DEFAULT, 80.9% top-1, resize 232) or
            ``"IMAGENET1K_V1"`` (76.1%, resize 256). Downloaded by torchvision to its cache
            (``~/.cache/torch/hub/checkpoints``) on first use unless ``path`` is given. Also sets the
            pre-processing when ``path`` is given.
        path: a local ResNet-50 state dict (``.pth``/``.pt`` loaded with ``torch.load(weights_only=True)``,
            or ``.safetensors``); torchvision / timm key names.
        device: torch device (default: CUDA when available, else CPU). Scores are returned on the
            images' device.
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"`` for the network.

    Examples:
        >>> cat = AdversarialReward(target=["tabby", "tiger cat", "Egyptian cat"])   # doctest: +SKIP
        >>> scores = cat(images, ["a bear", "a dog"])    # log p(any of the three), <= 0  # doctest: +SKIP
        >>> scores.shape                                                              # doctest: +SKIP
        torch.Size([2])
    """

    name = "adversarial"
    differentiable = True

    def __init__(
        self,
        target: int | str | Sequence[int | str] | None = None,
        margin: bool = False,
        weights: str = "IMAGENET1K_V2",
        path: str | os.PathLike[str] | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        import torch

        enum = _weights_enum(weights)
        self.categories = list(enum.meta["categories"])
        self.targets = resolve_targets(target, self.categories)
        self.target = target
        self.target_names = [self.categories[i] for i in self.targets]
        if not isinstance(margin, bool):
            raise ValueError(f"adversarial: margin must be True or False, got {margin!r}")
        self.margin = margin
        self.weights = enum.name
        self.path = str(path) if path is not None else None
        self.dtype = resolve_dtype(dtype, "adversarial")
        self.device = resolve_device(device, auto=True)

        transform = enum.transforms()
        self.resize_size = int(transform.resize_size[0])
        self.crop_size = int(transform.crop_size[0])
        self.interpolation = transform.interpolation.value  # "bilinear"
        self.antialias = bool(transform.antialias)
        self.mean, self.std = tuple(transform.mean), tuple(transform.std)

        state = _load_state_dict(Path(self.path).expanduser()) if self.path is not None else _hub_state_dict(enum)
        self.model = self._build(state)
        mask = torch.zeros(len(self.categories), dtype=torch.bool)
        mask[self.targets] = True
        self._target_mask = mask.to(self.device)
        self._index = torch.tensor(self.targets, device=self.device)

    def _build(self, state: dict[str, Any]) -> Any:
        import torch
        from torchvision.models import resnet50

        with torch.device("meta"):  # no random init (0.4 s); every tensor comes from ``state``
            model = resnet50(weights=None)
        source = self.path or f"ResNet50_Weights.{self.weights}"
        expected = model.state_dict()
        mismatched = [k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in expected]
        if mismatched or missing or unexpected:
            raise ValueError(
                f"adversarial: {source!r} holds {describe_resnet(state)}, not a torchvision ResNet-50 with 1000 "
                f"ImageNet classes ({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mis-shaped "
                "tensors); pass a resnet50 state dict"
            )
        model.load_state_dict(state, strict=False, assign=True)
        for module in model.modules():  # timm files have no num_batches_tracked (unused in eval mode)
            if getattr(module, "num_batches_tracked", None) is not None and module.num_batches_tracked.is_meta:
                module.num_batches_tracked = torch.tensor(0, dtype=torch.long)
        return freeze(model).to(self.device, self.dtype)

    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> normalised ``(B, 3, 224, 224)``, as ``weights.transforms()`` does on a tensor."""
        from draftsdk.image_ops import center_crop, normalize, resize_shortest_side

        x = resize_shortest_side(images, self.resize_size, mode=self.interpolation, antialias=self.antialias)
        x = center_crop(x, self.crop_size, rounding="round")
        return normalize(x, self.mean, self.std)

    def logits(self, images: Tensor) -> Tensor:
        """The ResNet-50's ``(B, 1000)`` ImageNet logits (float32), differentiable w.r.t. ``images``."""
        import torch

        pixels = self.preprocess(images.to(self.device, torch.float32)).to(self.dtype)
        return self.model(pixels).float()

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score ``images`` (B, 3, H, W) in [0, 1]; returns ``(B,)``: higher = more like the target class."""
        check_inputs(images, prompts, who="adversarial")
        logits = self.logits(images)
        if self.margin:
            target = logits[:, self._index].max(dim=1).values
            other = logits.masked_fill(self._target_mask, float("-inf")).max(dim=1).values
            score = target - other
        else:
            score = logits.log_softmax(dim=1)[:, self._index].logsumexp(dim=1)
        return score.to(images.device)

    def __repr__(self) -> str:
        source = f"path={self.path!r}" if self.path else f"weights={self.weights!r}"
        return f"AdversarialReward(target={self.target_names!r}, margin={self.margin}, {source})"


META = RewardMeta(
    inputs="image",
    score_range=(-15.0, 0.0),
    memory_gb=0.05,
    reference="torchvision ResNet50_Weights.transforms() + resnet50, from PIL images",
    parity_tol=2e-3,
    weights_license="BSD-3-Clause (torchvision); trained on ImageNet, whose terms apply",
    homepage="https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html",
)
"""What the plugin directory shows about ``adversarial``."""


@draftsdk.hookimpl
def register_rewards(register):  # type: ignore[no-untyped-def]
    register(AdversarialReward, meta=META)
