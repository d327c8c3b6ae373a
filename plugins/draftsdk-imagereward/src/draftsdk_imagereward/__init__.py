"""draftsdk-imagereward: ImageReward v1.0 (Xu et al. 2023, THUDM) as a differentiable draftsdk reward.

ImageReward scores how much people would prefer an image for a prompt. A BLIP ViT-L encodes the
image; BLIP's BERT reads the prompt with cross-attention to the image tokens; an MLP maps the [CLS]
feature to one number, normalised with the published mean and standard deviation, so scores on real
generations are roughly standard normal (about -2..2; higher is better).

Usage::

    reward = draftsdk.get_reward("imagereward")           # THUDM/ImageReward (HF cache)
    reward = draftsdk.get_reward("imagereward", checkpoint="/models/ImageReward.pt",
                                 tokenizer="/models/bert-base-uncased")

Importing this module (and listing rewards) imports neither torch nor transformers: the model code
lives in ``draftsdk_imagereward._model`` and loads when the reward is instantiated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["ImageReward", "DEFAULT_CHECKPOINT", "DEFAULT_TOKENIZER", "register_rewards"]
__version__ = "0.1.0"

DEFAULT_CHECKPOINT = "THUDM/ImageReward/ImageReward.pt"
"""The published ImageReward v1.0 weights on the Hugging Face hub (``<org>/<repo>/<file>``)."""

DEFAULT_TOKENIZER = "bert-base-uncased"
"""BLIP's tokenizer: bert-base-uncased (``[DEC]`` and ``[ENC]`` are added as BLIP does)."""


class ImageReward:
    """ImageReward v1.0: human-preference score of an image for its prompt (BLIP + MLP, normalised).

    Args:
        checkpoint: the ImageReward weights: ``"<org>/<repo>/<file>"`` on the hub (default
            ``"THUDM/ImageReward/ImageReward.pt"``, fetched through the standard Hugging Face cache,
            downloaded on first use unless ``HF_HUB_OFFLINE=1``) or a local ``.pt`` (read with
            ``weights_only=True``) or ``.safetensors`` file with the same keys.
        tokenizer: a BERT tokenizer: a hub id (default ``"bert-base-uncased"``) or a local folder with
            ``vocab.txt``.
        med_config: the text encoder's ``med_config.json`` (local or ``org/repo/file``); by default the
            v1.0 settings built into the plugin (BERT-base, 12 layers, 12 heads).
        device: where the model runs; ``None`` (default) follows the images (moved once). Scores are
            returned on the images' device.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` for the two encoders; the
            pre-processing and the MLP head run in float32.
        grad_checkpointing: recompute the encoders' layers in the backward pass (less memory).
    """

    name = "imagereward"
    differentiable = True

    def __init__(
        self,
        *,
        checkpoint: str = DEFAULT_CHECKPOINT,
        tokenizer: str = DEFAULT_TOKENIZER,
        med_config: str | None = None,
        device: Any = None,
        dtype: Any = "float32",
        grad_checkpointing: bool = False,
    ) -> None:
        from ._model import ImageRewardModel

        self.model = ImageRewardModel(
            checkpoint=str(checkpoint), tokenizer=str(tokenizer),
            med_config=None if med_config is None else str(med_config),
            device=device, dtype=dtype, grad_checkpointing=grad_checkpointing,
        )

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score each image against its own prompt: float32 (B,) on the images' device, higher is better."""
        draftsdk.check_inputs(images, prompts, who=self.name)
        return self.model(images, prompts)

    def __repr__(self) -> str:
        return f"ImageReward(checkpoint={self.model.checkpoint!r}, {self.model.describe()})"


META = RewardMeta(
    inputs="image + prompt",
    score_range=(-2.0, 2.0),
    memory_gb=0.9,
    reference="image-reward 1.5 ImageReward.score (THUDM/ImageReward); 1e-4 on the same pixels, 0.1 from PIL images",
    parity_tol=1e-4,
    weights_license="Apache-2.0 (THUDM/ImageReward repository; check the model card)",
    homepage="https://github.com/THUDM/ImageReward",
)
"""What the plugin directory shows about ``imagereward``."""


@draftsdk.hookimpl
def register_rewards(register: Any) -> None:
    """Register ``imagereward`` (alias ``image-reward``); nothing is loaded until the reward is instantiated."""
    register(ImageReward, aliases=("image-reward",), meta=META)
