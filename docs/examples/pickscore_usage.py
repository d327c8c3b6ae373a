"""Score images with PickScore against their prompts, get pixel gradients, combine it with other rewards.

Run: python docs/examples/pickscore_usage.py [image.png ...]

The weights default to the published PickScore_v1 (Hugging Face hub, cached in ~/.cache/huggingface);
the environment variable points the example at a local folder instead (the docs tests set it to a
tiny random-weight model, so the numbers they print mean nothing).
"""

import os
import sys

# --8<-- [start:weights]
# where the weights come from: hub ids (cached by Hugging Face) or local paths
MODEL = os.environ.get("DRAFTSDK_EXAMPLE_PICKSCORE", "yuvalkirstain/PickScore_v1")
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
    return [F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(512, 512), mode="bicubic").clamp(0, 1)[0]
            for _ in range(2)]


# --8<-- [start:usage]
import torch

import draftsdk

# the tokenizer/processor settings come from laion/CLIP-ViT-H-14-laion2B-s32B-b79K unless MODEL is a
# local folder that holds them (or processor_path= says where they are)
reward = draftsdk.get_reward("pickscore", path=MODEL)

# load_images (top of the script): image files -> (3, H, W) floats in [0, 1]
images = torch.stack(load_images(sys.argv[1:])[:2])  # (B, 3, H, W) floats in [0, 1], any size
prompts = ["a watercolour painting of a fox", "a red bicycle leaning on a brick wall"]  # one per image

with torch.no_grad():
    scores = reward(images, prompts)  # float32 (B,): 100 x cosine, about 18..23 for real images
print("pickscore:", [round(s, 3) for s in scores.tolist()])

# Preference between candidates for one prompt, as in PickScore's README: softmax over the scores.
print("probs:", [round(p, 3) for p in scores.softmax(dim=0).tolist()])

# DRaFT back-propagates the reward into the pixels (and from there into the diffusion model).
pixels = images.clone().requires_grad_(True)
reward(pixels, prompts).sum().backward()
print("pixel grad norm:", f"{pixels.grad.norm().item():.3g}")

# In an objective: offset/scale bring PickScore (~20, differences of ~1) near other terms' range.
objective = draftsdk.combine({reward: {"weight": 1.0, "offset": 20.0}, "brightness": 0.1})
out = objective.evaluate(images, prompts)
print("total:", [round(t, 3) for t in out.total.tolist()], "terms:", sorted(out.terms))
# --8<-- [end:usage]
