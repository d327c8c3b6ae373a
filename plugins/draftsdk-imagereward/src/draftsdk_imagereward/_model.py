"""ImageReward v1.0 in torch: BLIP's ViT image encoder, BLIP's BERT with cross-attention, the MLP head.

The modules keep the parameter names of the published ``ImageReward.pt`` (a state dict of THUDM's
``ImageReward`` module: ``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.layers.*``), so the
file loads without renaming. The architecture is read from the checkpoint's tensor shapes, and the
text encoder's settings come from ``med_config.json`` (the v1.0 values are built in).

Numerics follow the reference (``ImageReward/models/BLIP/{vit,med}.py``): LayerNorm eps 1e-6 in the
ViT and ``layer_norm_eps`` (1e-12) in BERT, exact GELU, attention scaled by ``1/sqrt(head_dim)``,
padding masked with -10000 (BLIP's ``get_extended_attention_mask``), BERT embeddings without
token-type embeddings, the score read from the [CLS] token of the text encoder's last layer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from draftsdk.image_ops import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize_shortest_side
from draftsdk.plugin_utils import (
    DeviceFollower,
    checkpoint_layers,
    first_line,
    freeze,
    hub_file,
    not_cached_error,
    quiet_transformers,
    resolve_dtype,
    resolve_source,
)

WHO = "imagereward"
SCORE_MEAN = 0.16717362830052426
"""Mean of the raw head output that ImageReward subtracts (``ImageReward.mean``)."""
SCORE_STD = 1.0333394966054072
"""Standard deviation that ImageReward divides by (``ImageReward.std``)."""
MAX_LENGTH = 35
"""ImageReward pads and truncates every prompt to 35 BERT tokens."""
IMAGE_SIZE = 224
CHECKPOINT_EXAMPLE = "/path/to/ImageReward.pt"
TOKENIZER_EXAMPLE = "/path/to/bert-base-uncased"

MED_CONFIG_V1 = {
    "hidden_act": "gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "vocab_size": 30524,
    "add_cross_attention": True,
}
"""The text-encoder settings of ``med_config.json`` in THUDM/ImageReward (v1.0); ``encoder_width`` is
set from the vision encoder, as ``BLIP_Pretrain`` does."""


# -- the modules ----------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class ViTMlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = ViTAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = ViTMlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """BLIP's ViT (``create_vit('large', 224)``: patch 16, width 1024, 24 blocks, 16 heads); returns all tokens."""

    def __init__(self, *, patch: int, width: int, depth: int, heads: int, hidden: int, tokens: int) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.ModuleList(ViTBlock(width, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed[:, : x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h, padding_idx=cfg["pad_token_id"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions)[None])


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: dict[str, Any], kv_width: int) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(kv_width, h)
        self.value = nn.Linear(kv_width, h)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(context)), self._split(self.value(context))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = out.shape
        return out.transpose(1, 2).reshape(b, n, -1)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: dict[str, Any], inner: int | None = None) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.dense = nn.Linear(inner or h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: dict[str, Any], kv_width: int) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg, kv_width)
        self.output = BertSelfOutput(cfg)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, context, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    """Self-attention, cross-attention to the image tokens (BLIP's ``mode='multimodal'``), feed-forward."""

    def __init__(self, cfg: dict[str, Any], encoder_width: int) -> None:
        super().__init__()
        self.attention = BertAttention(cfg, cfg["hidden_size"])
        self.crossattention = BertAttention(cfg, encoder_width)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg["intermediate_size"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, x, mask)
        x = self.crossattention(x, image, None)  # every image token is attended (all-ones mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: dict[str, Any], encoder_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg, encoder_width) for _ in range(cfg["num_hidden_layers"]))


class TextEncoder(nn.Module):
    """BLIP's ``BertModel(add_pooling_layer=False)`` in multimodal mode: the prompt attends to the image."""

    def __init__(self, cfg: dict[str, Any], encoder_width: int) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg, encoder_width)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        # BLIP: (1 - mask) * -10000 added to the scores, broadcast over heads and queries
        mask = ((1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0).to(x.dtype)
        for layer in self.encoder.layer:
            x = layer(x, mask, image)
        return x


class Head(nn.Module):
    """``MLP(768)`` of ImageReward: Linear 768-1024-128-64-16-1 with dropouts and no activations."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# -- loading --------------------------------------------------------------------------------------


def load_state_dict(spec: str) -> dict[str, torch.Tensor]:
    """The tensors of an ImageReward checkpoint: a local ``.pt``/``.pth`` (read with ``weights_only=True``)
    or ``.safetensors`` file, or ``"<org>/<repo>/<file>"`` through the Hugging Face cache."""
    file = hub_file(spec, who=WHO, what="checkpoint", option="checkpoint", example=CHECKPOINT_EXAMPLE)
    try:
        if file.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(file)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - refused by weights_only, corrupt file, ...
        raise ValueError(f"{WHO}: cannot read checkpoint {spec!r} as weights only: {first_line(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{WHO}: checkpoint {spec!r} is not a state dict of tensors (the layout of ImageReward.pt)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_med_config(spec: str | None) -> dict[str, Any]:
    """The text encoder's settings: the built-in v1.0 values, or a ``med_config.json`` (local or ``org/repo/file``)."""
    if spec is None:
        return dict(MED_CONFIG_V1)
    file = hub_file(spec, who=WHO, what="med_config", option="med_config", example="/path/to/med_config.json")
    try:
        with open(file, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{WHO}: med_config {spec!r} is not valid JSON: {first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{WHO}: med_config {spec!r} must be a JSON object (BERT settings)")
    cfg = {**MED_CONFIG_V1, **{k: raw[k] for k in MED_CONFIG_V1 if k in raw}}
    if cfg["hidden_act"] != "gelu" or not cfg["add_cross_attention"]:
        raise ValueError(f"{WHO}: med_config {spec!r} must have hidden_act 'gelu' and add_cross_attention true, as ImageReward's")
    if cfg.get("position_embedding_type", raw.get("position_embedding_type", "absolute")) != "absolute":
        raise ValueError(f"{WHO}: med_config {spec!r}: only absolute position embeddings are supported")
    return cfg


def _take(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _vision_shape(state: dict[str, torch.Tensor], spec: str) -> dict[str, int]:
    try:
        width = int(state["cls_token"].shape[-1])
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        tokens = int(state["pos_embed"].shape[1])
        hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as exc:
        raise ValueError(
            f"{WHO}: checkpoint {spec!r} has no BLIP vision encoder (missing blip.visual_encoder.{exc.args[0]}); "
            "pass the ImageReward.pt of THUDM/ImageReward"
        ) from None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    grid = round(math.sqrt(tokens - 1))
    if grid * grid != tokens - 1 or grid * patch != IMAGE_SIZE or width % 64:
        raise ValueError(
            f"{WHO}: checkpoint {spec!r}: the vision encoder takes {grid * patch} px inputs with width {width}; "
            f"ImageReward's takes {IMAGE_SIZE} px and a width that is a multiple of 64"
        )
    return {"patch": patch, "width": width, "depth": depth, "heads": width // 64, "hidden": hidden, "tokens": tokens}


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], spec: str, what: str) -> None:
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or wrong:
        key = (missing or wrong)[0]
        detail = "missing" if missing else f"shape {tuple(state[key].shape)} instead of {tuple(wanted[key].shape)}"
        raise ValueError(
            f"{WHO}: checkpoint {spec!r} does not fit ImageReward's {what} ({len(missing)} missing, {len(wrong)} "
            f"mis-shaped tensors; e.g. {key}: {detail}); check med_config= and that the file is ImageReward.pt"
        )
    module.load_state_dict({k: state[k] for k in wanted}, strict=True, assign=True)


def load_tokenizer(spec: str) -> Any:
    """BLIP's tokenizer: ``BertTokenizer`` of bert-base-uncased plus the ``[DEC]`` and ``[ENC]`` tokens."""
    from transformers import BertTokenizer

    source = resolve_source(spec, who=WHO, what="tokenizer folder", option="tokenizer", example=TOKENIZER_EXAMPLE)
    try:
        with quiet_transformers():
            tokenizer = BertTokenizer.from_pretrained(source)
    except OSError as exc:
        raise not_cached_error(WHO, "tokenizer", spec, option="tokenizer", example=TOKENIZER_EXAMPLE, exc=exc, local="folder") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{WHO}: {spec!r} is not a BERT tokenizer (it needs vocab.txt): {first_line(exc)}") from None
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """ImageReward's ``_transform(224)`` in torch ops: (B, 3, H, W) in [0, 1] -> the ViT's input.

    ``Resize(224, BICUBIC)`` on the PIL image (short side to 224, antialiased; the clamp stands for
    PIL's uint8 output), ``CenterCrop(224)`` (offset rounded as torchvision does), CLIP mean/std.
    """
    x = resize_shortest_side(images.float(), IMAGE_SIZE, mode="bicubic").clamp(0.0, 1.0)
    return normalize(center_crop(x, IMAGE_SIZE, rounding="round"), CLIP_MEAN, CLIP_STD)


class ImageRewardModel:
    """The loaded ImageReward: the frozen encoders and head, the tokenizer, and where they run."""

    def __init__(
        self,
        *,
        checkpoint: str,
        tokenizer: str,
        med_config: str | None,
        device: Any,
        dtype: Any,
        grad_checkpointing: bool,
    ) -> None:
        self.dtype = resolve_dtype(dtype, WHO)
        cfg = load_med_config(med_config)
        self.tokenizer = load_tokenizer(tokenizer)  # the small files before the big weights
        if len(self.tokenizer) > cfg["vocab_size"]:
            raise ValueError(
                f"{WHO}: the tokenizer {tokenizer!r} has {len(self.tokenizer)} tokens but the text encoder only "
                f"{cfg['vocab_size']}; pass bert-base-uncased's tokenizer"
            )
        state = load_state_dict(checkpoint)
        shape = _vision_shape(_take(state, "blip.visual_encoder."), checkpoint)
        with torch.device("meta"):  # no random init of ~450M parameters: the checkpoint replaces them all
            self.vision = VisionTransformer(**shape)
            self.text = TextEncoder(cfg, encoder_width=shape["width"])
            self.head = Head(cfg["hidden_size"])
        _load_strict(self.vision, _take(state, "blip.visual_encoder."), checkpoint, "vision encoder")
        _load_strict(self.text, _take(state, "blip.text_encoder."), checkpoint, "text encoder")
        _load_strict(self.head, _take(state, "mlp."), checkpoint, "MLP head")
        del state
        freeze(self.vision.to(self.dtype))
        freeze(self.text.to(self.dtype))
        freeze(self.head.float())  # the head stays float32, as ImageReward casts the [CLS] feature to float
        self.grad_checkpointing = bool(grad_checkpointing)
        if grad_checkpointing:
            checkpoint_layers(self.vision.blocks)
            checkpoint_layers(self.text.encoder.layer)
        self.place = DeviceFollower([self.vision, self.text, self.head], device)
        self.checkpoint, self.shape, self.config = checkpoint, shape, cfg

    def tokens(self, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) as ImageReward makes them: padded and truncated to 35 tokens."""
        out = self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        return out["input_ids"].to(device), out["attention_mask"].to(device)

    def score_pixels(self, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ImageReward's ``score_gard``: normalised pixels (B, 3, 224, 224) and tokens -> scores (B,), float32."""
        image = self.vision(pixels.to(self.dtype))
        cls = self.text(ids, mask, image)[:, 0, :].float()
        return ((self.head(cls) - SCORE_MEAN) / SCORE_STD).squeeze(-1)

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        on = self.place.follow(images.device)
        ids, mask = self.tokens(prompts, on)
        return self.score_pixels(preprocess(images.to(on)), ids, mask).to(images.device)

    def describe(self) -> str:
        """The settings that matter, for ``repr``."""
        return (
            f"dtype={str(self.dtype).removeprefix('torch.')}, device={self.place.describe()}, "
            f"grad_checkpointing={self.grad_checkpointing}"
        )
