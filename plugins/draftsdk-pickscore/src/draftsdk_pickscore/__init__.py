"""draftsdk-pickscore: PickScore v1 as a differentiable draftsdk reward.

score = ``logit_scale.exp() * cosine(image embedding, prompt embedding)`` of a CLIP ViT-H-14
fine-tuned on Pick-a-Pic preferences (transformers ``CLIPModel`` ``yuvalkirstain/PickScore_v1``):
about 100 x cosine, typically 18..23 for matching prompts. The CLIP processor's pre-processing
(bicubic resize of the short side to 224, centre crop, OpenAI mean/std) is re-implemented in torch ops
so gradients reach the pixels; each image is scored against its own prompt (the diagonal).

Usage::

    reward = draftsdk.get_reward("pickscore")                        # hub weights (cached by HF)
    reward = draftsdk.get_reward("pickscore", path="/models/PickScore_v1",
                                 processor_path="/models/CLIP-ViT-H-14-laion2B-s32B-b79K")

Importing this module (and listing rewards) imports neither torch nor transformers: the model code
lives in ``draftsdk_pickscore._model`` and loads when the reward is instantiated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["PickScore", "DEFAULT_MODEL", "DEFAULT_PROCESSOR", "register_rewards"]
__version__ = "0.1.0"

DEFAULT_MODEL = "yuvalkirstain/PickScore_v1"
"""Hub id of the PickScore model (transformers CLIPModel)."""

DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
"""Hub id whose tokenizer and image-processor settings PickScore uses (only small files are read)."""


class PickScore:
    """PickScore v1 (CLIP ViT-H-14 on Pick-a-Pic): 100 x image-prompt cosine, about 18..23.

    Args:
        path: the PickScore CLIPModel: a hub id (default ``yuvalkirstain/PickScore_v1``, from the
            standard Hugging Face cache, downloaded on first use unless ``HF_HUB_OFFLINE=1``) or a
            local folder in transformers format (``config.json`` + ``model.safetensors``).
        processor_path: where the tokenizer and the image-processor settings come from: a hub id or
            a local folder. Default: ``path`` itself when it is a local folder holding tokenizer
            files, otherwise ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (as PickScore's README).
        device: where the model runs; ``None`` (default) follows the images (moved once). Scores
            are returned on the images' device.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` for the CLIP model; the
            pre-processing and the final scaling run in float32.
        grad_checkpointing: recompute the vision transformer's layers in the backward pass (ViT-H at
            batch 16 otherwise stores a lot of activations).
        crop_rounding: ``"floor"`` (default) places the centre crop like HF's CLIPImageProcessor (the
            reference); ``"round"`` like torchvision's CenterCrop.
    """

    name = "pickscore"
    differentiable = True

    def __init__(
        self,
        *,
        path: str = DEFAULT_MODEL,
        processor_path: str | None = None,
        device: Any = None,
        dtype: Any = "float32",
        grad_checkpointing: bool = False,
        crop_rounding: str = "floor",
    ) -> None:
        from ._model import PickScoreModel

        self.path = str(path)
        self.model = PickScoreModel(
            path=self.path,
            processor_path=None if processor_path is None else str(processor_path),
            device=device,
            dtype=dtype,
            grad_checkpointing=grad_checkpointing,
            crop_rounding=crop_rounding,
        )
        self.processor_path = self.model.processor_path

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score each image against its own prompt; float32 (B,) on the images' device."""
        draftsdk.check_inputs(images, prompts, who=self.name)
        return self.model(images, list(prompts))

    def __repr__(self) -> str:
        return f"PickScore(path={self.path!r}, processor_path={self.processor_path!r}, {self.model.describe()})"


META = RewardMeta(
    inputs="image + prompt",
    score_range=(18.0, 23.0),
    memory_gb=1.9,
    reference="PickScore README code (yuvalkirstain/PickScore) with the PIL CLIP processor, from PIL images",
    parity_tol=1e-2,
    weights_license="see the model page yuvalkirstain/PickScore_v1 (not re-checked offline)",
    homepage="https://github.com/yuvalkirstain/PickScore",
)
"""What the plugin directory shows about ``pickscore``."""


@draftsdk.hookimpl
def register_rewards(register: Any) -> None:
    register(PickScore, aliases=("pick-score",), meta=META)
