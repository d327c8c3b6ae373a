"""What the trainer does with NaN rewards: skip the update, count it, stop after too many.

Shown on docs/explanation/failures.md (after docs/examples/quick_setup.py), whose code blocks the
docs tests run in order (docs/run_examples.py).
"""


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


settings = dict(
    steps=6, max_nonfinite_steps=3, eval_every=1000, output_dir="runs/flaky"
)
config = draftsdk.TrainConfig(**{**QUICK, **settings})  # these win over QUICK
# --8<-- [end:flaky]

# --8<-- [start:skipped]
# call 1 is the evaluation at step 0; calls 3 and 4 are the rollouts of updates 2 and 3
result = draftsdk.Trainer(MODEL, Flaky(), config).fit(["a cat", "a dog"])
print(result.steps_done, result.skipped_steps)           # 6 2
print([record["skipped"] for record in result.history])
# [False, True, True, False, False, False]
# --8<-- [end:skipped]

# --8<-- [start:stopped]
config.output_dir = "runs/flaky-2"          # assignments are validated too
always_nan = Flaky(bad_calls=range(3, 100))
try:
    draftsdk.Trainer(MODEL, always_nan, config).fit(["a cat", "a dog"])
except draftsdk.DraftError as exc:
    print(exc)
    # stopped at step 4: 3 updates in a row were skipped for NaN/inf, the last
    # because the reward returned NaN/inf ('flaky') on finite images; last good
    # checkpoint: none. Try a lower learning_rate (0.0004), ...
# --8<-- [end:stopped]
