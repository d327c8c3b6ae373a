"""draftsdk.testing.check_reward catches each way a reward can break the contract."""

from __future__ import annotations

import pytest
import torch

from draftsdk import RewardContractError
from draftsdk.default_plugins.basic import Brightness, Contrast, Saturation, TargetColor
from draftsdk.testing import check_reward


@pytest.mark.parametrize("reward", [Brightness(), Saturation(), Contrast(), TargetColor((0.2, 0.4, 0.6))])
def test_builtins_pass_the_contract(reward):
    report = check_reward(reward, batch_size=3)
    assert report["shape"] == [3] and report["grad_norm"] > 0


class _R:
    name = "r"
    differentiable = True

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, images, prompts):
        return self.fn(images, prompts)


@pytest.mark.parametrize(
    "fn, problem",
    [
        (lambda x, p: x.mean(dim=(1, 2, 3)).unsqueeze(1), "returned shape (2, 1); expected (2,)"),
        (lambda x, p: torch.randn(x.shape[0]), "is not deterministic"),
        (lambda x, p: x.mean(dim=(1, 2, 3)) - x.mean(), "depends on the rest of the batch"),
        (lambda x, p: x.mean(dim=(1, 2, 3)).detach(), "says differentiable=True but its output has no grad_fn"),
        (lambda x, p: (x.mean(dim=(1, 2, 3)) > 2).float() + x.sum(dim=(1, 2, 3)) * 0, "gradient w.r.t. the images is exactly zero"),
        (lambda x, p: x.mean(dim=(1, 2, 3)), "accepted 0..255 images without a ValueError"),
        (lambda x, p: torch.empty(x.shape[0], device="meta"), "returned scores on meta for images on cpu; return them on images.device"),
    ],
)
def test_check_reward_failures(fn, problem):
    with pytest.raises(RewardContractError) as err:
        check_reward(_R(fn), check_input_validation=True)
    assert str(err.value).startswith("reward 'r': " + problem)


def test_fixture_from_pytest_plugin(check_reward):
    assert check_reward(Brightness())["scores"]


def test_smooth_image_pil_and_tensor_hold_the_same_pixels():
    import numpy as np

    from draftsdk.testing import smooth_image

    pil, tensor = smooth_image(40, 56, seed=3)
    assert pil.mode == "RGB" and pil.size == (56, 40)
    assert tensor.shape == (1, 3, 40, 56) and tensor.dtype == torch.float32
    assert torch.equal(torch.from_numpy(np.array(pil)).permute(2, 0, 1).float().div(255), tensor[0])
    again = smooth_image(40, 56, seed=3)[1]
    assert torch.equal(again, tensor)
    assert not torch.equal(smooth_image(40, 56, seed=4)[1], tensor)
    assert 0.05 < float(tensor.std()) < 0.5  # a picture, neither flat nor saturated noise


def test_testing_docstring_examples_run():
    import doctest

    import draftsdk.testing

    result = doctest.testmod(draftsdk.testing, verbose=False)
    assert result.failed == 0 and result.attempted >= 4


def test_pytest_plugin_provides_smooth_image(smooth_image):
    from draftsdk.testing import smooth_image as function

    assert smooth_image is function
