"""JPEG compressibility and incompressibility: DDPO's rewards without a gradient.

Each image is rounded to 8 bits (``(x * 255).round().clamp(0, 255)``), encoded by PIL as a JPEG at a
fixed quality (95 by default, as in DDPO, Black et al. 2023) with PIL's other settings left at their
defaults, and scored by the file size in kB (1 kB = 1000 bytes):

- ``jpeg-compressibility`` = ``-size``: smaller files score higher (flat, smooth, low-detail images);
- ``jpeg-incompressibility`` = ``+size``: larger files score higher (detail, texture, noise).

The encoding leaves the autograd graph, so both are ``differentiable = False``: the DRaFT variants
refuse them and ``variant="ddpo"`` (policy gradient, ``eta > 0``) trains on them. Importing this
module imports neither torch nor PIL; listing rewards stays free.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..registry import RewardMeta
from ..rewards import check_inputs

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["DEFAULT_QUALITY", "JpegCompressibility", "JpegIncompressibility", "jpeg_sizes_kb"]

DEFAULT_QUALITY = 95
"""JPEG quality of DDPO's compressibility experiments (PIL's ``quality=``)."""


def _check_quality(quality: object, who: str) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"{who}: quality must be an integer from 1 to 100 (DDPO uses {DEFAULT_QUALITY}), got {quality!r}")
    return quality


def jpeg_sizes_kb(images: Tensor, quality: int = DEFAULT_QUALITY) -> list[float]:
    """Size in kB (1000 bytes) of each image of ``images`` (B, 3, H, W) in [0, 1] saved by PIL as a JPEG.

    The pixels are rounded to uint8 first, as a saved PNG of the image would be.

    Examples:
        >>> import torch
        >>> flat, noise = torch.full((1, 3, 64, 64), 0.5), torch.rand(1, 3, 64, 64)
        >>> jpeg_sizes_kb(flat)[0] < jpeg_sizes_kb(noise)[0]
        True
    """
    import torch
    from PIL import Image

    quality = _check_quality(quality, "jpeg_sizes_kb")
    with torch.no_grad():
        pixels = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
        arrays = pixels.permute(0, 2, 3, 1).cpu().numpy()  # NCHW -> NHWC
    sizes = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return sizes


class _JpegSize:
    """``sign * size_kb`` of each image encoded as a JPEG at a fixed quality."""

    name = "jpeg-size"
    differentiable = False
    sign = 1.0

    def __init__(self, quality: int = DEFAULT_QUALITY) -> None:
        self.quality = _check_quality(quality, self.name)

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score each image (float32 (B,) on the images' device); the prompts are not used."""
        import torch

        check_inputs(images, prompts, who=self.name)
        sizes = jpeg_sizes_kb(images, self.quality)
        return torch.tensor([self.sign * s for s in sizes], dtype=torch.float32, device=images.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(quality={self.quality})"


class JpegCompressibility(_JpegSize):
    """Minus the JPEG file size in kB (PIL, quality 95 as in DDPO): smaller files score higher; no gradient."""

    name = "jpeg-compressibility"
    sign = -1.0


class JpegIncompressibility(_JpegSize):
    """The JPEG file size in kB (PIL, quality 95 as in DDPO): larger files score higher; no gradient."""

    name = "jpeg-incompressibility"
    sign = 1.0


@hookimpl
def register_rewards(register: Any) -> None:
    """Register ``jpeg-compressibility`` and ``jpeg-incompressibility``."""
    register(JpegCompressibility, meta=_meta(-150.0, -5.0))
    register(JpegIncompressibility, meta=_meta(5.0, 150.0))


def _meta(low: float, high: float) -> RewardMeta:
    """Typical range at 512 px: flat images ~5 kB, SD samples tens of kB, uniform noise ~300 kB."""
    return RewardMeta(
        inputs="image (rounded to 8 bits)", score_range=(low, high), memory_gb=0.0, weights_license="none (no weights)",
        reference="ddpo-pytorch jpeg_compressibility / jpeg_incompressibility (PIL, quality 95, kB = 1000 bytes)",
        parity_tol=0.0, homepage="https://github.com/kvablack/ddpo-pytorch",
    )
