"""Loading and differentiable scoring for PickScore (imports torch and transformers)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize, resize_shortest_side
from draftsdk.plugin_utils import (
    DeviceFollower,
    checkpoint_layers,
    first_line,
    freeze,
    local_path,
    not_cached_error,
    quiet_transformers,
    resolve_device,
    resolve_dtype,
    resolve_source,
)

WHO = "pickscore"
DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def _source(spec: str, option: str) -> str:
    return resolve_source(spec, who=WHO, what="folder", option=option, example="/folder/with/config.json")


def _missing(what: str, spec: str, option: str, example: str, exc: BaseException) -> FileNotFoundError:
    return not_cached_error(WHO, what, spec, option=option, example=example, exc=exc, local="folder")


def load_clip(path: str) -> Any:
    """The full transformers CLIPModel (both towers: PickScore needs the text side too)."""
    from transformers import AutoConfig, CLIPModel

    source = _source(path, "path")
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise _missing("PickScore model", path, "path", "/path/to/PickScore_v1", exc) from None
    except ValueError as exc:
        raise ValueError(f"{WHO}: {path!r} is not a transformers CLIP model: {first_line(exc)}") from None
    if getattr(config, "model_type", None) != "clip":
        raise ValueError(
            f"{WHO}: {path!r} is a {getattr(config, 'model_type', None)!r} model, not a CLIPModel "
            "(PickScore_v1 is a CLIP ViT-H-14)"
        )
    try:
        with quiet_transformers():
            return CLIPModel.from_pretrained(source, config=config)
    except OSError as exc:
        raise _missing("PickScore weights", path, "path", "/path/to/PickScore_v1", exc) from None
    except (RuntimeError, ValueError) as exc:  # weights that do not fit config.json
        raise ValueError(
            f"{WHO}: the weights in {path!r} do not fit the CLIP architecture of its config.json: {first_line(exc)}"
        ) from None


def resolve_processor_path(path: str, processor_path: str | None) -> str:
    if processor_path is not None:
        return processor_path
    local = local_path(path)
    if local is not None and any(os.path.isfile(os.path.join(local, f)) for f in _TOKENIZER_FILES):
        return path
    return DEFAULT_PROCESSOR


def load_tokenizer(processor_path: str) -> Any:
    from transformers import AutoTokenizer

    source = _source(processor_path, "processor_path")
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and local_path(processor_path) is None:
            raise _missing("the tokenizer of", processor_path, "processor_path", "/path/to/CLIP-ViT-H-14-laion2B-s32B-b79K", exc) from None
        raise ValueError(f"{WHO}: no CLIP tokenizer in {processor_path!r}: {first_line(exc)}") from None


def _size_dict(value: Any) -> dict[str, int]:
    """transformers' size settings (a dict, or a SizeDict dataclass in 5.x) -> a plain dict without Nones."""
    if hasattr(value, "items"):
        items = dict(value.items())
    else:
        import dataclasses

        items = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else dict(vars(value))
    return {k: int(v) for k, v in items.items() if v is not None}


def load_image_settings(processor_path: str, image_size: int) -> dict[str, Any]:
    """Resize/crop/normalise settings from the CLIP image processor config (CLIP defaults if absent)."""
    settings: dict[str, Any] = {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
        "do_center_crop": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
    }
    try:
        from transformers import AutoImageProcessor

        with quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(_source(processor_path, "processor_path"))
    except Exception:  # no image-processor config there: PickScore's is the standard CLIP one
        return settings
    for key in settings:
        value = getattr(processor, key, None)
        if value is not None:
            settings[key] = _size_dict(value) if key in ("size", "crop_size") else value
    resample = settings["resample"]
    if int(getattr(resample, "value", resample)) != 3:
        raise ValueError(f"{WHO}: the image processor of {processor_path!r} resamples with {resample!r}; only bicubic (3) is supported")
    return settings


class PickScoreModel:
    """CLIPModel + the CLIP processor's pre-processing in torch ops + ``logit_scale.exp() * cos``."""

    def __init__(
        self,
        *,
        path: str,
        processor_path: str | None,
        device: Any,
        dtype: Any,
        grad_checkpointing: bool,
        crop_rounding: str,
    ) -> None:
        if crop_rounding not in ("round", "floor"):
            raise ValueError(f"{WHO}: crop_rounding must be 'floor' or 'round', got {crop_rounding!r}")
        self.dtype = resolve_dtype(dtype, WHO)
        self.device = resolve_device(device)
        self.crop_rounding = crop_rounding
        _source(path, "path")  # a missing local folder is reported before anything loads
        self.processor_path = resolve_processor_path(path, processor_path)
        self.tokenizer = load_tokenizer(self.processor_path)  # small files first, then the big model
        clip = load_clip(path)
        self.settings = load_image_settings(self.processor_path, int(clip.config.vision_config.image_size))
        self.max_length = min(77, int(clip.config.text_config.max_position_embeddings))
        self.clip = freeze(clip.to(self.dtype))
        if grad_checkpointing:
            checkpoint_layers(self.clip.vision_model.encoder.layers)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.place = DeviceFollower([self.clip], self.device)  # follows the images unless a device is pinned


    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """CLIPImageProcessor in torch ops: bicubic antialiased resize (clamped like PIL's uint8
        output), centre crop (floor offsets), OpenAI mean/std."""
        size, crop = self.settings["size"], self.settings["crop_size"]
        x = images.float()
        if "shortest_edge" in size:
            x = resize_shortest_side(x, int(size["shortest_edge"]))
        else:
            x = resize(x, (int(size["height"]), int(size["width"])))
        x = x.clamp(0.0, 1.0)
        if self.settings["do_center_crop"]:
            if crop["height"] != crop["width"]:
                raise ValueError(f"{WHO}: non-square crop {crop} is not supported")
            x = center_crop(x, int(crop["height"]), rounding=self.crop_rounding)
        return normalize(x, self.settings["image_mean"], self.settings["image_std"])

    @staticmethod
    def _embedding(output: Any) -> torch.Tensor:
        # transformers 5 returns an output object (the projection is .pooler_output); 4.x a tensor
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Unit text embeddings (float32); the batch is tokenised once."""
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.place.current)
        out = self.clip.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(self._embedding(out).float(), dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings (float32) of images in [0, 1]."""
        pixels = self.preprocess(images.to(self.place.current)).to(self.dtype)
        return F.normalize(self._embedding(self.clip.get_image_features(pixel_values=pixels)).float(), dim=-1)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.place.follow(images.device)
        text = self.encode_prompts(prompts)
        cosine = (self.encode_images(images) * text).sum(dim=-1)  # diag(image @ text.T)
        score = self.clip.logit_scale.detach().float().exp() * cosine
        return score.to(images.device)

    def describe(self) -> str:
        return (
            f"dtype={str(self.dtype).removeprefix('torch.')}, device={self.device or 'follow images'}, "
            f"grad_checkpointing={self.grad_checkpointing}"
        )
