"""Every DRaFT variant as TrainConfig settings, each run briefly on the same model and reward.

Shown on docs/howto/choose-variant.md (after docs/examples/quick_setup.py), whose code blocks the
docs tests run in order (docs/run_examples.py).
"""

# --8<-- [start:variants]
T = QUICK.get("num_inference_steps", 50)   # sampling steps
variants = {
    # gradient through all T steps, each UNet call checkpointed
    "DRaFT (full)": dict(variant="draft"),
    # the last K steps
    "DRaFT-K": dict(variant="draft-k", k=2),
    # K drawn once per rollout (AlignProp)
    "random K": dict(variant="draft-random-k", k_range=(1, T)),
    # K = 1, plus 2 re-noised copies of the last step
    "DRaFT-LV": dict(variant="draft-lv", lv_copies=2),
    # a one-step x0 prediction at a random step among the last 10
    "ReFL": dict(variant="refl", refl_last_steps=min(10, T)),
    # policy gradient: no gradient from the reward
    "DDPO": dict(variant="ddpo", eta=1.0),
}
# --8<-- [end:variants]

# --8<-- [start:compare]
for label, settings in variants.items():
    run = f"runs/variants/{settings['variant']}"
    settings = {"steps": 20, "output_dir": run, **QUICK, **settings}
    config = draftsdk.TrainConfig(**settings)
    trainer = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config)
    last = trainer.fit(prompt_set="simple-animals").history[-1]
    low, high = config.grad_steps_range()
    print(f"{label:13} K in [{low}, {high}]  "
          f"{last['queries'] / last['step']:3.0f} reward queries/update  "
          f"{last['step_time']:.2f} s/update  reward {last['reward/mean']:.4f}")
# --8<-- [end:compare]
