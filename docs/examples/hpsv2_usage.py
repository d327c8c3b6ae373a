"""Score images with HPSv2 against their prompts, get pixel gradients, combine it with other rewards.

Run: python docs/examples/hpsv2_usage.py [image.png ...]

The weights default to the published HPSv2 checkpoint (Hugging Face hub ``xswu/HPSv2``, cached in
~/.cache/huggingface) on open_clip's ViT-H-14; the environment variables point the example at local
copies instead (the docs tests set them to a tiny random-weight model: its numbers mean nothing).
"""

import os
import sys

# --8<-- [start:weights]
# where the weights come from: hub ids (cached by Hugging Face) or local paths
CHECKPOINT = os.environ.get("DRAFTSDK_EXAMPLE_HPSV2")  # None: download/cached xswu/HPSv2 file
ARCHITECTURE = os.environ.get("DRAFTSDK_EXAMPLE_HPSV2_MODEL", "ViT-H-14")
# --8<-- [end:weights]


def load_images(paths):
    """PIL files -> list of (3, H, W) float tensors in [0, 1]; synthetic pictures when none given."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    if paths:
        return [pil_to_tensor(Image.open(p).convert("RGB")).float() / 255 for p in paths]
    g = torch.Generator().manual_seed(0)
    return [F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(512, 768), mode="bicubic").clamp(0, 1)[0]
            for _ in range(2)]


# --8<-- [start:usage]
import torch

import draftsdk

# version="v2.0" (default) or "v2.1"; path=None takes that version's file from xswu/HPSv2
reward = draftsdk.get_reward("hpsv2", version="v2.1", path=CHECKPOINT, model=ARCHITECTURE)

# load_images (top of the script): image files -> (3, H, W) floats in [0, 1]
images = torch.stack(load_images(sys.argv[1:])[:2])  # (B, 3, H, W) floats in [0, 1], any size
prompts = ["a watercolour painting of a fox", "a red bicycle leaning on a brick wall"]  # one per image

with torch.no_grad():
    scores = reward(images, prompts)  # float32 (B,): cosine similarity, about 0.2..0.35 for real images
print("hpsv2:", [round(s, 4) for s in scores.tolist()])

# DRaFT back-propagates the reward into the pixels (and from there into the diffusion model).
pixels = images.clone().requires_grad_(True)
reward(pixels, prompts).sum().backward()
print("pixel grad norm:", f"{pixels.grad.norm().item():.3g}")

# In an objective: HPSv2 differences are small (a few 0.01), so scale it up against other terms.
objective = draftsdk.combine({reward: {"weight": 1.0, "scale": 0.01}, "brightness": 0.1})
out = objective.evaluate(images, prompts)
print("total:", [round(t, 3) for t in out.total.tolist()], "terms:", sorted(out.terms))
# --8<-- [end:usage]
