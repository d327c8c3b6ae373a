"""The SD 1.5 + aesthetic tutorial in Python (the same run as sd15_aesthetic.toml).

Shown on docs/tutorials/sd15-aesthetic.md and docs/index.md, after docs/examples/quick_setup.py;
the docs tests run those pages' code blocks in order (docs/run_examples.py).
"""

# --8<-- [start:config]
settings = dict(
    variant="draft-lv",        # the last step, plus 2 re-noised copies of it
    num_inference_steps=50,
    guidance_scale=7.5,
    lora_rank=8,
    learning_rate=4e-4,
    weight_decay=0.1,
    batch_size=4,
    steps=2000,
    mixed_precision="bf16",
    eval_every=100,
    eval_prompts=["cat", "dog", "horse", "rabbit"],
    eval_seeds=[0, 1, 2, 3],
    save_every=100,
    keep_checkpoints=20,
    output_dir="runs/sd15-aesthetic",
)
config = draftsdk.TrainConfig(**{**settings, **QUICK})   # QUICK = {}: real run
# --8<-- [end:config]

# --8<-- [start:train]
# the real run: {"aesthetic": 1.0} (the draftsdk-aesthetic plugin)
REWARDS = {"brightness": 1.0}
pipe = draftsdk.load_pipeline(MODEL)
objective = draftsdk.combine(REWARDS)
trainer = draftsdk.Trainer(pipe, objective, config)
result = trainer.fit(prompt_set="simple-animals")

print(f"{result.steps_done} updates, {result.skipped_steps} skipped")
print(f"adapter: {result.lora_path}")
first, last = result.evals[0], result.evals[-1]
print(f"eval reward {first['eval/mean']:.3f} -> {last['eval/mean']:.3f}")
# --8<-- [end:train]

# --8<-- [start:watch]
import json
from pathlib import Path

run = Path(config.output_dir)
for line in (run / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["kind"] == "eval":      # every eval_every updates, fixed prompts/seeds
        print(f"step {record['step']:5}  reward {record['eval/mean']:.3f}  "
              f"diversity {record['eval/diversity']:.3f}")

# one image grid per evaluation: step-000000.png, step-000100.png, ...
print(sorted(p.name for p in (run / "samples").iterdir()))
# --8<-- [end:watch]

# --8<-- [start:after]
import torch

# After fit() the pipeline generates with the trained adapter.
# Same prompts, same noise, with the adapter scaled to 0 (the base model) and to 1:
prompts = ["a cat", "an owl", "a horse", "a fox"]
images = {}
for alpha in (0.0, 1.0):
    draftsdk.lora.scale(pipe, draftsdk.lora.ADAPTER_NAME, alpha)
    noise = torch.Generator().manual_seed(0)
    steps = config.num_inference_steps
    out = draftsdk.sample(pipe, prompts, num_inference_steps=steps, generator=noise)
    images[alpha] = out.images

with torch.no_grad():
    base, tuned = (objective(images[a], prompts).mean().item() for a in (0.0, 1.0))
print(f"reward {base:.3f} (base) -> {tuned:.3f} (fine-tuned)")
# --8<-- [end:after]
