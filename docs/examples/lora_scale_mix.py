"""Scale one LoRA adapter between the base and the fine-tuned model; mix adapters trained on
different rewards.

Shown on docs/howto/lora.md (after docs/examples/quick_setup.py), whose code blocks the docs
tests run in order (docs/run_examples.py).
"""

# --8<-- [start:adapters]
import torch

from draftsdk import lora

# Two adapters from earlier runs, trained on different rewards:
ADAPTERS = {
    "aesthetic": "runs/aesthetic/lora.safetensors",
    "pickscore": "runs/pickscore/lora.safetensors",
}
# No such runs yet? Two random stand-ins (B is 0 after add_lora: randomise it).
for seed, path in enumerate(ADAPTERS.values()):
    unet = draftsdk.load_pipeline(MODEL).unet
    torch.manual_seed(seed)
    for p in lora.add_lora(unet, rank=4):
        p.data.normal_(std=0.05)
    lora.save_lora(path, unet, base_model=MODEL)

device = "cuda" if torch.cuda.is_available() else "cpu"
STEPS = QUICK.get("num_inference_steps", 50)   # sampling steps: 4 in the try


def render(pipe):
    """'a cat' from the same initial noise every time."""
    noise = torch.Generator().manual_seed(0)
    return draftsdk.sample(
        pipe, ["a cat"], num_inference_steps=STEPS, generator=noise
    ).images
# --8<-- [end:adapters]


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
assert difference < 1e-3
# --8<-- [end:exact]

# --8<-- [start:diffusers]
from diffusers import StableDiffusionPipeline

plain = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None)
plain.load_lora_weights("runs/mixed.safetensors", adapter_name="mixed")
plain.set_adapters(["mixed"], adapter_weights=[0.8])
image = plain("a cat", num_inference_steps=STEPS).images[0]     # a PIL image
# --8<-- [end:diffusers]
