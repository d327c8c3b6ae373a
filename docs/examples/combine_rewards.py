"""Combine rewards: weights, options, and normalising terms that live on different scales.

Shown on docs/howto/combine-rewards.md, whose code blocks the docs tests run in order
(docs/run_examples.py).
"""

# --8<-- [start:weights]
import torch

import draftsdk

objective = draftsdk.combine({"brightness": 1.0, "contrast": 0.5, "saturation": -0.2})
print(objective)   # WeightedSum(1*brightness + 0.5*contrast + -0.2*saturation)
# --8<-- [end:weights]

# --8<-- [start:terms]
objective = draftsdk.combine({
    "contrast": 1.0,                               # a plain weight
    "target-color": {"weight": 0.5, "options": {"color": [1.0, 0.5, 0.0]}},
    "brightness": {"weight": 1.0, "offset": 0.5, "scale": 0.1},
})
out = objective.evaluate(torch.rand(4, 3, 64, 64), ["a fox"] * 4)

# (4,): the sum of weight * (raw - offset) / scale, differentiable
print(out.total)
# the raw value of each term, before offset, scale and weight
print(out.terms.keys())
# what the trainer logs: {"reward/mean": ..., "reward/contrast/mean": ..., ...}
print(out.summary())
# what checkpoints and LoRA files record about the objective
print(objective.spec())
# --8<-- [end:terms]

# --8<-- [start:measure]
# Score images of the *base* model: how large is each term, how much does it vary?
names = ["brightness", "contrast", "saturation"]
pipe = draftsdk.load_pipeline(MODEL)
prompts = draftsdk.prompts.prompt_set("simple-animals")[:16]
noise = torch.Generator().manual_seed(0)
steps = QUICK.get("num_inference_steps", 50)   # sampling steps: 4 in the try
out = draftsdk.sample(pipe, prompts, num_inference_steps=steps, generator=noise)
images = out.images

raw = draftsdk.combine(names).evaluate(images, prompts).terms
stats = {name: (raw[name].mean().item(), raw[name].std().item()) for name in names}
for name, (mean, std) in stats.items():
    print(f"{name:12} mean {mean:.4f}  std {std:.4f}")
# --8<-- [end:measure]

# --8<-- [start:normalise]
# Standardise every term, (r - mean) / std; the weights then say what matters most.
weights = {"brightness": 1.0, "contrast": 1.0, "saturation": 0.5}
balanced = draftsdk.combine({
    name: {"weight": weights[name], "offset": mean, "scale": std or 1.0}
    for name, (mean, std) in stats.items()
})
# every term now varies on the same scale
print(balanced.evaluate(images, prompts).total.std())
# --8<-- [end:normalise]
