"""Resume an interrupted run: the same output_dir with resume=True, and the run continues.

Shown on docs/howto/resume.md (after docs/examples/quick_setup.py), whose code blocks the docs
tests run in order (docs/run_examples.py).
"""

# --8<-- [start:first]
settings = dict(steps=4, save_every=2, output_dir="runs/resumable")
config = draftsdk.TrainConfig(**{**QUICK, **settings})  # these win over QUICK
trainer = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config)
first = trainer.fit(prompt_set="simple-animals")

# Pretend the run died after its checkpoint at step 2: drop the later one.
import shutil

shutil.rmtree("runs/resumable/checkpoints/step-000004")
# --8<-- [end:first]

# --8<-- [start:resume]
config = draftsdk.TrainConfig(**{**QUICK, **settings, "resume": True})
trainer = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config)
again = trainer.fit(prompt_set="simple-animals")
print(again.steps_done)                               # 4
print([record["step"] for record in again.history])   # [3, 4]
# the same last update as without the interruption
assert again.history[-1]["loss"] == first.history[-1]["loss"]
# --8<-- [end:resume]

# --8<-- [start:inspect]
import json
from pathlib import Path

run = Path("runs/resumable")
print(sorted(p.name for p in (run / "checkpoints").iterdir()))
# ['step-000002', 'step-000004']

lines = (run / "metrics.jsonl").read_text().splitlines()
print([(r["kind"], r["step"]) for r in map(json.loads, lines)])
# [('eval', 0), ('train', 1), ('train', 2), ('train', 3), ('train', 4), ('eval', 4)]
# --8<-- [end:inspect]
