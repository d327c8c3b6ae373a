"""One training script for one GPU or many: launch it with torchrun or accelerate.

    python docs/examples/train_ddp.py                                   # one process
    torchrun --nproc_per_node 8 docs/examples/train_ddp.py              # 8 GPUs
    accelerate launch --multi_gpu --num_processes 8 docs/examples/train_ddp.py

Shown whole on docs/howto/multi-gpu.md, after docs/examples/quick_setup.py (which saves the tiny
model folder it uses); the docs tests run that page's code blocks in order (docs/run_examples.py),
and tests/test_reliability.py runs the trainer under torchrun with two CPU processes.
"""

# --8<-- [start:script]
import draftsdk

# A quick try: the tiny folder saved above, small sizes, a reward without
# weights. The real run: REWARDS = {"aesthetic": 1.0}, QUICK = {} and
#   MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MODEL, REWARDS = "models/tiny-sd", {"brightness": 1.0}
QUICK = dict(num_inference_steps=4, batch_size=1, steps=1, eval_seeds=[0],
             mixed_precision="no")

settings = dict(
    batch_size=4,            # per process: on 8 GPUs, 32 prompts per update
    learning_rate=4e-4,
    steps=2000,
    mixed_precision="bf16",
    output_dir="runs/ddp-aesthetic",
)
config = draftsdk.TrainConfig(**{**settings, **QUICK})
# --8<-- [end:script]

# --8<-- [start:fit]
# joins the process group that torchrun / accelerate set up, if any
trainer = draftsdk.Trainer(MODEL, REWARDS, config)
result = trainer.fit(prompt_set="simple-animals")

if trainer.dist.is_main:          # rank 0 writes the files; print there only
    print(f"{trainer.dist.world_size} process(es), {result.steps_done} updates")
# --8<-- [end:fit]
