"""Score images with ImageReward against their prompts, get pixel gradients, combine it.

Run: python docs/examples/imagereward_usage.py [image.png ...]

The weights default to THUDM/ImageReward (ImageReward.pt) and the tokenizer of
bert-base-uncased from the Hugging Face hub (cached in ~/.cache/huggingface). The
environment variables point the example at local files instead; the docs tests set them
to a tiny random-weight model, so the numbers it prints there mean nothing.
"""

import os
import sys

import torch
import torch.nn.functional as F

import draftsdk

# where the weights come from: "<org>/<repo>/<file>" on the hub, or local paths
env = os.environ.get
HUB_FILE = "THUDM/ImageReward/ImageReward.pt"
CHECKPOINT = env("DRAFTSDK_EXAMPLE_IMAGEREWARD_CHECKPOINT", HUB_FILE)
TOKENIZER = env("DRAFTSDK_EXAMPLE_IMAGEREWARD_TOKENIZER", "bert-base-uncased")
MED_CONFIG = env("DRAFTSDK_EXAMPLE_IMAGEREWARD_MED_CONFIG")  # None: ImageReward v1.0's

reward = draftsdk.get_reward(
    "imagereward", checkpoint=CHECKPOINT, tokenizer=TOKENIZER, med_config=MED_CONFIG
)


def load_images(paths):
    """Image files -> (B, 3, 512, 512) floats in [0, 1]; synthetic ones if none."""
    if paths:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor, resize

        files = [pil_to_tensor(Image.open(p).convert("RGB")) for p in paths]
        return torch.stack([resize(x, [512, 512]).float() / 255 for x in files])
    g = torch.Generator().manual_seed(0)
    small = torch.rand(2, 3, 4, 4, generator=g)
    return F.interpolate(small, size=(512, 512), mode="bicubic").clamp(0, 1)


images = load_images(sys.argv[1:3])  # (B, 3, H, W) in [0, 1], any size
prompts = ["a watercolour painting of a fox", "a red bicycle leaning on a brick wall"]
prompts = prompts[: len(images)]

with torch.no_grad():
    scores = reward(images, prompts)  # float32 (B,); about N(0, 1) on real generations
print("imagereward:", [round(s, 4) for s in scores.tolist()])

# DRaFT back-propagates the reward into the pixels (and from there into the model).
pixels = images.clone().requires_grad_(True)
reward(pixels, prompts).sum().backward()
print("pixel grad norm:", f"{pixels.grad.norm().item():.3g}")

# In an objective, next to other terms: ImageReward is already normalised.
objective = draftsdk.combine({reward: 1.0, "brightness": 0.1})
out = objective.evaluate(images, prompts)
print("total:", [round(t, 4) for t in out.total.tolist()], "terms:", sorted(out.terms))
