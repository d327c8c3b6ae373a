"""Resume an interrupted run: the same output_dir with resume=True, and the run continues.

Run: python docs/examples/resume.py
(DRAFTSDK_EXAMPLE_MODEL / DRAFTSDK_EXAMPLE_SMOKE shrink it for the docs tests:
docs/run_examples.py.)
"""

import json
import os
import shutil
from pathlib import Path

import draftsdk

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))
SMOKE.pop("steps", None)


def shrink(config):   # docs tests only: tiny sizes, the same step counts
    return draftsdk.TrainConfig.build({**config.model_dump(), **SMOKE})


# --8<-- [start:first]
config = draftsdk.TrainConfig(steps=4, save_every=2, output_dir="runs/resumable")
# --8<-- [end:first]
config = shrink(config)
# --8<-- [start:first_fit]
trainer = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config)
first = trainer.fit(prompt_set="simple-animals")
# --8<-- [end:first_fit]

# Pretend the run died after its checkpoint at step 2: drop the later one.
shutil.rmtree("runs/resumable/checkpoints/step-000004")

# --8<-- [start:resume]
config = draftsdk.TrainConfig(
    steps=4, save_every=2, output_dir="runs/resumable", resume=True
)
# --8<-- [end:resume]
config = shrink(config)
# --8<-- [start:resume_fit]
trainer = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config)
again = trainer.fit(prompt_set="simple-animals")
print(again.steps_done)                           # 4
print([record["step"] for record in again.history])   # [3, 4]
# --8<-- [end:resume_fit]
assert [r["step"] for r in again.history] == [3, 4]
# the same last update as without the interruption
assert again.history[-1]["loss"] == first.history[-1]["loss"]

# --8<-- [start:inspect]
run = Path("runs/resumable")
print(sorted(p.name for p in (run / "checkpoints").iterdir()))
# ['step-000002', 'step-000004']

lines = (run / "metrics.jsonl").read_text().splitlines()
print([(r["kind"], r["step"]) for r in map(json.loads, lines)])
# [('eval', 0), ('train', 1), ('train', 2), ('train', 3), ('train', 4), ('eval', 4)]
# --8<-- [end:inspect]
