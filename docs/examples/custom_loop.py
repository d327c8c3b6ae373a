"""DRaFT-K written out by hand with draftsdk.sample: the Trainer's core, without the bookkeeping.

Shown on docs/explanation/variants.md (after docs/examples/quick_setup.py), whose code blocks the
docs tests run in order (docs/run_examples.py).
"""

# --8<-- [start:loop]
import torch

import draftsdk

T = QUICK.get("num_inference_steps", 50)    # sampling steps
UPDATES = QUICK.get("steps", 100)

pipe = draftsdk.load_pipeline(MODEL)
pipe.vae.requires_grad_(False)
pipe.text_encoder.requires_grad_(False)
# freezes the UNet, attaches LoRA, returns the LoRA weights
params = draftsdk.lora.add_lora(pipe.unet, rank=8)
optimizer = torch.optim.AdamW(params, lr=4e-4, weight_decay=0.1)
reward = draftsdk.get_reward("contrast")
prompts = ["a cat", "a dog"]

for update in range(UPDATES):
    # K = 1 (DRaFT-1): the graph covers the last step and the VAE decode
    out = draftsdk.sample(pipe, prompts, num_inference_steps=T, grad_steps=1)
    loss = -reward(out.images, prompts).mean()     # maximise the reward
    optimizer.zero_grad()
    loss.backward()          # reward -> VAE decode -> last UNet call -> LoRA
    optimizer.step()
    print(update, -loss.item())
# --8<-- [end:loop]

# --8<-- [start:where]
out = draftsdk.sample(pipe, prompts, num_inference_steps=T, grad_steps=1)
print(out.images.requires_grad, out.latents.requires_grad)   # True True

plain = draftsdk.sample(pipe, prompts, num_inference_steps=T)   # grad_steps=0
print(plain.images.requires_grad)                            # False
# --8<-- [end:where]
