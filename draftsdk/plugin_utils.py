"""Helpers for reward-plugin authors: dtype and device options, paths, one-line errors, frozen models.

The reward plugins shipped with draftsdk (``draftsdk-aesthetic``, ``-hpsv2``, ``-pickscore``,
``-clipscore``, ``-imagereward``, ``-owlvit``, ``-adversarial``) use these so that their options,
devices and error messages behave alike; a third-party plugin may use them too. The last two,
:func:`tiny_clip_config` and :func:`tiny_open_clip_config`, build tiny random CLIPs for plugin tests.

Importing this module is cheap: torch (and transformers, for :func:`quiet_transformers`) is imported
inside the functions that need it, so a plugin may import it at module level without loading torch
when rewards are only listed.

Examples:
    >>> from draftsdk.plugin_utils import first_line, resolve_dtype
    >>> resolve_dtype("bf16", "myreward")
    torch.bfloat16
    >>> first_line(OSError("no such file\\n  (details...)"))
    'no such file'
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "resolve_dtype",
    "resolve_device",
    "local_path",
    "looks_like_path",
    "resolve_source",
    "hub_file",
    "not_cached_error",
    "first_line",
    "hub_offline",
    "offline_hint",
    "quiet_diffusers",
    "quiet_transformers",
    "checkpoint_layers",
    "freeze",
    "DeviceFollower",
    "tiny_clip_config",
    "tiny_open_clip_config",
]

_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_TRUE = ("1", "true", "yes", "on")

_ModuleT = TypeVar("_ModuleT", bound="torch.nn.Module")


def resolve_dtype(dtype: Any, who: str) -> torch.dtype:
    """A reward's ``dtype`` option as a torch dtype: float32 (also for None), float16 or bfloat16.

    Accepts a torch dtype or a name (``"float32"``/``"fp32"``/``"float"``, ``"float16"``/``"fp16"``/
    ``"half"``, ``"bfloat16"``/``"bf16"``, case-insensitive, ``"torch."`` prefix allowed). Anything
    else raises a one-line ``ValueError`` that starts with ``who``.

    Examples:
        >>> resolve_dtype("fp16", "myreward"), resolve_dtype(None, "myreward")
        (torch.float16, torch.float32)
        >>> resolve_dtype("int8", "myreward")
        Traceback (most recent call last):
        ValueError: myreward: dtype must be one of 'float32', 'float16', 'bfloat16', got 'int8'
    """
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
        if name in ("float32", "float16", "bfloat16"):
            return dtype
    else:
        name = _DTYPE_ALIASES.get(str(dtype).strip().lower().removeprefix("torch."), "")
        if name:
            return getattr(torch, name)
    raise ValueError(f"{who}: dtype must be one of 'float32', 'float16', 'bfloat16', got {dtype!r}")


def resolve_device(device: Any, *, auto: bool = False) -> torch.device | None:
    """A reward's ``device`` option as a torch device.

    ``None`` stays None (the reward follows the images' device), or with ``auto=True`` becomes CUDA
    when available, else the CPU.

    Examples:
        >>> resolve_device("cpu"), resolve_device(None)
        (device(type='cpu'), None)
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu") if auto else None
    return torch.device(device)


def local_path(spec: str | os.PathLike[str]) -> str | None:
    """The ``~``-expanded path when ``spec`` names something on disk, else None (then it is a hub id).

    Examples:
        >>> local_path("/"), local_path("org/model-that-is-not-a-folder-here")
        ('/', None)
    """
    path = os.path.expanduser(str(spec))
    return path if os.path.exists(path) else None


def looks_like_path(spec: str | os.PathLike[str]) -> bool:
    """True when ``spec`` can only mean a file-system path (absolute, ``./``, ``../``, ``~``, backslash).

    A spec that does not exist on disk and does not look like a path is a hub id.

    Examples:
        >>> looks_like_path("./model"), looks_like_path("~/model"), looks_like_path("org/model")
        (True, True, False)
    """
    s = str(spec)
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s


def resolve_source(spec: str | os.PathLike[str], *, who: str, what: str, option: str, example: str) -> str:
    """Where to load ``spec`` from: its local path when it exists, else ``spec`` itself as a hub id.

    A spec that only makes sense as a path (:func:`looks_like_path`) but does not exist raises a
    one-line ``FileNotFoundError`` naming the ``option`` to pass.

    Examples:
        >>> resolve_source("org/model", who="myreward", what="model folder", option="path", example="/models/x")
        'org/model'
        >>> resolve_source("./missing", who="myreward", what="model folder", option="path", example="/models/x")
        Traceback (most recent call last):
        FileNotFoundError: myreward: model folder './missing' does not exist; pass path='/models/x'
    """
    local = local_path(spec)
    if local is None and looks_like_path(spec):
        raise FileNotFoundError(f"{who}: {what} {str(spec)!r} does not exist; pass {option}={example!r}")
    return local or str(spec)


def hub_file(spec: str | os.PathLike[str], *, who: str, what: str, option: str, example: str) -> str:
    """A local file for ``spec``: a file on disk, or ``"<org>/<repo>/<file>"`` fetched through the Hugging Face cache.

    Downloads on first use unless offline. Every failure is a one-line error that starts with ``who``
    and says what to pass as ``option`` (``example`` for a local file).

    Examples:
        >>> hub_file("org/repo/head.pth", who="myreward", what="head file", option="head",
        ...          example="/models/head.pth")  # doctest: +SKIP
        '/home/me/.cache/huggingface/hub/models--org--repo/snapshots/.../head.pth'
    """
    source = resolve_source(spec, who=who, what=what, option=option, example=example)
    spec = str(spec)
    if os.path.exists(source):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"{who}: {what} {spec!r} is a folder; pass the file itself, e.g. {option}={example!r}"
            )
        return source
    parts = spec.split("/")
    if len(parts) < 3:
        raise ValueError(f"{who}: {option} must be a local file or '<org>/<repo>/<file>' on the hub, got {spec!r}")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, HTTP errors, ...
        raise not_cached_error(
            who, what, spec, option=option, example=f"/path/to/{parts[-1]}", exc=exc, local="file"
        ) from None


def not_cached_error(
    who: str,
    what: str,
    spec: str,
    *,
    option: str,
    example: str,
    exc: BaseException | None = None,
    local: str = "path",
) -> FileNotFoundError:
    """The one-line error for a ``spec`` that is neither on disk (a local ``local``) nor in the Hugging Face cache.

    The reasons in brackets are ``HF_HUB_OFFLINE=1 is set`` when offline and the type of ``exc``;
    raise it ``from None``.

    Examples:
        >>> print(not_cached_error("myreward", "model", "org/model", option="path", example="/models/x",
        ...                        exc=OSError(), local="folder"))  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
        myreward: cannot load model 'org/model': not a local folder and not in the Hugging Face cache (...OSError);
        download it once with network access (cached under ~/.cache/huggingface) or pass path='/models/x'
    """
    reasons = ["HF_HUB_OFFLINE=1 is set"] if hub_offline() else []
    if exc is not None:
        reasons.append(type(exc).__name__)
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return FileNotFoundError(
        f"{who}: cannot load {what} {spec!r}: not a local {local} and not in the Hugging Face cache{why}; "
        f"download it once with network access (cached under ~/.cache/huggingface) or pass {option}={example!r}"
    )


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, stripped and cut to ``limit`` characters.

    Falls back to the exception's type name when the message is empty; for one-line error messages
    that quote a library's (often multi-line) error.

    Examples:
        >>> first_line(ValueError("\\n  bad header\\nTraceback..."))
        'bad header'
        >>> first_line(KeyError()), first_line(OSError("x" * 300), limit=10)
        ('KeyError', 'xxxxxxx...')
    """
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def hub_offline() -> bool:
    """True when the environment variable ``HF_HUB_OFFLINE`` is set to 1/true/yes/on (any case)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def offline_hint() -> str:
    """``" (HF_HUB_OFFLINE=1 is set)"`` when offline (see :func:`hub_offline`), else ``""``; for "cannot load" errors."""
    return " (HF_HUB_OFFLINE=1 is set)" if hub_offline() else ""


@contextlib.contextmanager
def _quiet(logging_module: Any) -> Iterator[None]:
    verbosity = logging_module.get_verbosity()
    bars = logging_module.is_progress_bar_enabled()
    logging_module.set_verbosity_error()
    logging_module.disable_progress_bar()
    try:
        yield
    finally:
        logging_module.set_verbosity(verbosity)
        if bars:
            logging_module.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars inside the block (restored afterwards).

    Examples:
        >>> with quiet_transformers():  # doctest: +SKIP
        ...     model = CLIPModel.from_pretrained(path)
    """
    from transformers.utils import logging as hf_logging

    with _quiet(hf_logging):
        yield


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' warnings and progress bars inside the block (restored afterwards).

    Examples:
        >>> with quiet_diffusers():  # doctest: +SKIP
        ...     pipe = StableDiffusionPipeline.from_pretrained(path)
    """
    from diffusers.utils import logging as diffusers_logging

    with _quiet(diffusers_logging):
        yield


def checkpoint_layers(layers: Iterable[torch.nn.Module]) -> None:
    """Recompute each layer in the backward pass (activation checkpointing), even in eval mode.

    transformers only checkpoints layers in training mode, and a frozen reward stays in eval mode,
    so this wraps each layer's ``forward`` (non-reentrant checkpointing: gradients reach the inputs
    even though no parameter requires grad). Under ``torch.no_grad()`` the layers run as before.
    Calling it twice on a layer wraps it once.

    Examples:
        >>> checkpoint_layers(clip.vision_model.encoder.layers)  # doctest: +SKIP
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    for layer in layers:
        if getattr(layer, "_draftsdk_checkpointed", False):
            continue
        inner = layer.forward

        @functools.wraps(inner)
        def forward(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        layer.forward = forward
        setattr(layer, "_draftsdk_checkpointed", True)  # torch types Module attributes as Tensor | Module


def freeze(module: _ModuleT) -> _ModuleT:
    """Put ``module`` in eval mode with no parameter gradients; returns it.

    Examples:
        >>> import torch
        >>> net = freeze(torch.nn.Linear(2, 1))
        >>> net.training, net.weight.requires_grad
        (False, False)
    """
    module.eval()
    module.requires_grad_(False)
    return module


class DeviceFollower:
    """Keeps a reward's frozen modules on one device: a pinned one, or wherever the images are.

    The reward-device contract: with ``device=None`` a reward follows the images' device (the
    modules move once, on the first call with images elsewhere); with a device given it stays there
    and the images are moved to it. Moving happens on first use, not when the reward is built, so a
    reward made before ``torch.cuda.set_device`` (under torchrun) still lands on each rank's GPU.

    Args:
        modules: the modules to move together (e.g. a CLIP model and a head).
        device: the reward's ``device`` option (see :func:`resolve_device`); None follows the images.

    Examples:
        >>> import torch
        >>> head = torch.nn.Linear(2, 1)
        >>> place = DeviceFollower([head])
        >>> place.pinned is None, place.current
        (True, device(type='cpu'))
        >>> place.follow(torch.zeros(1, 2).device)
        device(type='cpu')
        >>> DeviceFollower([head], "cpu").describe()
        'cpu'
    """

    def __init__(self, modules: Iterable[torch.nn.Module], device: Any = None) -> None:
        import torch

        self.modules = list(modules)
        self.pinned = resolve_device(device)
        self.current = torch.device("cpu")
        if self.pinned is not None:
            self._move(self.pinned)

    def _move(self, device: torch.device) -> None:
        if device != self.current:
            for module in self.modules:
                module.to(device)
            self.current = device

    def follow(self, device: torch.device) -> torch.device:
        """Move the modules to the pinned device, else to ``device`` (the images'); returns where they are."""
        self._move(self.pinned or device)
        return self.current

    def describe(self) -> str:
        """``"follow images"`` or the pinned device, for a reward's ``repr``."""
        return str(self.pinned) if self.pinned is not None else "follow images"


# -- tiny models for plugin tests ------------------------------------------------------------------


def tiny_open_clip_config(*, embed_dim: int = 32, quick_gelu: bool | None = None) -> dict[str, Any]:
    """An open_clip model config (the ``ViT-*.json`` format) of a tiny random CLIP, for plugin tests.

    The real 224 px input with patch 14 and the real 49408-token BPE vocabulary and 77-token context,
    so the real tokenizer and pre-processing apply; two layers per tower (vision width 64, text width
    32). ``quick_gelu`` is written only when given (OpenAI's weights use QuickGELU).

    Examples:
        >>> cfg = tiny_open_clip_config(quick_gelu=True)
        >>> cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["vocab_size"], cfg["quick_gelu"]
        (224, 49408, True)
    """
    cfg: dict[str, Any] = {"embed_dim": embed_dim}
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    cfg["vision_cfg"] = {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14}
    cfg["text_cfg"] = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
    return cfg


def tiny_clip_config(
    tokenizer: Any,
    *,
    vision_hidden: int = 48,
    projection_dim: int = 32,
    hidden_act: str | None = None,
    logit_scale: float | None = None,
) -> Any:
    """A transformers ``CLIPConfig`` of a tiny random CLIP for plugin tests (imports transformers).

    Two layers per tower (text width 32, vision width ``vision_hidden``), the real 224 px input with
    patch 14, the token ids of ``tokenizer`` (e.g. :func:`draftsdk.testing.tiny_clip_tokenizer`).
    ``hidden_act`` sets both towers' activation (transformers' default is ``"quick_gelu"``);
    ``logit_scale`` the initial ``logit_scale.exp()`` (e.g. 100 as in trained CLIPs).

    Examples:
        >>> from draftsdk.testing import tiny_clip_tokenizer
        >>> config = tiny_clip_config(tiny_clip_tokenizer(), hidden_act="gelu", logit_scale=100.0)
        >>> config.vision_config.image_size, config.text_config.hidden_act, round(config.logit_scale_init_value, 3)
        (224, 'gelu', 4.605)
    """
    import math

    from transformers import CLIPConfig

    act: dict[str, Any] = {} if hidden_act is None else {"hidden_act": hidden_act}
    scale: dict[str, Any] = {} if logit_scale is None else {"logit_scale_init_value": math.log(logit_scale)}
    return CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **act,
        ),
        vision_config=dict(
            image_size=224, patch_size=14, hidden_size=vision_hidden, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, **act,
        ),
        projection_dim=projection_dim,
        **scale,
    )
