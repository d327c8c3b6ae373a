"""The differentiable sampler: any model family, any stepper, the graph kept only where asked.

The first ``T - K`` steps run under ``torch.no_grad()``, the last ``K`` with gradient, each
denoiser call with gradient wrapped in ``torch.utils.checkpoint`` (non-reentrant) and the VAE
decoder checkpointed block by block. It never goes through ``pipeline.__call__`` (which runs under no_grad) and
never touches the pipeline's own scheduler: the [stepper][draftsdk.steppers] is pure. Latents and
the step algebra stay in float32; only the denoiser's input is cast to its dtype.

With no gradient, ``eta=0`` and the same initial noise it reproduces the family's diffusers pipeline
called with ``DDIMScheduler.from_config(pipe.scheduler.config)`` (tested to 1e-4 in float32).

Examples:
    >>> import torch, draftsdk
    >>> from draftsdk.testing import tiny_pipeline
    >>> pipe = tiny_pipeline()
    >>> out = draftsdk.sample(pipe, ["a cat", "a dog"], num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    >>> out.images.shape, out.images.requires_grad
    (torch.Size([2, 3, 16, 16]), False)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from .models import Conditioning, ModelFamily, family_for, get_family, load_pipeline
from .steppers import StepOutput

__all__ = ["Sampler", "SampleOutput", "StepOutput", "sample", "load_pipeline", "check_pipeline"]


def check_pipeline(pipeline: Any, family: str | ModelFamily | None = None) -> ModelFamily:
    """Return the pipeline's model family; raise TypeError naming the missing components."""
    chosen = _family(pipeline, family)
    chosen.check(pipeline)
    return chosen


def _family(pipeline: Any, family: str | ModelFamily | None) -> ModelFamily:
    if isinstance(family, ModelFamily):
        return family
    return get_family(family) if family else family_for(pipeline)


@dataclass
class SampleOutput:
    """What [sample][draftsdk.sample] returns.

    Attributes:
        images: (B, 3, H, W) in [0, 1]; carries the graph when ``grad_steps > 0``.
        latents: the final latents (before the VAE decode).
    """

    images: torch.Tensor
    latents: torch.Tensor


class Sampler:
    """A family's pipeline plus a stepper and guidance: the building blocks of every variant.

    Args:
        pipeline: a pipeline of a registered [model family][draftsdk.models].
        family: the family (name or object); default: detected from the pipeline.
        num_inference_steps: T (default: the family's).
        guidance_scale: the family's guidance (CFG for SD/SDXL; ``<= 1`` runs the conditional model only).
        eta: DDIM eta (0 deterministic, 1 DDPM-like).
        height: image height (default: the model's).
        width: image width (default: the model's).
        checkpoint_denoiser: checkpoint each denoiser call that runs with gradient.
        checkpoint_vae: checkpoint the VAE decoder's blocks when the decode runs with gradient.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        family: str | ModelFamily | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float = 0.0,
        height: int | None = None,
        width: int | None = None,
        checkpoint_denoiser: bool = True,
        checkpoint_vae: bool = True,
    ) -> None:
        self.family = check_pipeline(pipeline, family)
        self.pipeline = pipeline
        self.denoiser = self.family.denoiser(pipeline)
        steps = self.family.default_steps if num_inference_steps is None else num_inference_steps
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
        self.guidance_scale = float(self.family.default_guidance if guidance_scale is None else guidance_scale)
        self.eta = float(eta)
        self.checkpoint_denoiser = checkpoint_denoiser
        self.checkpoint_vae = checkpoint_vae
        default_h, default_w = self.family.default_size(pipeline)
        self.height, self.width = height or default_h, width or default_w
        multiple = self.family.size_multiple(pipeline)
        if self.height % multiple or self.width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple}, got {self.height}x{self.width}")
        self.stepper = self.family.stepper(pipeline, steps, eta=self.eta, height=self.height, width=self.width)
        self._cache: dict[tuple[str, str | None], Conditioning] = {}
        self._timesteps: torch.Tensor | None = None
        self._compiled: Any = None

    def enable_compile(self, **options: Any) -> None:
        """Run the denoiser through ``torch.compile(**options)`` in the steps without gradient.

        The steps with gradient stay eager (they are checkpointed and recomputed, where compiled
        graphs gain little and cost a second compilation). If compilation fails, a one-line warning
        says why and the sampler runs the denoiser eagerly from then on.
        """
        self._compiled = torch.compile(self.denoiser._call_impl, **options)

    @contextlib.contextmanager
    def _compiled_denoiser(self) -> Iterator[None]:
        # nn.Module.compile's own mechanism: __call__ goes through _compiled_call_impl when it is set,
        # so the families' code, the module object and its LoRA keys stay exactly the same
        self.denoiser._compiled_call_impl = self._compiled
        try:
            yield
        finally:
            self.denoiser._compiled_call_impl = None

    # -- basic blocks -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def num_steps(self) -> int:
        return self.stepper.num_steps

    @property
    def timesteps(self) -> list[float]:
        return list(self.stepper.timesteps)

    @property
    def guided(self) -> bool:
        """Whether a classifier-free-guidance batch runs (FLUX's embedded guidance needs none)."""
        return self.family.uses_cfg(self.pipeline, self.guidance_scale)

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the initial noise for ``batch`` images."""
        return self.family.latent_shape(self.pipeline, batch, self.height, self.width)

    def initial_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_T (float32) on the generator's device (CPU by default, so results do not depend on the GPU)."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.latent_shape(batch), generator=generator, device=gen_device)
        return (noise * self.stepper.init_noise_sigma).to(self.device)

    def encode(self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None) -> Conditioning:
        """The conditioning of ``prompts`` (and their negatives when guided).

        The text encoders are frozen, so each distinct (prompt, negative) pair is encoded once and
        cached for the lifetime of this sampler.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a single string")
        prompts = list(prompts)
        negatives: list[str | None] = [None] * len(prompts)
        if negative_prompts is not None:
            if not self.guided:
                raise ValueError(
                    f"negative prompts need classifier-free guidance, which the {self.family.name} family does not run at "
                    f"guidance_scale={self.guidance_scale:g}; drop the negative prompts"
                )
            negatives = list(negative_prompts)
            if len(negatives) != len(prompts):
                raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        keys = list(zip(prompts, negatives))
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            given = [n for _, n in missing]
            encoded = self.family.encode(
                self.pipeline,
                [p for p, _ in missing],
                None if all(n is None for n in given) else [n or "" for n in given],
                guided=self.guided,
                height=self.height,
                width=self.width,
            )
            encoded = encoded.to(self.device)  # the text encoders may live elsewhere (offload_text_encoders)
            for i, key in enumerate(missing):
                self._cache[key] = encoded[i]
        return Conditioning.cat([self._cache[k] for k in keys])

    def clear_cache(self) -> None:
        """Forget the cached prompt conditioning (after changing a text encoder)."""
        self._cache.clear()

    def _timestep(self, index: int) -> torch.Tensor:
        if self._timesteps is None or self._timesteps.device != self.device:
            self._timesteps = torch.tensor(self.stepper.timesteps, device=self.device)  # one copy, then device indexing
        return self._timesteps[index]

    def _predict(self, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.family.predict(self.pipeline, latents, t, cond, self.guidance_scale)

    def model_output(self, latents: torch.Tensor, index: int, cond: Conditioning, grad: bool) -> torch.Tensor:
        """The guided denoiser output at step ``index``; checkpointed when ``grad`` and checkpoint_denoiser."""
        t = self._timestep(index)
        if not grad:
            with torch.no_grad():
                if self._compiled is not None:
                    try:
                        with self._compiled_denoiser():
                            return self._predict(latents, t, cond)
                    except Exception as exc:  # a compiler failure; a real error shows again in the eager call below
                        self._compiled = None
                        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                        warnings.warn(f"compile=True: torch.compile failed ({type(exc).__name__}: {reason}); "
                                      "running the denoiser eagerly", RuntimeWarning, stacklevel=2)
                return self._predict(latents, t, cond)
        with torch.enable_grad():
            if self.checkpoint_denoiser:
                return checkpoint(self._predict, latents, t, cond, use_reentrant=False)
            return self._predict(latents, t, cond)

    def step(self, index: int, latents: torch.Tensor, model_out: torch.Tensor, noise: torch.Tensor | None = None) -> StepOutput:
        """One stepper update from step ``index`` (``noise``: the variance noise when stochastic)."""
        return self.stepper.step(latents, model_out, index, noise)

    def add_noise(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """Forward-diffuse clean latents to the noise level of step ``index`` (used by DRaFT-LV)."""
        return self.stepper.add_noise(x0, index, noise)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.family.decode(self.pipeline, latents, height=self.height, width=self.width)

    def decode(self, latents: torch.Tensor, grad: bool) -> torch.Tensor:
        """Latents to images in [0, 1]; with ``grad`` and checkpoint_vae, each VAE block is checkpointed.

        Per-block checkpointing (diffusers' ``enable_gradient_checkpointing``) bounds the peak of the
        backward pass to one decoder block; checkpointing the whole decode would recompute all of its
        activations at once, which is the peak it was meant to avoid.
        """
        if not grad:
            with torch.no_grad():
                return self._decode(latents)
        vae = self.pipeline.vae
        if getattr(vae, "_supports_gradient_checkpointing", False) and vae.is_gradient_checkpointing != self.checkpoint_vae:
            vae.enable_gradient_checkpointing() if self.checkpoint_vae else vae.disable_gradient_checkpointing()
        with torch.enable_grad():
            if self.checkpoint_vae and not getattr(vae, "_supports_gradient_checkpointing", False):
                return checkpoint(self._decode, latents, use_reentrant=False)
            return self._decode(latents)

    def variance_noise(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor | None:
        """Fresh noise for a stochastic (eta > 0) step, or None when sampling is deterministic."""
        if not self.stepper.stochastic:
            return None
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(shape, generator=generator, device=gen_device).to(self.device)

    # -- composite ----------------------------------------------------------------------------
    def denoise(
        self,
        latents: torch.Tensor,
        cond: Conditioning,
        *,
        start: int = 0,
        stop: int | None = None,
        grad_from: int | None = None,
        generator: torch.Generator | None = None,
        on_grad_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Run steps ``start .. stop-1``; steps with index ``>= grad_from`` keep the graph.

        ``on_grad_step(index, latents_in, model_out)`` is called for every step with gradient (the
        trainer uses it for the KL guard).
        """
        stop = self.num_steps if stop is None else stop
        grad_from = self.num_steps if grad_from is None else grad_from
        latents = latents.float()
        for index in range(start, stop):
            grad = index >= grad_from
            out = self.model_output(latents, index, cond, grad)
            if grad and on_grad_step is not None:
                on_grad_step(index, latents, out)
            noise = self.variance_noise(latents.shape, generator)
            with torch.enable_grad() if grad else torch.no_grad():
                latents = self.step(index, latents, out, noise).prev
        return latents


def sample(
    pipeline: Any,
    prompts: Sequence[str],
    *,
    family: str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    eta: float = 0.0,
    grad_steps: int = 0,
    negative_prompts: Sequence[str] | None = None,
    latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    height: int | None = None,
    width: int | None = None,
    checkpoint_denoiser: bool = True,
    checkpoint_vae: bool = True,
) -> SampleOutput:
    """Sample images, keeping the graph through the last ``grad_steps`` steps.

    Args:
        pipeline: a pipeline of any registered model family (SD 1.x/2.x, SDXL, ...).
        prompts: one prompt per image.
        num_inference_steps: T (default: the family's, 50 for SD).
        guidance_scale: the family's guidance (default: the family's, 7.5 for SD).
        grad_steps: K, the number of final steps that carry gradient (0 = plain sampling,
            ``num_inference_steps`` = full DRaFT). The VAE decode has gradient when K > 0.
        latents: initial noise x_T (default: drawn from ``generator``).

    Returns:
        [SampleOutput][draftsdk.SampleOutput] with images in [0, 1].
    """
    sampler = Sampler(
        pipeline,
        family=family,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        eta=eta,
        height=height,
        width=width,
        checkpoint_denoiser=checkpoint_denoiser,
        checkpoint_vae=checkpoint_vae,
    )
    if not 0 <= grad_steps <= sampler.num_steps:
        raise ValueError(f"grad_steps must be in [0, {sampler.num_steps}], got {grad_steps}")
    cond = sampler.encode(prompts, negative_prompts)
    if latents is None:
        latents = sampler.initial_noise(len(prompts), generator)
    elif tuple(latents.shape) != sampler.latent_shape(len(prompts)):
        raise ValueError(f"latents must have shape {sampler.latent_shape(len(prompts))}, got {tuple(latents.shape)}")
    latents = latents.to(sampler.device, torch.float32)
    final = sampler.denoise(latents, cond, grad_from=sampler.num_steps - grad_steps, generator=generator)
    return SampleOutput(images=sampler.decode(final, grad=grad_steps > 0), latents=final)
