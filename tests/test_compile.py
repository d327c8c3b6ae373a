"""compile=True: the steps without gradient run through torch.compile with the same results, the
steps with gradient stay eager, and a compiler failure falls back to eager with one warning."""

from __future__ import annotations

import pytest
import torch

from draftsdk import TrainConfig, Trainer
from draftsdk.sampling import Sampler
from draftsdk.testing import tiny_pipeline


def _images(sampler, noise):
    cond = sampler.encode(["a cat", "a dog"])
    latents = noise.clone()
    for index in range(sampler.num_steps):
        latents = sampler.step(index, latents, sampler.model_output(latents, index, cond, grad=False)).prev
    return sampler.decode(latents, grad=False)


def test_compiled_no_grad_steps_match_eager_and_grad_steps_stay_eager(monkeypatch):
    pipe = tiny_pipeline()
    eager = Sampler(pipe, num_inference_steps=3)
    noise = eager.initial_noise(2, torch.Generator().manual_seed(0))
    expected = _images(eager, noise)

    compiled_calls = []
    real_compile = torch.compile

    def counting_compile(fn, **options):
        compiled = real_compile(fn, **options)

        def run(*args, **kwargs):
            compiled_calls.append(torch.is_grad_enabled())
            return compiled(*args, **kwargs)

        return run

    monkeypatch.setattr(torch, "compile", counting_compile)
    sampler = Sampler(pipe, num_inference_steps=3)
    sampler.enable_compile(backend="eager")  # the mechanism (dynamo), without inductor's compile time
    got = _images(sampler, noise)
    assert compiled_calls == [False, False, False]
    assert torch.allclose(got, expected, atol=1e-5)
    cond = sampler.encode(["a cat"])
    out = sampler.model_output(noise[:1], 0, cond, grad=True)
    assert out.requires_grad and len(compiled_calls) == 3  # the step with gradient ran eagerly
    assert sampler.denoiser._compiled_call_impl is None  # the module is left as it was


def test_a_compiler_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    pipe = tiny_pipeline()
    eager = Sampler(pipe, num_inference_steps=2)
    noise = eager.initial_noise(2, torch.Generator().manual_seed(1))
    expected = _images(eager, noise)

    def broken_compile(fn, **options):
        def run(*args, **kwargs):
            raise RuntimeError("inductor: no C++ compiler found\nlong details")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    sampler = Sampler(pipe, num_inference_steps=2)
    sampler.enable_compile()
    with pytest.warns(RuntimeWarning, match=r"^compile=True: torch.compile failed \(RuntimeError: inductor: no C\+\+ "
                                            r"compiler found\); running the denoiser eagerly$") as caught:
        got = _images(sampler, noise)
    assert len(caught) == 1
    assert torch.equal(got, expected)


def test_the_trainer_compiles_when_asked(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(Sampler, "enable_compile", lambda self, **options: seen.append(options))
    cfg = TrainConfig(steps=1, batch_size=1, num_inference_steps=2, output_dir=tmp_path / "run", progress=False,
                      eval_seeds=[0], compile=True, compile_options={"mode": "max-autotune-no-cudagraphs"})
    Trainer(tiny_pipeline(), "brightness", cfg)
    assert seen == [{"mode": "max-autotune-no-cudagraphs"}]
