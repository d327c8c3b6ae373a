"""Image grids and line charts as PNG files, with Pillow only (no plotting library needed).

Examples:
    >>> import torch
    >>> grid = make_grid(torch.rand(4, 3, 8, 8), ncol=2, row_labels=["a", "b"], col_labels=["x", "y"], scale=4)
    >>> grid.mode
    'RGB'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["make_grid", "plot_lines", "save_image", "save_png", "to_pil"]

PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75), (23, 190, 207)]


def _font(size: int = 12) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def to_pil(image: Any, scale: int = 1) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as a PIL image, enlarged ``scale`` times with nearest neighbour."""
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    pil = Image.fromarray(array)
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil


def make_grid(
    images: Any,
    ncol: int,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    scale: int = 1,
    pad: int = 2,
) -> Image.Image:
    """Lay out (N, 3, H, W) images row by row, ``ncol`` per row, with optional labels and title."""
    n = images.shape[0]
    nrow = math.ceil(n / ncol)
    tiles = [to_pil(images[i], scale) for i in range(n)]
    w, h = tiles[0].size
    font = _font(max(11, min(16, h // 4)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((int(probe.textlength(s, font=font)) for s in row_labels or []), default=0)
    left = label_w + 8 if row_labels else 0
    top = (font.size + 8 if col_labels else 0) + (font.size + 10 if title else 0)
    canvas = Image.new("RGB", (left + ncol * (w + pad) + pad, top + nrow * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill="black", font=font)
    col_y = top - font.size - 6
    for c, label in enumerate(col_labels or []):
        draw.text((left + pad + c * (w + pad), col_y), label, fill="black", font=font)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        canvas.paste(tile, (left + pad + c * (w + pad), top + pad + r * (h + pad)))
    for r, label in enumerate(row_labels or []):
        draw.text((4, top + pad + r * (h + pad) + h // 2 - font.size // 2), label, fill="black", font=font)
    return canvas


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """About ``target`` round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi]."""
    raw = (hi - lo) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def plot_lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (640, 400),
    hlines: Mapping[str, float] | None = None,
) -> Image.Image:
    """A simple line chart: ``series = {name: (xs, ys)}``; ``hlines = {label: y}`` draws dashed references."""
    width, height = size
    ml, mr, mt, mb = 64, 16, 32, 44
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)] + list((hlines or {}).values())
    if not xs_all or not ys_all:
        draw.text((ml, mt), "no data", fill="black", font=font)
        return img
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    if x1 == x0:
        x1 = x0 + 1
    span = (y1 - y0) or 1.0
    y0, y1 = y0 - 0.05 * span, y1 + 0.05 * span

    def px(x: float, y: float) -> tuple[float, float]:
        return (ml + (x - x0) / (x1 - x0) * (width - ml - mr), mt + (y1 - y) / (y1 - y0) * (height - mt - mb))

    draw.rectangle([ml, mt, width - mr, height - mb], outline="black")
    for yv in _nice_ticks(y0, y1):
        _, yp = px(x0, yv)
        draw.line([ml - 4, yp, ml, yp], fill="black")
        draw.text((4, yp - 6), f"{yv:g}", fill="black", font=font)
    for xv in _nice_ticks(x0, x1):
        xp, _ = px(xv, y0)
        draw.line([xp, height - mb, xp, height - mb + 4], fill="black")
        draw.text((xp - 10, height - mb + 6), f"{xv:g}", fill="black", font=font)
    for j, (label, y) in enumerate((hlines or {}).items()):
        _, yp = px(x0, y)
        for dash in range(ml, width - mr, 12):
            draw.line([dash, yp, min(dash + 6, width - mr), yp], fill=(120, 120, 120))
        draw.text((width - mr - 8 - draw.textlength(label, font=font), yp - 15), label, fill=(90, 90, 90), font=font)
    for k, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = [px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for p in points if len(points) < 40 else []:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=color)
        draw.text((ml + 8, mt + 6 + 15 * k), name, fill=color, font=font)
    draw.text((ml, 8), title, fill="black", font=font)
    draw.text(((width - draw.textlength(xlabel, font=font)) / 2, height - 18), xlabel, fill="black", font=font)
    draw.text((4, mt - 16), ylabel, fill="black", font=font)
    return img


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save as PNG, atomically (temporary file, then rename)."""
    from .atomic import atomic_write

    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save atomically in the format the suffix names (.png, .jpg/.jpeg, .webp); another suffix is refused."""
    from .atomic import atomic_write
    from .errors import DraftError

    target = Path(path)
    fmt = IMAGE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise DraftError(f"cannot write {str(target)!r}: use a .png, .jpg or .webp file name")
    rgb = image.convert("RGB") if fmt == "JPEG" else image
    return atomic_write(target, lambda tmp: rgb.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})))
