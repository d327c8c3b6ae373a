"""draftsdk-hpsv2: Human Preference Score v2 / v2.1 as a differentiable draftsdk reward.

score = cosine(image features, prompt features) of an open_clip ViT-H-14 fine-tuned on human
preferences (HPD v2), with no logit scale: about 0.2..0.35, higher = preferred. The pre-processing is
HPSv2's own (``ResizeMaxSize``: bicubic resize of the long side to 224 on the float tensor, zero
padding to a square, OpenAI mean/std), re-implemented in torch ops so gradients reach the pixels.

Usage::

    reward = draftsdk.get_reward("hpsv2")                    # v2.0 from the hub (cached by HF)
    reward = draftsdk.get_reward("hpsv2", version="v2.1")
    reward = draftsdk.get_reward("hpsv2", path="/models/HPS_v2_compressed.pt")

Importing this module (and listing rewards) imports neither torch nor open_clip: the model code lives
in ``draftsdk_hpsv2._model`` and loads when the reward is instantiated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["HPSv2", "HUB_REPO", "CHECKPOINTS", "register_rewards"]
__version__ = "0.1.0"

HUB_REPO = "xswu/HPSv2"
"""Hugging Face repository of the published checkpoints."""

CHECKPOINTS = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
"""File in ``HUB_REPO`` for each version (``hpsv2.utils.hps_version_map``)."""


class HPSv2:
    """Human Preference Score v2/v2.1 (open_clip ViT-H-14): image-prompt cosine, about 0.2..0.35.

    Args:
        version: ``"v2.0"`` (default; what ``hpsv2.score`` and the DRaFT paper use) or ``"v2.1"``.
            Scores of the two versions are not comparable.
        path: a local checkpoint (``.pt``/``.pth``/``.bin`` loaded with ``weights_only=True`` on the
            CPU, or ``.safetensors``; a dict with a ``state_dict`` key or a plain state dict of
            open_clip keys), or ``"<org>/<repo>/<file>"`` on the hub. Default (None): ``version``'s
            file in ``xswu/HPSv2``, from the standard Hugging Face cache (downloaded on first use
            unless ``HF_HUB_OFFLINE=1``).
        model: the open_clip architecture: a registered name (default ``"ViT-H-14"``) or the path of
            an open_clip model-config JSON (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        device: where the model runs; ``None`` (default) follows the images (moved once). Scores are
            returned on the images' device.
        dtype: ``"float32"`` (default; HPSv2 keeps fp32 weights), ``"float16"`` or ``"bfloat16"``.
        grad_checkpointing: recompute the vision transformer's blocks in the backward pass (ViT-H-14
            at batch 16 otherwise stores a lot of activations).
        antialias: antialias the bicubic resize (default True, as torchvision >= 0.17 does for HPSv2's
            tensor resize today); False reproduces scores computed with torchvision < 0.17 (2023).
    """

    name = "hpsv2"
    differentiable = True

    def __init__(
        self,
        *,
        version: str = "v2.0",
        path: str | None = None,
        model: str = "ViT-H-14",
        device: Any = None,
        dtype: Any = "float32",
        grad_checkpointing: bool = False,
        antialias: bool = True,
    ) -> None:
        if version not in CHECKPOINTS:
            raise ValueError(f"hpsv2: version must be one of {sorted(CHECKPOINTS)}, got {version!r}")
        from ._model import HPSModel

        self.version = version
        self.path = f"{HUB_REPO}/{CHECKPOINTS[version]}" if path is None else str(path)
        self.model = HPSModel(
            path=self.path,
            architecture=str(model),
            device=device,
            dtype=dtype,
            grad_checkpointing=grad_checkpointing,
            antialias=antialias,
        )

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score each image against its own prompt; float32 (B,) on the images' device."""
        draftsdk.check_inputs(images, prompts, who=self.name)
        return self.model(images, list(prompts))

    def __repr__(self) -> str:
        return f"HPSv2(version={self.version!r}, path={self.path!r}, {self.model.describe()})"


META = RewardMeta(
    inputs="image + prompt",
    score_range=(0.2, 0.35),
    memory_gb=1.9,
    reference="hpsv2.img_score.score (tgxs002/HPSv2 866735e), from PIL images",
    parity_tol=1e-5,
    weights_license="see the model page xswu/HPSv2 (Apache-2.0 code; not re-checked offline)",
    homepage="https://github.com/tgxs002/HPSv2",
)
"""What the plugin directory shows about ``hpsv2``."""


@draftsdk.hookimpl
def register_rewards(register: Any) -> None:
    register(HPSv2, aliases=("hps",), meta=META)
