"""Differentiable image pre-processing in torch ops, for reward plugins.

HF processors and PIL round to uint8 and leave the autograd graph; these functions keep it. On float
images ``F.interpolate(mode="bicubic", antialias=True)`` is PIL's bicubic filter (to ~1e-5), so a
plugin built from them matches the reference pre-processing up to PIL's 8-bit rounding.

All functions take and return ``(B, C, H, W)`` float tensors.

Examples:
    >>> import torch
    >>> x = torch.rand(2, 3, 512, 768)
    >>> clip_preprocess = lambda im: normalize(center_crop(resize_shortest_side(im, 224), 224), CLIP_MEAN, CLIP_STD)
    >>> clip_preprocess(x).shape
    torch.Size([2, 3, 224, 224])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "resize",
    "resize_shortest_side",
    "center_crop",
    "resize_longest_side_and_pad",
    "normalize",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(images: Tensor, size: tuple[int, int], mode: str = "bicubic", antialias: bool = True) -> Tensor:
    """Resize to ``size = (height, width)``; a no-op when the size already matches."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=tuple(size), mode=mode, align_corners=False, antialias=antialias)


def resize_shortest_side(images: Tensor, size: int, mode: str = "bicubic", antialias: bool = True) -> Tensor:
    """Resize so the short side is ``size``; the long side becomes ``int(size * long / short)`` (CLIP, HF)."""
    h, w = images.shape[-2:]
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    return resize(images, new, mode=mode, antialias=antialias)


def center_crop(images: Tensor, size: int, rounding: str = "floor") -> Tensor:
    """Crop the central ``size x size`` square.

    ``rounding="floor"`` puts the crop like HF's CLIPImageProcessor; ``"round"`` like torchvision's
    CenterCrop used by OpenAI CLIP (round half to even). They differ by one pixel on odd margins.
    """
    if rounding not in ("floor", "round"):
        raise ValueError(f"center_crop: rounding must be 'floor' or 'round', got {rounding!r}")
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"center_crop: image {h}x{w} is smaller than the crop {size}")
    top, left = ((h - size) // 2, (w - size) // 2) if rounding == "floor" else (round((h - size) / 2), round((w - size) / 2))
    return images[..., top : top + size, left : left + size]


def resize_longest_side_and_pad(images: Tensor, size: int, fill: float = 0.0, antialias: bool = True) -> Tensor:
    """Resize so the long side is ``size`` (bicubic, no clamp), then pad to a square with ``fill``.

    This is HPSv2's ``ResizeMaxSize``: new side ``round(d * size / max(h, w))``, padding split as
    ``[pad // 2, pad - pad // 2]``.
    """
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    scale = size / max(h, w)
    if scale != 1.0:
        images = resize(images, (round(h * scale), round(w * scale)), antialias=antialias)
    pad_h, pad_w = size - images.shape[-2], size - images.shape[-1]
    return F.pad(images, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=fill)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(images - mean) / std`` per channel."""
    m = images.new_tensor(mean).view(1, -1, 1, 1)
    s = images.new_tensor(std).view(1, -1, 1, 1)
    return (images - m) / s
