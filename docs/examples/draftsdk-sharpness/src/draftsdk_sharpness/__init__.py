"""draftsdk-sharpness: image sharpness (variance of the Laplacian) as a reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import draftsdk

if TYPE_CHECKING:
    from torch import Tensor

__version__ = "0.1.0"


# --8<-- [start:hook]
@draftsdk.hookimpl
def register_rewards(register):
    register(Sharpness)    # the class: nothing is built until get_reward("sharpness")
# --8<-- [end:hook]


# --8<-- [start:reward]
class Sharpness:
    """Variance of the Laplacian of the image: higher = more fine detail."""

    name = "sharpness"
    differentiable = True

    def __init__(self, grey: bool = True, scale: float = 100.0) -> None:
        if scale <= 0:
            raise ValueError(f"sharpness: scale must be positive, got {scale!r}")
        self.grey, self.scale = grey, float(scale)

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        import torch.nn.functional as F   # loads on first use, not when listing rewards

        # (B, 3, H, W) floats in [0, 1] and one prompt per image, or a ValueError
        draftsdk.check_inputs(images, prompts, who="sharpness")
        if self.grey:
            x = images.mean(dim=1, keepdim=True)         # (B, 1, H, W)
        else:
            x = images.flatten(0, 1).unsqueeze(1)        # (3B, 1, H, W)
        kernel = x.new_tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
        laplacian = F.conv2d(x, kernel)                  # no padding, no border effects
        variance = laplacian.flatten(1).var(dim=1, unbiased=False)
        return self.scale * variance.view(len(images), -1).mean(dim=1)   # (B,)
# --8<-- [end:reward]
