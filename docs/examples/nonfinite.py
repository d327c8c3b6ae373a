"""What the trainer does with NaN rewards: skip the update, count it, stop after too many.

Run: python docs/examples/nonfinite.py
(DRAFTSDK_EXAMPLE_MODEL / DRAFTSDK_EXAMPLE_SMOKE shrink it for the docs tests:
docs/run_examples.py.)
"""

import json
import os

import draftsdk

MODEL = os.environ.get("DRAFTSDK_EXAMPLE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5")
SMOKE = json.loads(os.environ.get("DRAFTSDK_EXAMPLE_SMOKE", "{}"))
SMOKE.pop("steps", None)


# --8<-- [start:flaky]
class Flaky:
    """Brightness, but NaN on calls 3 and 4 (think: an fp16 overflow)."""

    name = "flaky"
    differentiable = True

    def __init__(self, bad_calls=(3, 4)):
        self.calls, self.bad_calls = 0, set(bad_calls)

    def __call__(self, images, prompts):
        self.calls += 1
        score = images.mean(dim=(1, 2, 3))
        return score * float("nan") if self.calls in self.bad_calls else score


config = draftsdk.TrainConfig(
    steps=6, max_nonfinite_steps=3, eval_every=1000, output_dir="runs/flaky"
)
# --8<-- [end:flaky]
config = draftsdk.TrainConfig.build({**config.model_dump(), **SMOKE})
# --8<-- [start:skipped]
# call 1 is the evaluation at step 0; calls 3 and 4 are the rollouts of updates 2 and 3
result = draftsdk.Trainer(MODEL, Flaky(), config).fit(["a cat", "a dog"])
print(result.steps_done, result.skipped_steps)           # 6 2
print([record["skipped"] for record in result.history])
# [False, True, True, False, False, False]
# --8<-- [end:skipped]
assert result.skipped_steps == 2 and result.steps_done == 6

# --8<-- [start:stopped]
config.output_dir = "runs/flaky-2"          # assignments are validated too
always_nan = Flaky(bad_calls=range(3, 100))
try:
    draftsdk.Trainer(MODEL, always_nan, config).fit(["a cat", "a dog"])
except draftsdk.DraftError as exc:
    print(exc)
    # stopped at step 4: 3 updates in a row had a NaN/inf reward or gradient;
    # last good checkpoint: none. Try a lower learning_rate (0.0004), ...
# --8<-- [end:stopped]
else:
    raise AssertionError("expected the run to stop")
