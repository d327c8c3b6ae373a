"""Small helpers shared by the CLIP-family reward plugins (each plugin carries its own copy).

Imported only when a reward is instantiated or called, never at listing time.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: Any, who: str) -> torch.dtype:
    """``"float32" | "float16" | "bfloat16"`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"{who}: dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"{who}: dtype must be 'float32', 'float16' or 'bfloat16', got {dtype!r}")
    return _DTYPES[key]


def resolve_device(device: Any) -> torch.device | None:
    """None stays None (follow the images); anything else becomes a torch.device."""
    return None if device is None else torch.device(device)


def local_path(spec: str) -> str | None:
    """The expanded path when ``spec`` names something on disk, else None (then it is a hub id)."""
    path = os.path.expanduser(str(spec))
    return path if os.path.exists(path) else None


def looks_like_path(spec: str) -> bool:
    """True for specs that can only be meant as a file-system path (absolute, ./, ../, ~, backslash)."""
    s = str(spec)
    return s.startswith(("/", "./", "../", "~", ".\\")) or "\\" in s


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception message, shortened."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def offline_hint() -> str:
    return " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") else ""


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars while loading (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def checkpoint_layers(layers: Iterable[torch.nn.Module]) -> None:
    """Recompute each layer in the backward pass (activation checkpointing), even in eval mode.

    transformers only checkpoints layers in training mode; a frozen reward stays in eval mode, so
    the plugin wraps the layers' ``forward`` itself (non-reentrant, so gradients reach the pixels
    even though no parameter requires grad).
    """
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

        layer.forward = forward  # type: ignore[method-assign]
        layer._draftsdk_checkpointed = True  # type: ignore[attr-defined]


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no parameter gradients."""
    module.eval()
    module.requires_grad_(False)
    return module
