"""One training script for one GPU or many: launch it with torchrun or accelerate.

    python docs/examples/train_ddp.py                                   # one process
    torchrun --nproc_per_node 8 docs/examples/train_ddp.py              # 8 GPUs
    accelerate launch --multi_gpu --num_processes 8 docs/examples/train_ddp.py

The docs tests run it as one process on the CPU (DRAFTSDK_EXAMPLE_* variables:
docs/run_examples.py); tests/test_reliability.py runs the trainer under torchrun with two CPU
processes.
"""

import json
import os

# --8<-- [start:script]
import draftsdk

config = draftsdk.TrainConfig(
    batch_size=4,            # per process: on 8 GPUs, 32 prompts per update
    learning_rate=4e-4,
    steps=2000,
    mixed_precision="bf16",
    output_dir="runs/ddp-aesthetic",
)
# --8<-- [end:script]
MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
REWARDS = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_REWARDS", '{"aesthetic": 1.0}'))
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))
config = draftsdk.TrainConfig.build({**config.model_dump(), **SMOKE})
# --8<-- [start:fit]
# joins the process group that torchrun / accelerate set up, if any
trainer = draftsdk.Trainer(MODEL, REWARDS, config)
result = trainer.fit(prompt_set="simple-animals")

if trainer.dist.is_main:          # rank 0 writes the files; print there only
    print(f"{trainer.dist.world_size} process(es), {result.steps_done} updates")
# --8<-- [end:fit]
