"""Loading and differentiable scoring for CLIPScore (imports torch, and open_clip or transformers).

Two loaders share one scorer: :class:`OpenClipScorer` (an open_clip architecture + weights) and
:class:`HFClipScorer` (a transformers ``CLIPModel`` folder or hub id). Both re-implement their
library's evaluation pre-processing in torch ops (:func:`preprocess`) and return the raw cosine of
each image with its own prompt; ``CLIPScore`` applies ``w * max(cos, 0)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize, resize_shortest_side
from draftsdk.plugin_utils import (
    DeviceFollower,
    checkpoint_layers,
    first_line,
    freeze,
    hub_file,
    local_path,
    looks_like_path,
    not_cached_error,
    quiet_transformers,
    resolve_device,
    resolve_dtype,
    resolve_source,
)

WHO = "clipscore"
CHECKPOINT_EXAMPLE = "/path/to/open_clip_model.safetensors"
HF_EXAMPLE = "/path/to/clip-vit-large-patch14"
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resample codes in HF image-processor configs


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """How a CLIP model's reference pre-processing turns an image into its input.

    Attributes:
        size: the model's (square) input size.
        resize_mode: ``"shortest"`` (short side to ``size``, then a centre crop) or ``"squash"``
            (both sides to ``size``, aspect ratio not kept).
        interpolation: ``"bicubic"`` or ``"bilinear"`` (antialiased, as PIL's filters).
        crop_rounding: centre-crop offset on odd margins: ``"round"`` (torchvision ``CenterCrop``, used
            by open_clip) or ``"floor"`` (transformers ``CLIPImageProcessor``).
        mean: per-channel mean of the normalisation.
        std: per-channel standard deviation of the normalisation.
    """

    size: int
    resize_mode: str
    interpolation: str
    crop_rounding: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def preprocess(images: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    """The reference PIL pre-processing in differentiable torch ops: (B, 3, H, W) in [0, 1] -> model input.

    The antialiased resize is PIL's filter on float pixels; the clamp stands for PIL's uint8 output.
    """
    x = images.float()
    if settings.resize_mode == "shortest":
        x = resize_shortest_side(x, settings.size, mode=settings.interpolation).clamp(0.0, 1.0)
        x = center_crop(x, settings.size, rounding=settings.crop_rounding)
    else:
        x = resize(x, (settings.size, settings.size), mode=settings.interpolation).clamp(0.0, 1.0)
    return normalize(x, settings.mean, settings.std)


class _Scorer:
    """A frozen CLIP and its pre-processing; subclasses load it and encode images and texts."""

    clip: torch.nn.Module
    settings: ImageSettings

    def __init__(self, *, device: Any, dtype: Any) -> None:
        self.dtype = resolve_dtype(dtype, WHO)
        self.device = resolve_device(device)
        self.grad_checkpointing = False

    def _finish(self, clip: torch.nn.Module) -> None:
        self.clip = freeze(clip.to(self.dtype))
        self.place = DeviceFollower([self.clip], self.device)  # follows the images unless a device is pinned

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model's input for images in [0, 1] (float32, differentiable)."""
        return preprocess(images, self.settings)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings (float32) of images in [0, 1], with gradient to the pixels."""
        pixels = self.preprocess(images.to(self.place.current)).to(self.dtype)
        return F.normalize(self._image_features(pixels).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit text embeddings (float32); the whole batch is tokenised at once, without gradient."""
        return F.normalize(self._text_features(texts).float(), dim=-1)

    def cosine(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """cos(image_i, text_i) for each i (the diagonal), float32 (B,) on the images' device."""
        self.place.follow(images.device)
        text = self.encode_texts(texts)
        return (self.encode_images(images) * text).sum(dim=-1).to(images.device)

    def describe(self) -> str:
        """The settings that matter, for ``repr``."""
        return (
            f"dtype={str(self.dtype).removeprefix('torch.')}, device={self.device or 'follow images'}, "
            f"grad_checkpointing={self.grad_checkpointing}"
        )


# -- open_clip ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _build_quietly() -> Iterator[None]:
    """Build an architecture whose every weight the checkpoint will overwrite: skip torch.nn.init
    (ViT-L-14's random init takes seconds on a CPU) and open_clip's "initialized randomly" warning."""
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def keep(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    for n in saved:
        setattr(init, n, keep)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)
        logging.disable(before)


def resolve_architecture(spec: str) -> str:
    """An open_clip model name; a model-config JSON is registered with open_clip under its file stem."""
    import open_clip

    if spec.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(
            f"{WHO}: open_clip names with a schema ({spec!r}) are not supported; pass model='<architecture>' and "
            f"pretrained='<tag, checkpoint file or org/repo/file>'"
        )
    if spec.endswith(".json"):
        file = local_path(spec)
        if file is None or not os.path.isfile(file):
            raise FileNotFoundError(f"{WHO}: model config {spec!r} does not exist; pass model='ViT-L-14' or an existing JSON")
        try:
            config = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{WHO}: model config {spec!r} is not valid JSON: {first_line(exc)}") from None
        if not isinstance(config, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
            raise ValueError(f"{WHO}: model config {spec!r} needs the keys embed_dim, vision_cfg and text_cfg (open_clip format)")
        open_clip.add_model_config(file)
        return Path(file).stem
    known = open_clip.list_models()
    if spec not in known:
        close = difflib.get_close_matches(spec, known, n=1)
        hint = f" such as {close[0]!r}" if close else " (default 'ViT-L-14')"
        raise ValueError(
            f"{WHO}: unknown open_clip architecture {spec!r}; use a name from open_clip.list_models(){hint} "
            "or the path of an open_clip model-config JSON"
        )
    return spec


def resolve_weights(name: str, pretrained: str) -> tuple[str, dict[str, Any]]:
    """(checkpoint file, the tag's pretrained config or ``{}``) for ``pretrained``: a tag of ``name``,
    a local file or ``org/repo/file`` on the hub; every failure is a one-line error."""
    import open_clip

    if local_path(pretrained) is None and not looks_like_path(pretrained):
        tag = open_clip.get_pretrained_cfg(name, pretrained)
        if tag:
            try:
                return str(open_clip.download_pretrained(tag)), dict(tag)
            except Exception as exc:  # noqa: BLE001 - offline, HTTP errors, ...
                raise not_cached_error(
                    WHO, "the open_clip weights", f"{name}:{pretrained}", option="pretrained",
                    example=CHECKPOINT_EXAMPLE, exc=exc, local="file",
                ) from None
        if pretrained.count("/") < 2:
            tags = open_clip.list_pretrained_tags_by_model(name)
            listed = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none"
            raise ValueError(
                f"{WHO}: pretrained {pretrained!r} is neither a pretrained tag of {name!r} (tags: {listed}) "
                f"nor a local checkpoint file; pass pretrained={CHECKPOINT_EXAMPLE!r}"
            )
    file = hub_file(pretrained, who=WHO, what="checkpoint", option="pretrained", example=CHECKPOINT_EXAMPLE)
    return file, {}


def _mismatch_detail(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return line if len(line) <= 160 else line[:157] + "..."
    return first_line(exc, 160)


def open_clip_settings(model: Any, name: str) -> ImageSettings:
    """The evaluation transform open_clip builds for ``model`` (``image_transform_v2(..., is_train=False)``)."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    if not isinstance(size, int):
        size = tuple(size)
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"{WHO}: architecture {name!r} has a non-square input {size}; only square inputs are supported")
        size = size[0]
    resize_mode = cfg.get("resize_mode", "shortest")
    if resize_mode not in ("shortest", "squash"):
        raise ValueError(
            f"{WHO}: {name!r} pre-processes with resize_mode={resize_mode!r}; only 'shortest' (CLIP's resize + "
            "centre crop) and 'squash' are supported"
        )
    interpolation = cfg.get("interpolation", "bicubic")
    interpolation = "bilinear" if interpolation == "bilinear" else "bicubic"  # 'random' is bicubic at inference
    mean = tuple(float(m) for m in cfg.get("mean", CLIP_MEAN))
    std = tuple(float(s) for s in cfg.get("std", CLIP_STD))
    return ImageSettings(int(size), resize_mode, interpolation, "round", mean, std)


class OpenClipScorer(_Scorer):
    """An open_clip CLIP (architecture + weights) with open_clip's evaluation transform in torch ops."""

    def __init__(self, *, architecture: str, pretrained: str, device: Any, dtype: Any, grad_checkpointing: bool) -> None:
        import open_clip

        super().__init__(device=device, dtype=dtype)
        name = resolve_architecture(architecture)
        file, tag = resolve_weights(name, pretrained)  # before building a large model
        # OpenAI's weights were trained with QuickGELU; open_clip only warns when the architecture lacks it
        quick_gelu = bool(tag.get("quick_gelu", False))
        overrides = {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}
        with _build_quietly():
            model = open_clip.create_model(
                name, pretrained=None, precision="fp32", device="cpu", force_quick_gelu=quick_gelu,
                force_preprocess_cfg=overrides or None,
            )
        try:
            open_clip.load_checkpoint(model, file, strict=True, weights_only=True)
        except RuntimeError as exc:
            text = str(exc)
            if "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
                raise ValueError(
                    f"{WHO}: checkpoint {pretrained!r} does not fit the open_clip architecture {name!r} "
                    f"(weights of another model?): {_mismatch_detail(exc)}"
                ) from None
            raise ValueError(f"{WHO}: cannot read checkpoint {pretrained!r}: {first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - refused by weights_only, corrupt file, ...
            raise ValueError(f"{WHO}: cannot read checkpoint {pretrained!r} as weights only: {first_line(exc)}") from None
        self.settings = open_clip_settings(model, name)
        try:
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:  # noqa: BLE001 - an HF tokenizer that is not cached, ...
            raise FileNotFoundError(f"{WHO}: cannot load the tokenizer of {name!r}: {first_line(exc)}") from None
        self.architecture, self.pretrained, self.quick_gelu = name, pretrained, quick_gelu
        if grad_checkpointing:
            model.visual.set_grad_checkpointing(True)
        self.grad_checkpointing = bool(grad_checkpointing)
        self._finish(model)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(self.tokenizer(texts).to(self.place.current))

    def describe(self) -> str:
        """The settings that matter, for ``repr``."""
        return f"architecture={self.architecture!r}, quick_gelu={self.quick_gelu}, {super().describe()}"


# -- transformers ---------------------------------------------------------------------------------


def _plain(value: Any) -> dict[str, int]:
    """An HF size setting (dict, or transformers 5's SizeDict dataclass) as a dict without Nones."""
    if hasattr(value, "items"):
        items = dict(value.items())
    elif dataclasses.is_dataclass(value):
        items = dataclasses.asdict(value)  # type: ignore[arg-type]
    else:
        items = dict(vars(value))
    return {k: int(v) for k, v in items.items() if v is not None}


def hf_settings(source: str, image_size: int, path: str) -> ImageSettings:
    """CLIPImageProcessor's resize / crop / normalisation from the folder's image-processor config
    (the standard CLIP values when it has none)."""
    default = ImageSettings(image_size, "shortest", "bicubic", "floor", CLIP_MEAN, CLIP_STD)
    try:
        from transformers import AutoImageProcessor

        with quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(source)
    except Exception:  # noqa: BLE001 - no preprocessor_config.json: CLIP's defaults
        return default
    size = _plain(getattr(processor, "size", None) or {"shortest_edge": image_size})
    crop = _plain(getattr(processor, "crop_size", None) or {"height": image_size, "width": image_size})
    do_crop = bool(getattr(processor, "do_center_crop", True))
    resample = getattr(processor, "resample", 3)
    resample = int(getattr(resample, "value", resample))
    if resample not in _RESAMPLE:
        raise ValueError(f"{WHO}: the image processor of {path!r} resamples with {resample!r}; only bicubic (3) and bilinear (2) are supported")
    mean = tuple(float(m) for m in (getattr(processor, "image_mean", None) or CLIP_MEAN))
    std = tuple(float(s) for s in (getattr(processor, "image_std", None) or CLIP_STD))
    if "shortest_edge" in size:
        side = size["shortest_edge"]
        if not do_crop or crop.get("height") != crop.get("width") or crop.get("height") != side:
            raise ValueError(
                f"{WHO}: the image processor of {path!r} resizes the short side to {side} and crops {crop if do_crop else 'nothing'}; "
                "only a square centre crop of the resized short side is supported"
            )
        mode = "shortest"
    else:
        side = size.get("height", image_size)
        if size.get("width", side) != side or (do_crop and (crop.get("height"), crop.get("width")) != (side, side)):
            raise ValueError(f"{WHO}: the image processor of {path!r} resizes to {size} and crops {crop}; only square inputs are supported")
        mode = "squash"
    if side != image_size:
        raise ValueError(f"{WHO}: the image processor of {path!r} makes {side} px inputs but the model takes {image_size} px")
    return ImageSettings(side, mode, _RESAMPLE[resample], "floor", mean, std)


class HFClipScorer(_Scorer):
    """A transformers CLIPModel with CLIPImageProcessor's pre-processing in torch ops."""

    def __init__(self, *, path: str, device: Any, dtype: Any, grad_checkpointing: bool) -> None:
        from transformers import AutoConfig, AutoTokenizer, CLIPModel

        super().__init__(device=device, dtype=dtype)
        source = resolve_source(path, who=WHO, what="model folder", option="hf_model", example=HF_EXAMPLE)
        try:
            with quiet_transformers():
                config = AutoConfig.from_pretrained(source)
        except OSError as exc:
            raise not_cached_error(WHO, "CLIP model", path, option="hf_model", example=HF_EXAMPLE, exc=exc, local="folder") from None
        except ValueError as exc:
            raise ValueError(f"{WHO}: {path!r} is not a transformers CLIP model: {first_line(exc)}") from None
        if getattr(config, "model_type", None) != "clip":
            raise ValueError(
                f"{WHO}: {path!r} is a {getattr(config, 'model_type', None)!r} model, not a CLIPModel; "
                "pass a CLIP such as hf_model='openai/clip-vit-large-patch14'"
            )
        try:  # the small files before the big weights
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{WHO}: no CLIP tokenizer in {path!r} (it needs the tokenizer files next to config.json): {first_line(exc)}") from None
        try:
            with quiet_transformers():
                clip = CLIPModel.from_pretrained(source, config=config)
        except OSError as exc:
            raise not_cached_error(WHO, "CLIP weights", path, option="hf_model", example=HF_EXAMPLE, exc=exc, local="folder") from None
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{WHO}: the weights in {path!r} do not fit the CLIP architecture of its config.json: {first_line(exc)}") from None
        self.settings = hf_settings(source, int(clip.config.vision_config.image_size), path)
        self.max_length = min(77, int(clip.config.text_config.max_position_embeddings))
        self.path = path
        if grad_checkpointing:
            checkpoint_layers(clip.vision_model.encoder.layers)
        self.grad_checkpointing = bool(grad_checkpointing)
        self._finish(clip)

    @staticmethod
    def _embedding(output: Any) -> torch.Tensor:
        # transformers 5 returns an output object whose .pooler_output is the projection; 4.x a tensor
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._embedding(self.clip.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.place.current)
        out = self.clip.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return self._embedding(out)
