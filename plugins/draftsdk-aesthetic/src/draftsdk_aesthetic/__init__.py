"""draftsdk-aesthetic: the LAION aesthetic predictor v2 as a differentiable draftsdk reward.

score = MLP(normalise(CLIP-ViT-L/14 image embedding)), on the 1..10 rating scale (higher = more
aesthetic; prompts are ignored). The MLP 768-1024-128-64-16-1 has no activations, so in eval mode it
is an affine map ``w . e + b`` of the unit embedding (``|w| = 18.0``, ``b = 5.24`` for the published
head).

Usage::

    reward = draftsdk.get_reward("aesthetic")                       # hub weights (cached by HF)
    reward = draftsdk.get_reward("aesthetic", path="/models/clip-vit-large-patch14",
                                 head="/models/sac+logos+ava1-l14-linearMSE.pth")

Importing this module (and listing rewards) imports neither torch nor transformers: the model code
lives in ``draftsdk_aesthetic._model`` and loads when the reward is instantiated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import draftsdk
from draftsdk.registry import RewardMeta

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Aesthetic", "DEFAULT_CLIP", "DEFAULT_OPEN_CLIP", "DEFAULT_HEAD", "register_rewards"]
__version__ = "0.1.0"

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
"""Hub id of the CLIP model whose image tower embeds the images (transformers format)."""

DEFAULT_OPEN_CLIP = "ViT-L-14:openai"
"""The same OpenAI ViT-L/14 weights through open_clip (``backend="open_clip"``)."""

DEFAULT_HEAD = "trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth"
"""``<hub repo>/<file>`` of the MLP head: TRL's copy of LAION's ``sac+logos+ava1-l14-linearMSE.pth``."""


class Aesthetic:
    """LAION aesthetic predictor v2 (CLIP ViT-L/14 + linear MLP head): about 1..10, prompt ignored.

    Args:
        path: CLIP model for the image embedding. With ``backend="transformers"``: a hub id
            (default ``openai/clip-vit-large-patch14``, loaded from the standard Hugging Face cache,
            downloaded on first use unless ``HF_HUB_OFFLINE=1``) or a local folder in transformers
            format (``config.json`` + ``model.safetensors``). With ``backend="open_clip"``:
            ``"<architecture>:<pretrained tag or file>"`` (default ``"ViT-L-14:openai"``, OpenAI's
            own weights; QuickGELU is applied when the tag needs it, and for a local file of OpenAI
            weights name the ``ViT-L-14-quickgelu`` architecture), ``"hf-hub:<org>/<repo>"`` or
            ``"local-dir:<folder>"``. Only the vision tower and its projection are kept.
        head: the MLP head: a local ``.pth``/``.pt`` file (loaded with ``weights_only=True`` on the
            CPU) or ``.safetensors`` file, or ``"<org>/<repo>/<filename>"`` on the hub (default
            TRL's copy of ``sac+logos+ava1-l14-linearMSE.pth``).
        device: where the models run; ``None`` (default) follows the images (moved once, on the
            first call that needs it). Scores are returned on the images' device.
        dtype: CLIP's dtype, ``"float32"`` (default), ``"float16"`` or ``"bfloat16"``; the
            pre-processing and the head always run in float32.
        grad_checkpointing: recompute the vision transformer's layers in the backward pass
            (less activation memory, about one more forward pass of compute).
        crop_rounding: ``"round"`` (default) places the centre crop like OpenAI CLIP's
            torchvision ``CenterCrop`` (the reference); ``"floor"`` like HF's CLIPImageProcessor.
        backend: ``"transformers"`` (default) or ``"open_clip"``: which library loads the CLIP.
    """

    name = "aesthetic"
    differentiable = True

    def __init__(
        self,
        *,
        path: str | None = None,
        head: str = DEFAULT_HEAD,
        device: Any = None,
        dtype: Any = "float32",
        grad_checkpointing: bool = False,
        crop_rounding: str = "round",
        backend: str = "transformers",
    ) -> None:
        from ._model import AestheticModel

        if path is None:
            path = DEFAULT_OPEN_CLIP if backend == "open_clip" else DEFAULT_CLIP
        self.path = str(path)
        self.head_spec = str(head)
        self.model = AestheticModel(
            path=self.path,
            head=self.head_spec,
            device=device,
            dtype=dtype,
            grad_checkpointing=grad_checkpointing,
            crop_rounding=crop_rounding,
            backend=backend,
        )

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score ``images`` (B, 3, H, W) in [0, 1]; returns float32 (B,) on the images' device."""
        draftsdk.check_inputs(images, prompts, who=self.name)
        return self.model(images)

    def __repr__(self) -> str:
        return f"Aesthetic(path={self.path!r}, head={self.head_spec!r}, {self.model.describe()})"


META = RewardMeta(
    inputs="image",
    score_range=(4.5, 7.0),
    memory_gb=0.6,
    reference="improved-aesthetic-predictor simple_inference.py (christophschuhmann) with openai CLIP ViT-L/14, from PIL images",
    parity_tol=5e-3,
    weights_license="head: Apache-2.0 (improved-aesthetic-predictor); CLIP: MIT (OpenAI); check the sources",
    homepage="https://github.com/christophschuhmann/improved-aesthetic-predictor",
)
"""What the plugin directory shows about ``aesthetic``."""


@draftsdk.hookimpl
def register_rewards(register: Any) -> None:
    register(Aesthetic, aliases=("laion-aesthetic",), meta=META)
