"""DDPO as its reference implementation runs it: one rollout batch feeds several optimizer updates
(minibatches x inner epochs), so later updates are off-policy and PPO clipping acts; per-prompt
statistics cover every process's samples."""

from __future__ import annotations

import pytest
import torch

from draftsdk import TrainConfig, Trainer
from draftsdk.errors import DraftError
from draftsdk.testing import tiny_pipeline
from draftsdk.variants.ddpo import DDPO, DDPOOptions


def _cfg(out, **kw):
    base = dict(variant="ddpo", eta=1.0, steps=1, batch_size=4, num_inference_steps=3, learning_rate=3e-2,
                output_dir=out, progress=False, eval_seeds=[0], eval_every=1000, save_every=1000)
    return TrainConfig(**{**base, **kw})


def _run(tmp_path, name, **kw):
    trainer = Trainer(tiny_pipeline(), "brightness", _cfg(tmp_path / name, **kw))
    steps = []
    real = trainer.optimizer.step

    def counted(*args, **kwargs):
        steps.append(1)
        return real(*args, **kwargs)

    trainer.optimizer.step = counted
    result = trainer.fit(["a cat", "a dog"])
    return result.history[-1], len(steps)


@pytest.mark.parametrize("minibatches, epochs", [(1, 1), (2, 1), (2, 2), (4, 1)])
def test_each_rollout_batch_makes_minibatches_times_epochs_updates(tmp_path, minibatches, epochs):
    record, optimizer_steps = _run(tmp_path, f"m{minibatches}e{epochs}", ddpo_minibatches=minibatches,
                                   ddpo_inner_epochs=epochs, ddpo_clip_range=1e-6)
    assert optimizer_steps == minibatches * epochs == record["updates"]
    if minibatches * epochs == 1:
        assert record["clip_fraction"] == 0.0  # on-policy: the ratio is exactly 1
    else:
        # the first minibatch is on-policy (ratio 1 up to float noise, which a smaller minibatch than the sampling
        # batch can push past 1 ± 1e-6); every later one sees a moved policy, its ratios all leave 1 ± 1e-6
        assert 1 - 1 / (minibatches * epochs) - 1e-9 <= record["clip_fraction"] <= 1


def test_more_minibatches_than_images_is_capped_at_the_batch(tmp_path):
    record, optimizer_steps = _run(tmp_path, "capped", batch_size=2, ddpo_minibatches=8)
    assert optimizer_steps == 2


def test_gradient_accumulation_with_several_updates_is_refused(tmp_path):
    with pytest.raises(DraftError, match="ddpo: grad_accum_steps > 1 cannot be combined with several updates"):
        _run(tmp_path, "accum", grad_accum_steps=2)


class _Ctx:
    """The two StepContext members ``_advantages`` uses, for rank 1 of 2."""

    rank = 1

    def __init__(self, other):
        self.other = other

    def gather(self, obj):
        return [self.other, obj]


def test_per_prompt_statistics_cover_every_process():
    variant = DDPO(DDPOOptions(), 10)
    variant.stats.min_count = 4
    other = (["a", "a", "b", "b"], [0.0, 2.0, 10.0, 12.0])  # rank 0's samples
    mine = torch.tensor([1.0, 1.0, 11.0, 11.0])
    advantages = variant._advantages(_Ctx(other), ["a", "a", "b", "b"], mine)
    # prompt a over both ranks: values 0, 2, 1, 1 (mean 1): rank 1's samples sit at the mean; with rank-local
    # statistics (std 0) they would be the batch statistics instead
    assert torch.allclose(advantages, torch.zeros(4), atol=1e-5)
    assert sorted(variant.stats.values) == ["a", "b"] and len(variant.stats.values["a"]) == 4
