"""Scale one LoRA adapter between the base and the fine-tuned model; mix adapters trained on
different rewards.

Run: python docs/examples/lora_scale_mix.py
It expects two adapters from earlier runs (ADAPTERS below). When they are missing it first writes
two random ones, so that the script runs anywhere (this is what the docs tests do).
"""

import json
import os
from pathlib import Path

import torch

import draftsdk
from draftsdk import lora

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))
STEPS = SMOKE.get("num_inference_steps", 50)
ADAPTERS = {
    "aesthetic": "runs/aesthetic/lora.safetensors",
    "pickscore": "runs/pickscore/lora.safetensors",
}


def random_adapter(path: str, seed: int) -> None:
    """A stand-in for a trained adapter (B is zero right after add_lora: randomise it)."""
    unet = draftsdk.load_pipeline(MODEL).unet
    torch.manual_seed(seed)
    for p in lora.add_lora(unet, rank=4):
        p.data.normal_(std=0.05)
    lora.save_lora(path, unet, base_model=MODEL)


for i, path in enumerate(ADAPTERS.values()):
    if not Path(path).exists():
        random_adapter(path, seed=i)

device = "cuda" if torch.cuda.is_available() else "cpu"


def render(pipe):
    """'a cat' from the same initial noise every time."""
    noise = torch.Generator().manual_seed(0)
    out = draftsdk.sample(pipe, ["a cat"], num_inference_steps=STEPS, generator=noise)
    return out.images


# --8<-- [start:scale]
pipe = draftsdk.load_pipeline(MODEL, device=device)
lora.load_lora(pipe, ADAPTERS["aesthetic"], "aesthetic")

strip = []
for alpha in (0.0, 0.5, 1.0, 1.2):     # 0 = base, 1 = fine-tuned, > 1 extrapolates
    lora.scale(pipe, "aesthetic", alpha)
    strip.append(render(pipe))
# --8<-- [end:scale]

# --8<-- [start:mix]
lora.load_lora(pipe, ADAPTERS["pickscore"], "pickscore")
lora.set_mix(pipe, {"aesthetic": 0.7, "pickscore": 0.5})   # θ + 0.7 ΔW_a + 0.5 ΔW_p
mixed_live = render(pipe)
# --8<-- [end:mix]

# --8<-- [start:mix_file]
inputs = [(ADAPTERS["aesthetic"], 0.7), (ADAPTERS["pickscore"], 0.5)]
out = lora.mix_files(inputs, "runs/mixed.safetensors")
mixed = lora.read_lora(out)
print(mixed.rank)                                           # 8 = 4 + 4
print([(m["file"], m["weight"]) for m in mixed.info["mix"]])
# --8<-- [end:mix_file]

# --8<-- [start:exact]
fresh = draftsdk.load_pipeline(MODEL, device=device)
lora.load_lora(fresh, "runs/mixed.safetensors", "mixed")
from_file = render(fresh)
difference = (from_file - mixed_live).abs().max().item()
print(f"max difference: {difference:.1e}")                 # float rounding only
# --8<-- [end:exact]
assert difference < 1e-3

# --8<-- [start:diffusers]
from diffusers import StableDiffusionPipeline

plain = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None)
plain.load_lora_weights("runs/mixed.safetensors", adapter_name="mixed")
plain.set_adapters(["mixed"], adapter_weights=[0.8])
image = plain("a cat", num_inference_steps=STEPS).images[0]     # a PIL image
# --8<-- [end:diffusers]
