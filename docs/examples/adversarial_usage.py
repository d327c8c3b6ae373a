"""The adversarial reward: how "cat" a ResNet-50 finds an image, alone and in a weighted sum.

Run it with torchvision's ImageNet weights (downloaded once to ~/.cache/torch, ~100 MB):

    python docs/examples/adversarial_usage.py

or offline with a local ResNet-50 state dict (.pth or .safetensors; the docs tests use random weights):

    DRAFTSDK_EXAMPLE_RESNET50=/path/to/resnet50.pth python docs/examples/adversarial_usage.py
"""

from __future__ import annotations

import json
import os

WEIGHTS_FILE = os.environ.get("DRAFTSDK_EXAMPLE_RESNET50")  # None: torchvision's IMAGENET1K_V2 download

# --8<-- [start:usage]
import draftsdk
import torch

# ImageNet has no plain "cat" class: score the five domestic-cat classes as one group,
# reward = log p(tabby or tiger cat or Persian cat or Siamese cat or Egyptian cat | image).
CATS = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
cat = draftsdk.get_reward("adversarial", target=CATS, path=WEIGHTS_FILE)
print("targets:", json.dumps(cat.targets))

images = torch.rand(3, 3, 256, 256)  # stand-in for generated images: (B, 3, H, W) floats in [0, 1]
prompts = ["a bear", "a dog", "a mouse"]
print("log p(cat):", json.dumps([round(v, 4) for v in cat(images, prompts).tolist()]))

# Class names are checked up front; a typo or a missing class lists what exists.
try:
    draftsdk.get_reward("adversarial", target="cat", path=WEIGHTS_FILE)
except ValueError as err:
    print("error:", err)
# --8<-- [end:usage]

# --8<-- [start:combine]
objective = draftsdk.combine(
    {
        "adversarial": {"weight": 1.0, "options": {"target": CATS, "path": WEIGHTS_FILE}},
        "brightness": 0.5,  # any other reward, e.g. "aesthetic": 0.5 with draftsdk-aesthetic installed
    }
)
out = objective.evaluate(images, prompts)  # out.total is differentiable; out.terms holds each raw term
print("terms:", json.dumps({k: round(v, 4) for k, v in out.summary().items()}))
# --8<-- [end:combine]

# The recipe as a `draftsdk train` config file (DRaFT-LV, the paper's small-scale settings).
RECIPE_TOML = """
# --8<-- [start:recipe]
# "Images generated for {bear, dog, mouse} classified as cat by a ResNet-50".
model = "CompVis/stable-diffusion-v1-4"
prompts = ["a photo of a bear", "a photo of a dog", "a photo of a mouse"]
variant = "draft-lv"
lora_rank = 8
learning_rate = 4e-4
batch_size = 4
steps = 2000

[rewards.adversarial]
weight = 1.0
options = { target = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"] }
# --8<-- [end:recipe]
"""

# Check that it is a valid config (what `draftsdk train recipe.toml` reads first).
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "recipe.toml").write_text(RECIPE_TOML)
    config = draftsdk.TrainConfig.from_file(Path(tmp) / "recipe.toml")
print("recipe:", json.dumps(config.rewards["adversarial"]["options"]["target"]))
