"""A custom reward in a few lines: a class or a decorated function, checked, combined, trained on.

Shown on docs/howto/custom-reward.md (after docs/examples/quick_setup.py), whose code blocks the
docs tests run in order (docs/run_examples.py).
"""

# --8<-- [start:reward]
import torch


class Colourfulness:
    """Hasler & Süsstrunk's colourfulness metric; higher = more colourful."""

    name = "colourfulness"
    differentiable = True

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        r, g, b = images.unbind(dim=1)           # each (B, H, W), in [0, 1]
        rg, yb = r - g, 0.5 * (r + g) - b        # opponent colour channels
        spread = (rg.var(dim=(1, 2)) + yb.var(dim=(1, 2)) + 1e-8).sqrt()
        mean = (rg.mean(dim=(1, 2)) ** 2 + yb.mean(dim=(1, 2)) ** 2 + 1e-8).sqrt()
        return spread + 0.3 * mean               # (B,), keeps the autograd graph
# --8<-- [end:reward]


# --8<-- [start:function]
import draftsdk


@draftsdk.reward(name="warmth")
def warmth(images, prompts, *, strength: float = 1.0):
    """Red minus blue, averaged over the image."""
    return strength * (images[:, 0] - images[:, 2]).mean(dim=(1, 2))


# keyword-only parameters are options
stronger = warmth.with_options(strength=2.0)
# --8<-- [end:function]

# --8<-- [start:check]
from draftsdk.testing import check_reward

# raises RewardContractError when the contract is broken
report = check_reward(Colourfulness())
print(report["shape"], report["grad_norm"] > 0)          # [2] True
check_reward(stronger)
# --8<-- [end:check]

# --8<-- [start:combine]
terms = {Colourfulness(): 1.0, warmth: 0.5, "contrast": 0.5}
objective = draftsdk.combine(terms)
print(objective)   # WeightedSum(1*colourfulness + 0.5*warmth + 0.5*contrast)

out = objective.evaluate(torch.rand(2, 3, 64, 64), ["a cat", "a dog"])
print(out.total.shape)     # torch.Size([2])
print(sorted(out.terms))   # ['colourfulness', 'contrast', 'warmth']
# --8<-- [end:combine]

# --8<-- [start:train]
settings = dict(steps=500, output_dir="runs/colourful")
config = draftsdk.TrainConfig(**{**settings, **QUICK})
trainer = draftsdk.Trainer(MODEL, objective, config)
result = trainer.fit(prompt_set="simple-animals")
print(result.history[-1]["reward/colourfulness/mean"], result.lora_path)
# --8<-- [end:train]


# --8<-- [start:register]
class MyRewards:
    @draftsdk.hookimpl
    def register_rewards(self, register):
        register(Colourfulness)   # the class, not an instance: nothing loads yet


draftsdk.plugins.register_plugin(MyRewards(), name="my-rewards")
colourful = draftsdk.get_reward("colourfulness")
print(draftsdk.reward_info("colourfulness").plugin)   # <local>
# --8<-- [end:register]
