"""Score images with the LAION aesthetic predictor, get pixel gradients, combine it with other rewards.

Run: python docs/examples/aesthetic_usage.py [image.png ...]

The weights default to the published ones (Hugging Face hub, cached in ~/.cache/huggingface);
the two environment variables point the example at local copies instead (the docs tests set them to
tiny random-weight models, so the numbers they print are meaningless).
"""

import os
import sys

# --8<-- [start:weights]
# where the weights come from: hub ids (cached by Hugging Face) or local paths
CLIP = os.environ.get("DRAFTSDK_EXAMPLE_AESTHETIC_CLIP", "openai/clip-vit-large-patch14")
HEAD = os.environ.get("DRAFTSDK_EXAMPLE_AESTHETIC_HEAD", "trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth")
# --8<-- [end:weights]


def load_images(paths):
    """PIL files -> list of (3, H, W) float tensors in [0, 1]; a synthetic picture when none given."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    if paths:
        return [pil_to_tensor(Image.open(p).convert("RGB")).float() / 255 for p in paths]
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    return [F.interpolate(coarse, size=(512, 768), mode="bicubic").clamp(0, 1)[0]] * 2


# --8<-- [start:usage]
import torch

import draftsdk

reward = draftsdk.get_reward("aesthetic", path=CLIP, head=HEAD)  # loads once; nothing loads at import

# load_images (top of the script): image files -> (3, H, W) floats in [0, 1]
images = torch.stack(load_images(sys.argv[1:])[:2])  # (B, 3, H, W) floats in [0, 1], any size
prompts = ["a watercolour fox", "a watercolour fox"]  # one per image (this reward ignores them)

with torch.no_grad():
    scores = reward(images, prompts)  # float32 (B,), about 1..10 with the published weights
print("aesthetic:", [round(s, 3) for s in scores.tolist()])

# DRaFT back-propagates the reward into the pixels (and from there into the diffusion model).
pixels = images.clone().requires_grad_(True)
reward(pixels, prompts).sum().backward()
print("pixel grad norm:", f"{pixels.grad.norm().item():.3g}")

# In a training objective: a weighted sum, by name (as in a config file) or with the object above.
objective = draftsdk.combine({reward: 1.0, "brightness": 0.1})
out = objective.evaluate(images, prompts)
print("total:", [round(t, 3) for t in out.total.tolist()], "terms:", sorted(out.terms))
# --8<-- [end:usage]
