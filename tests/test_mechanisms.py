"""Mechanisms that make training fast and bounded in memory, checked on the CPU: no host
synchronisation inside the denoising loop, per-block checkpointing of the VAE decoder (also for the
one-step variants) and of the denoiser, the per-prompt conditioning cache and text-encoder offload."""

from __future__ import annotations

import pytest
import torch

import draftsdk
from draftsdk import TrainConfig, Trainer
from draftsdk.testing import tiny_flux_pipeline, tiny_pipeline

SYNCING = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")


class SyncCounter:
    """Counts tensor methods that copy a value to the host (each waits for the GPU when there is one)."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        for name in SYNCING:
            original = getattr(torch.Tensor, name)

            def counted(self_, *args, _name=name, _original=original, **kwargs):
                self.calls.append(_name)
                return _original(self_, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("builder, size", [(tiny_pipeline, 16), (lambda: tiny_flux_pipeline(), 32)])
def test_the_denoising_loop_never_waits_for_the_device(monkeypatch, builder, size):
    pipe = builder()
    sampler = draftsdk.sampling.Sampler(pipe, num_inference_steps=5, height=size, width=size)
    cond = sampler.encode(["a cat", "a dog"])
    noise = sampler.initial_noise(2, torch.Generator().manual_seed(0))
    sampler.denoise(noise, cond, grad_from=3)  # warm-up: the timestep table moves to the device once
    counter = SyncCounter(monkeypatch)
    latents = sampler.denoise(noise, cond, grad_from=3)  # 3 steps without and 2 with a graph
    monkeypatch.undo()
    assert counter.calls == []
    assert latents.requires_grad


def _decoder_block_calls(pipe):
    """Count runs of the decoder's up blocks (forward hooks do not fire in a checkpoint's recompute)."""
    calls = []
    for block in pipe.vae.decoder.up_blocks:
        def counted(*args, _forward=block.forward, **kwargs):
            calls.append(torch.is_grad_enabled())
            return _forward(*args, **kwargs)

        block.forward = counted
    return calls


def test_one_step_variants_checkpoint_the_vae_decoder_per_block(tmp_path):
    pipe = tiny_pipeline()
    cfg = TrainConfig(variant="draft-k", k=1, steps=1, batch_size=2, num_inference_steps=3, output_dir=tmp_path / "r", progress=False)
    trainer = Trainer(pipe, "brightness", cfg)
    calls = _decoder_block_calls(pipe)
    rollout = trainer.rollout(["a", "b"])
    assert pipe.vae.is_gradient_checkpointing
    forward_calls = len(calls)
    rollout.images.mean().backward()
    assert len(calls) == 2 * forward_calls  # each decoder block ran again in the backward pass: checkpointed
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.params)

    off = Trainer(tiny_pipeline(), "brightness", cfg.model_copy(update={"checkpoint_vae": False, "output_dir": tmp_path / "s"}))
    calls = _decoder_block_calls(off.pipeline)
    rollout = off.rollout(["a", "b"])
    n = len(calls)
    rollout.images.mean().backward()
    assert len(calls) == n and not off.pipeline.vae.is_gradient_checkpointing


def test_block_checkpointing_of_the_denoiser_gives_the_same_gradient(tmp_path):
    grads = []
    for blocks in (False, True):
        cfg = TrainConfig(variant="draft-k", k=2, steps=1, batch_size=2, num_inference_steps=3, output_dir=tmp_path / f"r{blocks}",
                          progress=False, checkpoint_blocks=blocks, seed=3)
        trainer = Trainer(tiny_pipeline(), "brightness", cfg)
        assert trainer.denoiser.is_gradient_checkpointing == blocks
        for p in trainer.params:
            p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        trainer.rollout(["a", "b"], trainer.sampler.initial_noise(2, torch.Generator().manual_seed(2))).images.mean().backward()
        grads.append([p.grad.clone() for p in trainer.params])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_each_prompt_is_encoded_once_and_offload_moves_the_text_encoder(tmp_path, monkeypatch):
    pipe = tiny_pipeline()
    calls = []
    pipe.text_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    moved = []
    original_to = type(pipe.text_encoder).to
    monkeypatch.setattr(type(pipe.text_encoder), "to", lambda self, *a, **k: moved.append(a) or original_to(self, *a, **k))
    cfg = TrainConfig(variant="draft-k", k=1, steps=3, batch_size=2, num_inference_steps=3, output_dir=tmp_path / "r",
                      progress=False, offload_text_encoders=True, eval_every=1)
    Trainer(pipe, "brightness", cfg).fit(["a cat", "a dog", "a fox"])
    # one batched call for the three prompts and one for the empty negative prompt, none while training
    assert calls == [3, 3]
    assert ("cpu",) in moved


def test_a_single_gpu_gets_an_indexed_device(monkeypatch):
    """torch.cuda.set_device refuses 'cuda' without an index: the trainer passes this process's GPU."""
    from draftsdk.distributed import DistContext
    from draftsdk.trainer import _resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: chosen.append(device))
    for name in ("cuda", "auto"):
        assert _resolve_device(name, DistContext()) == torch.device("cuda", 0)
    assert _resolve_device("cuda", DistContext(rank=1, world_size=2, local_rank=1)) == torch.device("cuda", 1)
    assert all(d.index is not None for d in chosen)
