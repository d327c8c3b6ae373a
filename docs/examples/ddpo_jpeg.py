"""Train Stable Diffusion with DDPO on JPEG compressibility, a reward without a gradient.

Run: python docs/examples/ddpo_jpeg.py
(needs a GPU and the SD 1.5 weights; DRAFTSDK_EXAMPLE_MODEL / DRAFTSDK_EXAMPLE_SMOKE shrink it
for the docs tests: docs/run_examples.py.)
"""

import json
import os

import draftsdk

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))

# --8<-- [start:score]
import torch

compressibility = draftsdk.get_reward("jpeg-compressibility")  # quality=95, as in DDPO
flat = torch.full((1, 3, 512, 512), 0.5)  # one grey: a tiny file
noise = torch.rand(1, 3, 512, 512)  # pure noise: a big file
scores = compressibility(torch.cat([flat, noise]), ["a grey square", "noise"])
print("jpeg-compressibility (-kB):", [round(s, 1) for s in scores.tolist()])

# the opposite reward, at another quality
incompressibility = draftsdk.get_reward("jpeg-incompressibility", quality=80)
print("jpeg-incompressibility at quality 80 (kB):",
      [round(s, 1) for s in incompressibility(noise, ["noise"]).tolist()])
# --8<-- [end:score]

# --8<-- [start:train]
settings = dict(
    variant="ddpo",  # policy gradient: the reward needs no gradient
    eta=1.0,  # DDPO samples stochastically (eta > 0)
    guidance_scale=5.0,
    num_inference_steps=50,
    learning_rate=1e-4,
    ddpo_adv_clip=10.0,
    batch_size=8,
    grad_accum_steps=4,
    steps=100,
    output_dir="runs/ddpo-jpeg",
)
config = draftsdk.TrainConfig(**{**settings, **SMOKE})
trainer = draftsdk.Trainer(MODEL, "jpeg-compressibility", config)
result = trainer.fit(prompt_set="simple-animals")

before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
print(f"eval jpeg-compressibility: {before:.2f} -> {after:.2f} (-kB per image)")
print("LoRA adapter:", result.lora_path)
# --8<-- [end:train]
