"""Watch rewards you do not optimise: eval_rewards are scored on the evaluation images only.

Run: python docs/examples/eval_rewards.py
(DRAFTSDK_EXAMPLE_MODEL / DRAFTSDK_EXAMPLE_SMOKE shrink it for the docs tests: docs/run_examples.py)
"""

import json
import os

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))

# --8<-- [start:watch]
import draftsdk

settings = dict(
    variant="draft-lv",
    steps=300,
    eval_every=50,
    # scored on the fixed evaluation images, logged as eval/<name>;
    # no gradient is needed
    eval_rewards={"contrast": 1.0, "saturation": 1.0},
    output_dir="runs/brightness-watched",
)
config = draftsdk.TrainConfig(**{**settings, **SMOKE})
result = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config).fit(["a cat", "a dog"])
for record in result.evals:
    print(record["step"], round(record["eval/mean"], 4),            # the objective
          round(record["eval/contrast"], 4), round(record["eval/saturation"], 4))
# --8<-- [end:watch]
assert all("eval/contrast" in r and "eval/saturation/std" in r for r in result.evals)
