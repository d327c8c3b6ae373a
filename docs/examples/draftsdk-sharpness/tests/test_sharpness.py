"""Tests of draftsdk-sharpness, through draftsdk's public API only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import draftsdk

PLUGIN_DIR = Path(__file__).resolve().parents[1]


# --8<-- [start:contract]
def test_reward_contract(registered, check_reward):
    """Shape, finite values, gradient, determinism, batch independence, input checks."""
    reward = draftsdk.get_reward("sharpness")
    report = check_reward(reward, check_input_validation=True)
    assert report["shape"] == [2] and report["grad_norm"] > 0
    check_reward(draftsdk.get_reward("sharpness", grey=False))
# --8<-- [end:contract]


# --8<-- [start:behaviour]
def test_sharp_images_score_higher_than_blurred_ones(registered):
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sharp = (noise > 0.5).float()
    blurred = F.avg_pool2d(sharp, kernel_size=5, stride=1, padding=2)
    reward = draftsdk.get_reward("sharpness")
    assert (reward(sharp, ["x"] * 4) > reward(blurred, ["x"] * 4)).all()
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert reward(flat, ["x"]).item() == 0.0
# --8<-- [end:behaviour]


def test_listed_without_instantiating_and_options_checked(registered):
    info = draftsdk.reward_info("sharpness")
    assert (info.name, info.differentiable) == ("sharpness", True)
    assert info.description.startswith("Variance of the Laplacian")
    with pytest.raises(TypeError, match="accepts: grey, scale"):
        draftsdk.get_reward("sharpness", gray=True)
    with pytest.raises(ValueError, match="scale must be positive"):
        draftsdk.get_reward("sharpness", scale=0)


def test_in_a_weighted_sum(registered):
    objective = draftsdk.combine({"sharpness": 0.1, "brightness": 1.0})
    out = objective.evaluate(torch.rand(2, 3, 16, 16), ["a cat", "a dog"])
    assert sorted(out.terms) == ["brightness", "sharpness"]
    assert out.total.shape == (2,)


# --8<-- [start:train]
def test_one_training_step(registered, tiny_sd_path, tmp_path):
    """The reward drives a tiny random-weight Stable Diffusion through the trainer."""
    config = draftsdk.TrainConfig(
        steps=1, batch_size=2, num_inference_steps=3, eval_seeds=[0],
        output_dir=tmp_path / "run", progress=False, tensorboard=False,
    )
    trainer = draftsdk.Trainer(str(tiny_sd_path), {"sharpness": 1.0}, config)
    result = trainer.fit(["a cat", "a dog"])
    assert result.steps_done == 1 and result.skipped_steps == 0
    assert result.lora_path.is_file()
# --8<-- [end:train]


# --8<-- [start:installed]
@pytest.mark.slow
def test_found_through_its_entry_point_once_installed(tmp_path):
    """pip-install this folder into a scratch folder; list rewards in a new process."""
    source = tmp_path / "draftsdk-sharpness"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(PLUGIN_DIR, source, ignore=ignore)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
           "--no-build-isolation", "--no-index", "--target", str(site), str(source)]
    subprocess.run(pip, check=True, timeout=300)

    env = {**os.environ, "PYTHONPATH": str(site),
           "DRAFTSDK_LOAD_PLUGINS": "draftsdk-sharpness"}
    out = subprocess.run([sys.executable, "-m", "draftsdk", "rewards", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    listed = {r["name"]: r for r in json.loads(out.stdout)}
    assert listed["sharpness"]["plugin"] == "draftsdk-sharpness"
    assert listed["sharpness"]["version"] == "0.1.0"
# --8<-- [end:installed]
