"""Train Stable Diffusion with DDPO on JPEG compressibility, a reward without a gradient.

Shown on docs/rewards/jpeg.md, whose code blocks the docs tests run in order
(docs/run_examples.py).
"""

# --8<-- [start:score]
import torch

import draftsdk

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
from draftsdk.testing import save_tiny_pipeline

# A quick try, offline on a CPU: a tiny random-weight model and tiny sizes.
# The real run: QUICK = {} and
#   MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MODEL = str(save_tiny_pipeline("models/tiny-sd"))
QUICK = dict(num_inference_steps=4, batch_size=1, grad_accum_steps=1, steps=1,
             eval_seeds=[0], mixed_precision="no")

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
config = draftsdk.TrainConfig(**{**settings, **QUICK})
trainer = draftsdk.Trainer(MODEL, "jpeg-compressibility", config)
result = trainer.fit(prompt_set="simple-animals")

before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
print(f"eval jpeg-compressibility: {before:.2f} -> {after:.2f} (-kB per image)")
print("LoRA adapter:", result.lora_path)
# --8<-- [end:train]
