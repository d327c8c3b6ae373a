"""The OWL-ViT reward: score images for an object, combine it with other rewards, and the DRaFT recipes.

Run it with the real detector (downloads google/owlvit-base-patch32 once, ~600 MB):

    python docs/examples/owlvit_usage.py

or offline with any saved OWL-ViT folder (the docs tests use a tiny random-weight one):

    DRAFTSDK_EXAMPLE_OWLVIT=/path/to/detector python docs/examples/owlvit_usage.py
"""

from __future__ import annotations

import json
import os

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_OWLVIT", "google/owlvit-base-patch32")

# --8<-- [start:usage]
import draftsdk
import torch

# "Object addition": reward = the detection score of the query (maximised by DRaFT).
add = draftsdk.get_reward("owlvit", query="a strawberry", mode="add", path=MODEL)
# "Object removal": reward = minus the detection score.
remove = draftsdk.get_reward("owlvit", query="a strawberry", mode="remove", path=MODEL)

images = torch.rand(2, 3, 256, 256)  # stand-in for generated images: (B, 3, H, W) floats in [0, 1]
prompts = ["a fruit bowl", "a fruit bowl on a table"]
print("add:", json.dumps([round(v, 6) for v in add(images, prompts).tolist()]))
print("remove:", json.dumps([round(v, 6) for v in remove(images, prompts).tolist()]))

# The boxes behind the score (no gradient; for inspection and plots).
best = add.detect(images[:1], prompts[:1], threshold=0.0)[0]
top = int(best["scores"].argmax())
print("best box:", [round(v, 1) for v in best["boxes"][top].tolist()], "score", round(float(best["scores"][top]), 4))
# --8<-- [end:usage]

# --8<-- [start:combine]
objective = draftsdk.combine(
    {
        "owlvit": {"weight": 1.0, "options": {"query": "a strawberry", "mode": "add", "path": MODEL}},
        "brightness": 0.5,  # any other reward, e.g. "aesthetic": 0.5 with draftsdk-aesthetic installed
    }
)
out = objective.evaluate(images, prompts)  # out.total is differentiable; out.terms holds each raw term
print("terms:", json.dumps({k: round(v, 4) for k, v in out.summary().items()}))
# --8<-- [end:combine]

# The two recipes as `draftsdk train` config files (DRaFT-LV, the paper's small-scale settings).
REMOVAL_TOML = """
# --8<-- [start:removal]
# Object removal: "farmer's market - people". Every person box is pushed down at once (soft max).
model = "CompVis/stable-diffusion-v1-4"
prompts = ["a farmer's market", "a busy farmer's market, photo", "a farmer's market stall with vegetables"]
variant = "draft-lv"
lora_rank = 8
learning_rate = 4e-4
batch_size = 4
steps = 2000

[rewards.owlvit]
weight = 1.0
options = { query = ["a person", "people"], mode = "remove", reduce = "softmax", temperature = 0.05 }
# --8<-- [end:removal]
"""
ADDITION_TOML = """
# --8<-- [start:addition]
# Object addition: "fruit bowl + strawberries". The best strawberry box is pulled up (max, the default).
model = "CompVis/stable-diffusion-v1-4"
prompts = ["a fruit bowl", "a bowl of fruit on a kitchen table", "a fruit bowl, still life painting"]
variant = "draft-lv"
lora_rank = 8
learning_rate = 4e-4
batch_size = 4
steps = 2000

[rewards.owlvit]
weight = 1.0
options = { query = "a strawberry", mode = "add" }
# --8<-- [end:addition]
"""

# Check that both files are valid configs (what `draftsdk train recipe.toml` reads first).
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    modes = []
    for name, text in (("removal", REMOVAL_TOML), ("addition", ADDITION_TOML)):
        (Path(tmp) / f"{name}.toml").write_text(text)
        config = draftsdk.TrainConfig.from_file(Path(tmp) / f"{name}.toml")
        modes.append(config.rewards["owlvit"]["options"]["mode"])
print("recipes:", json.dumps(modes))
