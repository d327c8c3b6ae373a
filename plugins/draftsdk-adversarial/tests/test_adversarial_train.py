"""A tiny end-to-end DRaFT run with the adversarial reward makes bear/dog/mouse images more "cat"."""

from __future__ import annotations

import torch

import draftsdk
from draftsdk.testing import tiny_pipeline
from draftsdk_adversarial import AdversarialReward

CATS = ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]


def test_draft_run_raises_target_log_probability(make_resnet, tmp_path):
    # A classifier head 10x sharper than the contract tests' (logit std ~6): a random ResNet-50 with
    # the 0.03 head barely reacts to 16-pixel images (+4e-4 in 4 steps), this one does (+0.02).
    path = tmp_path / "resnet50.pth"
    torch.save(make_resnet(fc_scale=0.3).state_dict(), path)
    reward = AdversarialReward(target=CATS, path=path, device="cpu")
    config = draftsdk.TrainConfig(
        variant="draft-k", k=2, steps=4, batch_size=2, num_inference_steps=4, learning_rate=1e-2,
        output_dir=tmp_path / "run", progress=False, eval_every=1000, save_every=1000, eval_seeds=[0, 1],
        tensorboard=False, device="cpu",
    )
    result = draftsdk.Trainer(tiny_pipeline(), {reward: 1.0}, config).fit(["a bear", "a dog", "a mouse"])
    before, after = result.evals[0]["eval/mean"], result.evals[-1]["eval/mean"]
    # Same prompts and noise before and after. Measured: -5.3925 -> -5.3726.
    assert after > before + 0.005, (before, after)
