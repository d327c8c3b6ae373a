"""Helpers shared by the flow-family test modules (imported as ``flow_helpers``)."""

from __future__ import annotations

import torch

import draftsdk
from draftsdk.lora import add_lora


def latents(pipe, batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Initial noise of ``pipe``'s family at ``height`` x ``width``, from ``seed``."""
    sampler = draftsdk.sampling.Sampler(pipe, num_inference_steps=2, height=height, width=width)
    return sampler.initial_noise(batch, torch.Generator().manual_seed(seed))


def with_random_lora(pipe, seed: int = 1, scale: float = 0.05) -> list[torch.nn.Parameter]:
    """Freeze the family's frozen modules, add its default LoRA to the transformer and fill A and B with
    N(0, scale^2) (a fresh LoRA's B is zero, which would hide a wrong mapping)."""
    family = draftsdk.models.family_for(pipe)
    for module in family.frozen_modules(pipe):
        module.requires_grad_(False)
    params = add_lora(pipe.transformer, rank=4, targets=family.default_lora_targets)
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.data = torch.randn(p.shape, generator=gen) * scale
    return params
