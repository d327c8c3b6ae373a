"""Score images with CLIPScore against their prompts, get pixel gradients, combine it with other rewards.

Run: python docs/examples/clipscore_usage.py [image.png ...]

The weights default to OpenAI's CLIP ViT-L/14 through open_clip (Hugging Face hub, cached in
~/.cache/huggingface) and openai/clip-vit-large-patch14 for the transformers variant; the environment
variables point the example at local files instead (the docs tests set them to tiny random-weight
models, so the numbers they print mean nothing).
"""

import os
import sys

# --8<-- [start:weights]
# where the weights come from (hub downloads are cached by Hugging Face)
env = os.environ.get
# an open_clip architecture (or model-config JSON) and its weights (tag or checkpoint)
MODEL = env("DRAFTSDK_EXAMPLE_CLIPSCORE_MODEL", "ViT-L-14")
PRETRAINED = env("DRAFTSDK_EXAMPLE_CLIPSCORE_PRETRAINED", "openai")
# or a transformers CLIPModel: a hub id or a local folder
HF_MODEL = env("DRAFTSDK_EXAMPLE_CLIPSCORE_HF", "openai/clip-vit-large-patch14")
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

# open_clip (the default): an architecture and its pretrained weights
reward = draftsdk.get_reward("clipscore", model=MODEL, pretrained=PRETRAINED)

# load_images (top of the script): image files -> (3, H, W) floats in [0, 1]
images = torch.stack(load_images(sys.argv[1:])[:2])  # (B, 3, H, W) in [0, 1], any size
prompts = ["a watercolour painting of a fox", "a red bicycle leaning on a brick wall"]

with torch.no_grad():
    scores = reward(images, prompts)  # float32 (B,): 2.5 * max(cos, 0)
    cosines = reward.cosine(images, prompts)  # the raw cosines, before w and the clamp
print("clipscore:", [round(s, 4) for s in scores.tolist()])
print("cosine:", [round(c, 4) for c in cosines.tolist()])

# DRaFT back-propagates the reward into the pixels (and from there into the model).
pixels = images.clone().requires_grad_(True)
reward(pixels, prompts).sum().backward()
print("pixel grad norm:", f"{pixels.grad.norm().item():.3g}")
# --8<-- [end:usage]

# --8<-- [start:transformers]
# the same score from a transformers CLIPModel (hub id or local folder)
hf_reward = draftsdk.get_reward("clipscore", hf_model=HF_MODEL)
with torch.no_grad():
    hf_scores = hf_reward(images, prompts)
print("clipscore (transformers):", [round(s, 4) for s in hf_scores.tolist()])
# --8<-- [end:transformers]

# --8<-- [start:combine]
# In an objective: CLIPScore keeps the image on the prompt while another term
# (here brightness) pulls elsewhere; offset/scale bring the terms to one range.
terms = {reward: {"weight": 1.0, "offset": 0.7}, "brightness": 0.1}
objective = draftsdk.combine(terms)
out = objective.evaluate(images, prompts)
print("total:", [round(t, 4) for t in out.total.tolist()], "terms:", sorted(out.terms))
# --8<-- [end:combine]
