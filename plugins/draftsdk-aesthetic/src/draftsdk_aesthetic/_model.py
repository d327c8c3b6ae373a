"""Loading and differentiable scoring for the aesthetic reward (imports torch, and transformers or open_clip)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize_shortest_side
from draftsdk.plugin_utils import (
    DeviceFollower,
    checkpoint_layers,
    first_line,
    freeze,
    hub_file,
    local_path,
    not_cached_error,
    offline_hint,
    quiet_transformers,
    resolve_device,
    resolve_dtype,
    resolve_source,
)

WHO = "aesthetic"
# LAION's MLP: Linear layers at these indices of `layers` (Dropouts in between, no activations).
HEAD_LINEARS = (0, 2, 4, 6, 7)
HEAD_DROPOUTS = {1: 0.2, 3: 0.2, 5: 0.1}
DEFAULT_CLIP_HINT = "openai/clip-vit-large-patch14"
DEFAULT_OPEN_CLIP = "ViT-L-14:openai"
BACKENDS = ("transformers", "open_clip")


def load_clip_vision(path: str) -> nn.Module:
    """The CLIP image tower + projection (``CLIPVisionModelWithProjection``) of a CLIP checkpoint."""
    from transformers import AutoConfig, CLIPVisionModelWithProjection

    source = resolve_source(path, who=WHO, what="CLIP folder", option="path", example="/folder/with/config.json")
    example = "/path/to/clip-vit-large-patch14"
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise not_cached_error(WHO, "CLIP model", path, option="path", example=example, exc=exc) from None
    except ValueError as exc:  # e.g. a folder whose config.json names no known model
        raise ValueError(f"{WHO}: {path!r} is not a transformers CLIP model: {first_line(exc)}") from None
    kind = getattr(config, "model_type", None)
    if kind == "clip":
        vision_config = config.vision_config
        vision_config.projection_dim = config.projection_dim  # the top-level value is the real one
    elif kind == "clip_vision_model":
        vision_config = config
    else:
        raise ValueError(
            f"{WHO}: {path!r} is a {kind!r} model, not CLIP; pass a CLIP ViT-L/14 "
            f"(e.g. path={DEFAULT_CLIP_HINT!r})"
        )
    try:
        with quiet_transformers():
            model = CLIPVisionModelWithProjection.from_pretrained(source, config=vision_config)
    except OSError as exc:
        raise not_cached_error(WHO, "CLIP weights", path, option="path", example=example, exc=exc) from None
    except (RuntimeError, ValueError) as exc:  # shape mismatch between config.json and the weights
        raise ValueError(
            f"{WHO}: the weights in {path!r} do not fit the CLIP architecture of its config.json: {first_line(exc)}"
        ) from None
    return model


class OpenClipVision(nn.Module):
    """open_clip's image tower (``model.visual``: ViT + projection), the text tower dropped."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        size = visual.image_size
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.embed_dim = int(visual.output_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values)


def load_open_clip_vision(spec: str) -> OpenClipVision:
    """``"<architecture>:<pretrained tag or file>"`` (e.g. ``ViT-L-14:openai``), ``hf-hub:org/repo`` or
    ``local-dir:/folder`` (open_clip_config.json + weights), loaded by open_clip with weights_only."""
    import open_clip

    if spec.startswith(("hf-hub:", "local-dir:")):
        name, pretrained = spec, None
    else:
        name, _, pretrained = spec.partition(":")
        if not pretrained:
            raise ValueError(
                f"{WHO}: with backend='open_clip', path must be '<architecture>:<pretrained tag or file>' "
                f"(e.g. {DEFAULT_OPEN_CLIP!r}), 'hf-hub:<org>/<repo>' or 'local-dir:<folder>', got {spec!r}"
            )
        if name not in open_clip.list_models():
            raise ValueError(f"{WHO}: unknown open_clip architecture {name!r} in path {spec!r}")
    # OpenAI's weights need QuickGELU; open_clip only warns when the architecture lacks it
    tag = open_clip.get_pretrained_cfg(name, pretrained) if pretrained and local_path(pretrained) is None else {}
    quick_gelu = bool(tag.get("quick_gelu", False))
    try:
        model = open_clip.create_model(
            name, pretrained=pretrained, require_pretrained=True, weights_only=True, force_quick_gelu=quick_gelu
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{WHO}: cannot load open_clip model {spec!r}: {first_line(exc)}") from None
    except RuntimeError as exc:
        text = str(exc)
        if "state_dict" in text or "size mismatch" in text:
            lines = [line.strip() for line in text.splitlines()]
            detail = next((line for line in lines if line.startswith("size mismatch")), first_line(exc))
            raise ValueError(f"{WHO}: the weights of {spec!r} do not fit the open_clip architecture: {detail[:160]}") from None
        raise FileNotFoundError(
            f"{WHO}: cannot load open_clip model {spec!r}: not a local file and not in the Hugging Face cache"
            f"{offline_hint()}; download it once with network access or pass path='ViT-L-14:/path/to/ViT-L-14.pt'"
        ) from None
    return OpenClipVision(model.visual)


def _read_head_file(file: str) -> dict[str, torch.Tensor]:
    if file.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(file, device="cpu")
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling refused (not a plain tensor file) or a corrupt file
            raise ValueError(
                f"{WHO}: cannot read head file {file!r} as a weights-only state dict: {first_line(exc)}"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{WHO}: head file {file!r} does not hold a state dict of tensors")
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def resolve_head_file(spec: str) -> str:
    """A local head file for ``spec`` (a path, or ``org/repo/filename`` fetched through the HF cache)."""
    return hub_file(spec, who=WHO, what="head file", option="head", example="/path/to/aesthetic-head.pth")


def build_head(state: dict[str, torch.Tensor], file: str) -> nn.Sequential:
    """LAION's ``MLP.layers`` with the sizes read from ``state`` (768-1024-128-64-16-1 for ViT-L/14)."""
    expected = {f"layers.{i}.{p}" for i in HEAD_LINEARS for p in ("weight", "bias")}
    if set(state) != expected:
        got = ", ".join(sorted(state)[:3]) + (f" ... ({len(state)} keys)" if len(state) > 3 else "")
        raise ValueError(
            f"{WHO}: {file!r} is not a LAION aesthetic-predictor head: expected keys "
            f"layers.{{0,2,4,6,7}}.{{weight,bias}} (MLP 768-1024-128-64-16-1), got {got or 'nothing'}"
        )
    shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in HEAD_LINEARS]
    chained = all(len(s) == 2 for s in shapes) and all(shapes[k][1] == shapes[k - 1][0] for k in range(1, len(shapes)))
    if not chained or shapes[-1][0] != 1:
        raise ValueError(f"{WHO}: head {file!r} has inconsistent layer shapes {shapes}; expected e.g. (1024, 768) ... (1, 16)")
    layers: list[nn.Module] = []
    for index in range(HEAD_LINEARS[-1] + 1):
        if index in HEAD_LINEARS:
            out_features, in_features = shapes[HEAD_LINEARS.index(index)]
            layers.append(nn.Linear(in_features, out_features))
        else:
            layers.append(nn.Dropout(HEAD_DROPOUTS[index]))
    head = nn.Sequential(*layers)
    head.load_state_dict({k[len("layers.") :]: v.float() for k, v in state.items()})
    return head


class AestheticModel:
    """CLIP vision tower + LAION head, with the OpenAI-CLIP pre-processing in torch ops."""

    def __init__(
        self,
        *,
        path: str,
        head: str,
        device: Any,
        dtype: Any,
        grad_checkpointing: bool,
        crop_rounding: str,
        backend: str = "transformers",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"{WHO}: backend must be 'transformers' or 'open_clip', got {backend!r}")
        if crop_rounding not in ("round", "floor"):
            raise ValueError(f"{WHO}: crop_rounding must be 'round' or 'floor', got {crop_rounding!r}")
        self.dtype = resolve_dtype(dtype, WHO)
        self.device = resolve_device(device)
        self.crop_rounding = crop_rounding
        head_file = resolve_head_file(head)  # cheap checks first, before the big download/load
        head_module = build_head(_read_head_file(head_file), head_file)
        self.backend = backend
        if backend == "open_clip":
            clip = load_open_clip_vision(path)
            embed, image_size = clip.embed_dim, clip.image_size
        else:
            clip = load_clip_vision(path)
            embed, image_size = int(clip.config.projection_dim), int(clip.config.image_size)
        want = head_module[0].in_features
        if embed != want:
            raise ValueError(
                f"{WHO}: the head {head!r} expects {want}-d CLIP embeddings but CLIP {path!r} gives {embed}-d; "
                f"use the CLIP the head was trained on (ViT-L/14: {DEFAULT_CLIP_HINT})"
            )
        self.image_size = image_size
        self.clip = freeze(clip.to(self.dtype))
        self.head = freeze(head_module)
        if grad_checkpointing and backend == "open_clip":
            self.clip.visual.set_grad_checkpointing(True)
        elif grad_checkpointing:
            checkpoint_layers(self.clip.vision_model.encoder.layers)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.place = DeviceFollower([self.clip, self.head], self.device)  # follows the images unless a device is pinned


    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """OpenAI CLIP's ``_transform`` in torch ops: bicubic resize of the short side (antialiased,
        clamped like PIL's uint8 output), centre crop, OpenAI mean/std."""
        x = resize_shortest_side(images.float(), self.image_size).clamp(0.0, 1.0)
        x = center_crop(x, self.image_size, rounding=self.crop_rounding)
        return normalize(x, CLIP_MEAN, CLIP_STD)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised CLIP image embeddings (float32) of images in [0, 1]."""
        device = self.place.follow(images.device)
        pixels = self.preprocess(images.to(device)).to(self.dtype)
        out = self.clip(pixel_values=pixels)
        emb = (out if isinstance(out, torch.Tensor) else out.image_embeds).float()
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        score = self.head(self.embed(images)).squeeze(-1)
        return score.to(images.device)

    def describe(self) -> str:
        return (
            f"backend={self.backend!r}, dtype={str(self.dtype).removeprefix('torch.')}, device={self.device or 'follow images'}, "
            f"grad_checkpointing={self.grad_checkpointing}"
        )
