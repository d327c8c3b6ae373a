"""Reward protocol, @reward decorator, combine / WeightedSum, contract errors, input checks."""

from __future__ import annotations

import math

import pytest
import torch

import draftsdk
from draftsdk import RewardContractError


def _images(batch=2, value=None, grad=False):
    x = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(0)) if value is None else torch.full((batch, 3, 8, 8), value)
    return x.requires_grad_(grad)


def test_weighted_sum_values_terms_and_gradient():
    objective = draftsdk.combine({"brightness": 2.0, "contrast": {"weight": -1.0, "offset": 0.1, "scale": 0.5}})
    images = _images(grad=True)
    out = objective.evaluate(images, ["a", "b"])
    bright = images.mean(dim=(1, 2, 3))
    contrast = images.mean(dim=1).flatten(1).std(dim=1, unbiased=False)
    expected = 2.0 * bright - (contrast - 0.1) / 0.5
    assert torch.allclose(out.total, expected)
    assert torch.allclose(out.terms["brightness"], bright) and torch.allclose(out.terms["contrast"], contrast)
    out.total.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    summary = out.summary()
    assert set(summary) == {"reward/mean", "reward/std", "reward/brightness/mean", "reward/brightness/std",
                            "reward/contrast/mean", "reward/contrast/std"}
    assert math.isclose(summary["reward/brightness/mean"], float(bright.detach().mean()), rel_tol=1e-6)


def test_combine_accepts_reward_objects_options_and_repeats():
    @draftsdk.reward
    def darkness(images, prompts):
        return 1 - images.mean(dim=(1, 2, 3))

    objective = draftsdk.combine(
        {darkness: 0.5, "target-color": {"options": {"color": [0, 0, 0]}}, "brightness": 1.0}
    )
    assert [t.label for t in objective.terms] == ["darkness", "target-color", "brightness"]
    out = objective(_images(value=0.25), ["a", "b"])
    assert torch.allclose(out, torch.full((2,), 0.5 * 0.75 - 0.0625 + 0.25))
    assert objective.spec()[1] == {"name": "target-color", "options": {"color": [0, 0, 0]}, "weight": 1.0, "offset": 0.0, "scale": 1.0}
    assert objective.spec()[0]["local"] is True
    twice = draftsdk.combine({"brightness": 1.0, darkness: 1.0, draftsdk.get_reward("brightness"): 1.0})
    assert [t.label for t in twice.terms] == ["brightness", "darkness", "brightness#2"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "combine: no reward terms given; pass e.g. {'brightness': 1.0}"),
        ({"brightness": float("nan")}, "combine: weight of term 'brightness' must be finite, got nan"),
        ({"brightness": float("inf")}, "combine: weight of term 'brightness' must be finite, got inf"),
        ({"brightness": "heavy"}, "combine: weight of term 'brightness' must be a number, got 'heavy'"),
        ({"brightness": {"weight": 1, "scale": 0}}, "combine: scale of term 'brightness' must not be 0"),
        ({"brightness": {"wieght": 1}}, "combine: term 'brightness' has unknown key(s) ['wieght']; allowed: ['offset', 'options', 'scale', 'weight']"),
    ],
)
def test_combine_bad_input(spec, message):
    with pytest.raises(ValueError) as err:
        draftsdk.combine(spec)
    assert str(err.value) == message


def test_reward_decorator_options_and_registration():
    @draftsdk.reward(name="gamma-bright")
    def gamma_bright(images, prompts, *, gamma: float = 1.0):
        """Brightness after a gamma curve."""
        return (images.clamp_min(1e-6) ** gamma).mean(dim=(1, 2, 3))

    class Plugin:
        @draftsdk.hookimpl
        def register_rewards(self, register):
            register(gamma_bright)

    draftsdk.plugins.register_plugin(Plugin(), name="gamma")
    info = draftsdk.reward_info("gamma-bright")
    assert info.description == "Brightness after a gamma curve." and info.differentiable is True
    reward = draftsdk.get_reward("gamma-bright", gamma=2.0)
    assert torch.allclose(reward(_images(value=0.5), ["a", "b"]), torch.full((2,), 0.25))
    assert isinstance(reward, draftsdk.Reward)


class _Broken:
    differentiable = True

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def __call__(self, images, prompts):
        return self.fn(images)


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x: x.mean(dim=(2, 3)), "reward 'bad' (plugin: <local>) returned shape (2, 3); expected (2,)"),
        (lambda x: x.mean().item(), "reward 'bad' (plugin: <local>) returned float; expected a Tensor of shape (2,)"),
        (
            lambda x: x.detach().mean(dim=(1, 2, 3)),
            "reward 'bad' (plugin: <local>) says differentiable=True but its output has no gradient w.r.t. the images; "
            "avoid .item()/.numpy()/PIL/no_grad inside the reward, or set differentiable = False",
        ),
    ],
)
def test_contract_errors_name_the_reward(fn, message):
    objective = draftsdk.combine({_Broken("bad", fn): 1.0})
    with pytest.raises(RewardContractError) as err:
        objective(_images(grad=True), ["a", "b"])
    assert str(err.value) == message


@pytest.mark.parametrize(
    "images, prompts, message",
    [
        (torch.full((1, 3, 4, 4), 255.0), ["x"], "reward: images must be float in [0, 1], got values in [255, 255]; divide 0..255 images by 255"),
        (torch.full((1, 3, 4, 4), -1.0), ["x"], "reward: images must be float in [0, 1], got values in [-1, -1]; map [-1, 1] images with (x + 1) / 2"),
        (torch.zeros(1, 4, 4, 4), ["x"], "reward: images must have shape (B, 3, H, W), got (1, 4, 4, 4)"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), ["x", "y"], "reward: images must be a float tensor in [0, 1], got dtype torch.uint8"),
        (torch.zeros(2, 3, 4, 4), ["x"], "reward: got 2 images but 1 prompts; pass one prompt per image"),
        (torch.zeros(2, 3, 4, 4), "xy", "reward: got 2 images but a single string; pass one prompt per image"),
    ],
)
def test_check_inputs_messages(images, prompts, message):
    with pytest.raises(ValueError) as err:
        draftsdk.combine("brightness")(images, prompts)
    assert str(err.value) == message
