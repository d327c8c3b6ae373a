"""Watch rewards you do not optimise: eval_rewards are scored on the evaluation images only.

Shown on docs/howto/combine-rewards.md, whose code blocks the docs tests run in order
(docs/run_examples.py).
"""

# --8<-- [start:watch]
settings = dict(
    variant="draft-lv",
    steps=300,
    eval_every=50,
    # scored on the fixed evaluation images, logged as eval/<name>;
    # no gradient is needed
    eval_rewards={"contrast": 1.0, "saturation": 1.0},
    output_dir="runs/brightness-watched",
)
config = draftsdk.TrainConfig(**{**settings, **QUICK})
result = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config).fit(["a cat", "a dog"])
for record in result.evals:
    print(record["step"], round(record["eval/mean"], 4),            # the objective
          round(record["eval/contrast"], 4), round(record["eval/saturation"], 4))
# --8<-- [end:watch]
