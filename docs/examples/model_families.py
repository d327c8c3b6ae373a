"""Model families: one loader for SD 1.x/2.x and SDXL folders, one Trainer for both.

Shown on docs/explanation/model-families.md, whose code blocks the docs tests run in order
(docs/run_examples.py).
"""

# --8<-- [start:detect]
import draftsdk
from draftsdk.models import family_for_model, list_families
from draftsdk.testing import save_tiny_pipeline

# a tiny random-weight SDXL folder, or "stabilityai/stable-diffusion-xl-base-1.0"
SDXL = str(save_tiny_pipeline("models/tiny-sdxl", family="sdxl"))

print(list_families())                   # ['sd', 'sdxl', ...], plus any plugin's
family = family_for_model(SDXL)          # read from the folder's model_index.json
print(family.name, family.default_steps, family.default_guidance)  # sdxl 50 5.0
print(family.default_lora_targets)      # ('to_q', 'to_k', 'to_v', 'to_out.0')
pipe = draftsdk.load_pipeline(SDXL)      # a StableDiffusionXLPipeline
# --8<-- [end:detect]

# --8<-- [start:train]
# The real run: QUICK = {} and REWARDS = {"aesthetic": 1.0} (draftsdk-aesthetic)
QUICK = dict(num_inference_steps=4, steps=1, eval_seeds=[0], mixed_precision="no")
REWARDS = {"brightness": 1.0}
settings = dict(
    variant="draft-k", k=1,  # DRaFT-1: the last step and the VAE decode carry gradient
    num_inference_steps=30, batch_size=2, steps=500,
    mixed_precision="bf16", output_dir="runs/sdxl-aesthetic",
)
config = draftsdk.TrainConfig(**{**settings, **QUICK})
prompts = ["a watercolour fox", "a red lighthouse"]
result = draftsdk.Trainer(pipe, REWARDS, config).fit(prompts)
print(result.lora_path)
# --8<-- [end:train]

# --8<-- [start:reload]
from diffusers import StableDiffusionXLPipeline

plain = StableDiffusionXLPipeline.from_pretrained(SDXL)
# plain diffusers: the same images as draftsdk's own sampler
plain.load_lora_weights(str(result.lora_path))
lora_tensors = [name for name, _ in plain.unet.named_parameters() if "lora_" in name]
print(len(lora_tensors), "LoRA tensors")
# --8<-- [end:reload]
