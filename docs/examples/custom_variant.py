"""A new training variant in one class: the gradient at one early, layout-setting step.

Shown on docs/howto/write-a-variant.md (after docs/examples/quick_setup.py), whose code blocks the
docs tests run in order (docs/run_examples.py).
"""

# --8<-- [start:variant]
import torch
from pydantic import BaseModel, Field

import draftsdk
from draftsdk.variants import RewardBackprop, Rollout


class EarlyStepOptions(BaseModel):
    # where the step with gradient lies, as a fraction of T
    early_fraction: float = Field(0.3, gt=0, lt=1)


class EarlyStep(RewardBackprop):
    """One step with gradient early in the chain, scored on its one-step x0 estimate."""

    name = "early-step"
    Options = EarlyStepOptions

    def rollout(self, ctx, prompts, noise):
        s = ctx.sampler
        index = int(self.options.early_fraction * s.num_steps)
        cond = ctx.encode(prompts)  # cached per prompt
        # steps 0 .. index-1 without a graph
        latents = s.denoise(noise, cond, stop=index, generator=ctx.noise_gen)
        # the one denoiser call with a graph
        out = s.model_output(latents, index, cond, grad=True)
        ctx.guard(index, latents, out, cond)  # the optional KL guard
        with torch.enable_grad():
            x0 = s.step(index, latents, out).pred_x0
        images = s.decode(x0, grad=True)
        return Rollout(images, list(prompts), grad_steps=1, kl=ctx.take_kl())
# --8<-- [end:variant]


# --8<-- [start:register]
class MyVariants:
    @draftsdk.hookimpl
    def register_variants(self, register):
        register(EarlyStep)


draftsdk.plugins.register_plugin(MyVariants(), name="my-variants")
# --8<-- [end:register]

# --8<-- [start:train]
settings = dict(
    variant="early-step",
    variant_options={"early_fraction": 0.25},
    steps=200,
    output_dir="runs/early-step",
)
config = draftsdk.TrainConfig(**{**settings, **QUICK})
result = draftsdk.Trainer(MODEL, {"brightness": 1.0}, config).fit(["a cat", "a dog"])
print(result.history[-1]["grad_steps"], result.lora_path)
# --8<-- [end:train]
