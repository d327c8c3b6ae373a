"""draftsdk-clipscore: CLIPScore (Hessel et al. 2021) as a differentiable draftsdk reward.

score = ``w * max(cos(image embedding, prompt embedding), 0)`` with ``w = 2.5``, for a CLIP model
loaded through open_clip (default ``ViT-L-14`` with the ``openai`` weights) or, with ``hf_model=``,
a transformers ``CLIPModel``. Real CLIP cosines of matching pairs are about 0.2..0.4, so scores are
about 0.5..1.0. The model's own pre-processing (resize of the short side, centre crop, the model's
mean/std) is re-implemented in torch ops so gradients reach the pixels; each image is scored
against its own prompt (the diagonal).

Usage::

    reward = draftsdk.get_reward("clipscore")                           # ViT-L-14 / openai (HF cache)
    reward = draftsdk.get_reward("clipscore", model="ViT-B-32", pretrained="/models/b32.safetensors")
    reward = draftsdk.get_reward("clipscore", hf_model="openai/clip-vit-large-patch14")
    reward = draftsdk.get_reward("clipscore", prefix="A photo depicts")   # the paper's caption prefix

Importing this module (and listing rewards) imports neither torch nor open_clip nor transformers:
the model code lives in ``draftsdk_clipscore._model`` and loads when the reward is instantiated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["CLIPScore", "DEFAULT_MODEL", "DEFAULT_PRETRAINED", "DEFAULT_W", "PAPER_PREFIX", "register_rewards"]
__version__ = "0.1.0"

DEFAULT_MODEL = "ViT-L-14"
"""open_clip architecture used when neither ``model`` nor ``hf_model`` is given."""

DEFAULT_PRETRAINED = "openai"
"""open_clip pretrained tag used with the default architecture: OpenAI's CLIP ViT-L/14 weights."""

DEFAULT_W = 2.5
"""CLIPScore's rescaling weight ``w`` (Hessel et al. 2021)."""

PAPER_PREFIX = "A photo depicts"
"""The text prefix of the reference implementation (jmhessel/clipscore) for captions; pass it as ``prefix``."""

WHO = "clipscore"


def _check_w(w: object) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(float(w)) or float(w) <= 0:
        raise ValueError(f"{WHO}: w must be a positive number (CLIPScore uses {DEFAULT_W}), got {w!r}")
    return float(w)


class CLIPScore:
    """CLIPScore: 2.5 x max(cosine(image, prompt), 0) of a CLIP model (open_clip or transformers).

    Args:
        model: the open_clip architecture: a registered name (default ``"ViT-L-14"``) or the path of an
            open_clip model-config JSON (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        pretrained: the open_clip weights: a pretrained tag of ``model`` (default ``"openai"``; fetched
            through the standard Hugging Face cache, downloaded on first use unless
            ``HF_HUB_OFFLINE=1``), a local checkpoint file (``.safetensors``, or ``.pt``/``.pth``/``.bin``
            read with ``weights_only=True``) or ``"<org>/<repo>/<file>"`` on the hub.
        hf_model: instead of open_clip, a transformers ``CLIPModel``: a hub id (e.g.
            ``"openai/clip-vit-large-patch14"``) or a local folder with ``config.json``, the weights, the
            tokenizer files and ``preprocessor_config.json``. Excludes ``model`` and ``pretrained``.
        w: the rescaling weight (default 2.5, as in the paper); must be positive.
        prefix: text put before every prompt, separated by a space (default none). ``"A photo depicts"``
            is what the paper's code prepends to captions.
        device: where the model runs; ``None`` (default) follows the images (moved once). Scores are
            returned on the images' device.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` for the CLIP model; the
            pre-processing and the final cosine run in float32.
        grad_checkpointing: recompute the vision transformer's blocks in the backward pass.
    """

    name = "clipscore"
    differentiable = True

    def __init__(
        self,
        *,
        model: str | None = None,
        pretrained: str | None = None,
        hf_model: str | None = None,
        w: float = DEFAULT_W,
        prefix: str = "",
        device: Any = None,
        dtype: Any = "float32",
        grad_checkpointing: bool = False,
    ) -> None:
        if hf_model is not None and (model is not None or pretrained is not None):
            raise ValueError(
                f"{WHO}: pass either hf_model= (a transformers CLIPModel) or model=/pretrained= (open_clip), not both"
            )
        if not isinstance(prefix, str):
            raise ValueError(f"{WHO}: prefix must be a string such as {PAPER_PREFIX!r}, got {prefix!r}")
        self.w = _check_w(w)
        self.prefix = prefix
        from ._model import HFClipScorer, OpenClipScorer

        self.scorer: OpenClipScorer | HFClipScorer
        if hf_model is not None:
            self.source = f"hf_model={str(hf_model)!r}"
            self.scorer = HFClipScorer(
                path=str(hf_model), device=device, dtype=dtype, grad_checkpointing=grad_checkpointing
            )
        else:
            model = DEFAULT_MODEL if model is None else str(model)
            pretrained = DEFAULT_PRETRAINED if pretrained is None else str(pretrained)
            self.source = f"model={model!r}, pretrained={pretrained!r}"
            self.scorer = OpenClipScorer(
                architecture=model, pretrained=pretrained, device=device, dtype=dtype,
                grad_checkpointing=grad_checkpointing,
            )

    def texts(self, prompts: Sequence[str]) -> list[str]:
        """The prompts as the text tower reads them (with ``prefix`` in front)."""
        if not self.prefix:
            return list(prompts)
        head = self.prefix if self.prefix.endswith(" ") else self.prefix + " "
        return [head + p for p in prompts]

    def cosine(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """The raw cosine of each image with its own prompt, float32 (B,), before ``w`` and the clamp."""
        draftsdk.check_inputs(images, prompts, who=self.name)
        return self.scorer.cosine(images, self.texts(prompts))

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score each image against its own prompt: ``w * max(cos, 0)``, float32 (B,) on the images' device."""
        return self.w * self.cosine(images, prompts).clamp(min=0.0)

    def __repr__(self) -> str:
        return f"CLIPScore({self.source}, w={self.w:g}, prefix={self.prefix!r}, {self.scorer.describe()})"


META = RewardMeta(
    inputs="image + prompt",
    score_range=(0.5, 1.0),
    memory_gb=0.9,
    reference="open_clip / transformers CLIP with their own evaluation transforms (jmhessel/clipscore's formula), from PIL images",
    parity_tol=6e-4,
    weights_license="OpenAI CLIP: MIT (code); check the weights' terms",
    homepage="https://github.com/jmhessel/clipscore",
)
"""What the plugin directory shows about ``clipscore``."""


@draftsdk.hookimpl
def register_rewards(register: Any) -> None:
    """Register ``clipscore`` (alias ``clip-score``); nothing is loaded until the reward is instantiated."""
    register(CLIPScore, aliases=("clip-score",), meta=META)
