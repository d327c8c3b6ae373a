"""Loading and differentiable scoring for HPSv2 (imports torch and open_clip)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, normalize, resize_longest_side_and_pad
from draftsdk.plugin_utils import DeviceFollower, first_line, freeze, hub_file, local_path, resolve_device, resolve_dtype

WHO = "hpsv2"


def resolve_checkpoint(spec: str) -> str:
    """A local checkpoint file for ``spec``: a path, or ``org/repo/file`` fetched through the HF cache."""
    return hub_file(spec, who=WHO, what="checkpoint", option="path", example="/path/to/HPS_v2_compressed.pt")


def resolve_architecture(architecture: str) -> str:
    """An open_clip model name; a config JSON path is registered under its file stem."""
    import open_clip

    if architecture.endswith(".json"):
        file = local_path(architecture)
        if file is None or not os.path.isfile(file):
            raise FileNotFoundError(f"{WHO}: model config {architecture!r} does not exist")
        open_clip.add_model_config(file)
        return Path(file).stem
    if architecture not in open_clip.list_models():
        raise ValueError(
            f"{WHO}: unknown open_clip architecture {architecture!r}; use 'ViT-H-14' (HPSv2) or the path of a "
            "model-config JSON"
        )
    return architecture


@contextlib.contextmanager
def _skip_random_init() -> Iterator[None]:
    """Skip torch.nn.init while building the architecture: the strict checkpoint load that follows
    overwrites every parameter and persistent buffer (ViT-H-14's random init alone takes ~20 s on a CPU)."""
    import torch.nn.init as init

    names = ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
             "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_")
    saved = {name: getattr(init, name) for name in names if hasattr(init, name)}

    def skip(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    for name in saved:
        setattr(init, name, skip)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def _mismatch_detail(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return line if len(line) <= 160 else line[:157] + "..."
    return first_line(exc, 160)


class HPSModel:
    """open_clip CLIP with HPSv2's ``ResizeMaxSize`` pre-processing in torch ops."""

    def __init__(
        self, *, path: str, architecture: str, device: Any, dtype: Any, grad_checkpointing: bool, antialias: bool
    ) -> None:
        import open_clip

        self.dtype = resolve_dtype(dtype, WHO)
        self.device = resolve_device(device)
        self.antialias = bool(antialias)
        name = resolve_architecture(architecture)
        file = resolve_checkpoint(path)  # before building a 1B-parameter model
        # HPSv2's create_model_and_transforms('ViT-H-14', precision='amp', force_quick_gelu=False,
        # force_patch_dropout=False, ...): fp32 weights, nn.GELU, no patch dropout.
        with _skip_random_init():
            model = open_clip.create_model(name, pretrained=None, precision="fp32", device="cpu", force_patch_dropout=0.0)
        try:
            open_clip.load_checkpoint(model, file, strict=True, weights_only=True)
        except RuntimeError as exc:
            if "state_dict" not in str(exc) and "size mismatch" not in str(exc):
                raise ValueError(f"{WHO}: cannot read checkpoint {path!r}: {first_line(exc)}") from None
            raise ValueError(
                f"{WHO}: checkpoint {path!r} does not fit the open_clip architecture {name!r} "
                f"(a checkpoint for another model?): {_mismatch_detail(exc)}"
            ) from None
        except Exception as exc:  # unpickling refused by weights_only, corrupt file, ...
            raise ValueError(f"{WHO}: cannot read checkpoint {path!r} as weights only: {first_line(exc)}") from None
        size = model.visual.image_size
        size = size if isinstance(size, int) else tuple(size)
        if isinstance(size, tuple):
            if size[0] != size[1]:
                raise ValueError(f"{WHO}: architecture {name!r} has a non-square input {size}; HPSv2 needs a square")
            size = size[0]
        self.image_size = int(size)
        self.architecture = name
        self.tokenizer = open_clip.get_tokenizer(name)
        self.clip = freeze(model.to(self.dtype))
        if grad_checkpointing:
            self.clip.visual.set_grad_checkpointing(True)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.place = DeviceFollower([self.clip], self.device)  # follows the images unless a device is pinned


    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """HPSv2's ``preprocess_val`` after ToTensor: ResizeMaxSize(224, fill=0) then Normalize."""
        x = resize_longest_side_and_pad(images.float(), self.image_size, fill=0.0, antialias=self.antialias)
        return normalize(x, CLIP_MEAN, CLIP_STD)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Unit text features (float32), the whole batch tokenised at once."""
        tokens = self.tokenizer(prompts).to(self.place.current)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image features (float32) of images in [0, 1]."""
        pixels = self.preprocess(images.to(self.place.current)).to(self.dtype)
        return F.normalize(self.clip.encode_image(pixels).float(), dim=-1)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.place.follow(images.device)
        text = self.encode_prompts(prompts)
        score = (self.encode_images(images) * text).sum(dim=-1)  # diag(image @ text.T)
        return score.to(images.device)

    def describe(self) -> str:
        return (
            f"model={self.architecture!r}, dtype={str(self.dtype).removeprefix('torch.')}, "
            f"device={self.device or 'follow images'}, grad_checkpointing={self.grad_checkpointing}"
        )
