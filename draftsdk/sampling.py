"""A differentiable DDIM sampler with classifier-free guidance for Stable Diffusion 1.x/2.x pipelines.

It keeps the autograd graph only where asked: the first ``T - K`` steps run under
``torch.no_grad()``, the last ``K`` with gradient, each UNet call with gradient wrapped in
``torch.utils.checkpoint`` (non-reentrant) and the VAE decode checkpointed too. It never goes
through ``pipeline.__call__`` (which runs under no_grad) and never touches the pipeline's own
scheduler state: timesteps come from a private copy.

With no gradient, ``eta=0`` and the same initial noise it reproduces
``StableDiffusionPipeline(..., output_type="pt")`` (tested to 1e-4 in float32).

Examples:
    >>> import torch, draftsdk
    >>> from draftsdk.testing import tiny_pipeline
    >>> pipe = tiny_pipeline()
    >>> out = draftsdk.sample(pipe, ["a cat", "a dog"], num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    >>> out.images.shape, out.images.requires_grad
    (torch.Size([2, 3, 16, 16]), False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from .errors import DraftError

__all__ = ["Sampler", "SampleOutput", "StepOutput", "sample", "load_pipeline", "check_pipeline"]

REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def check_pipeline(pipeline: Any) -> None:
    """Raise TypeError unless ``pipeline`` has the Stable-Diffusion components the sampler needs."""
    missing = [name for name in REQUIRED_COMPONENTS if getattr(pipeline, name, None) is None]
    if missing:
        raise TypeError(
            f"{type(pipeline).__name__} is not a Stable Diffusion style pipeline: missing {', '.join(missing)} "
            f"(needs {', '.join(REQUIRED_COMPONENTS)}; load one with draftsdk.load_pipeline(path_or_id))"
        )
    if not hasattr(pipeline.scheduler, "alphas_cumprod"):
        raise TypeError(
            f"scheduler {type(pipeline.scheduler).__name__} has no alphas_cumprod; draftsdk samples with DDIM "
            "and needs a DDPM-family noise schedule (SD 1.x/2.x schedulers have one)"
        )


def load_pipeline(model: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Any:
    """Load a Stable Diffusion pipeline from a local folder or a hub id, without the safety checker.

    Offline (``HF_HUB_OFFLINE=1``) a hub id works only when it is in the Hugging Face cache; a
    missing model gives a one-line error that says how to pass a local folder. ``"draftsdk:digits"``
    names the small digits model shipped inside draftsdk (used by ``draftsdk demo``).

    Examples:
        >>> import tempfile, draftsdk
        >>> from draftsdk.testing import save_tiny_pipeline
        >>> folder = save_tiny_pipeline(tempfile.mkdtemp() + "/pipe")
        >>> type(draftsdk.load_pipeline(str(folder))).__name__
        'StableDiffusionPipeline'
    """
    from diffusers import StableDiffusionPipeline

    if model == "draftsdk:digits":
        from .demo.model import pipeline_path

        model = str(pipeline_path())
    kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    from .plugin_utils import quiet_diffusers, quiet_transformers

    try:
        with quiet_diffusers(), quiet_transformers():  # hub-lookup warnings would bury our one-line error
            pipe = StableDiffusionPipeline.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(model).exists():
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DraftError(f"cannot load the pipeline folder {model!r}: {first}") from None
        raise DraftError(
            f"cannot load the pipeline {model!r}: it is not a local folder and not in the Hugging Face cache "
            "(offline or unknown id); pass a folder saved with save_pretrained, or download it with network access"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass
class SampleOutput:
    """What [sample][draftsdk.sample] returns.

    Attributes:
        images: (B, 3, H, W) in [0, 1]; carries the graph when ``grad_steps > 0``.
        latents: the final latents (before the VAE decode).
    """

    images: torch.Tensor
    latents: torch.Tensor


@dataclass
class StepOutput:
    """One DDIM step: the next latents, the model's x0 prediction, and the Gaussian it was drawn from."""

    prev: torch.Tensor
    pred_x0: torch.Tensor
    mean: torch.Tensor
    std: float


class Sampler:
    """DDIM with classifier-free guidance over a pipeline's components; the building blocks of every variant.

    Args:
        pipeline: anything with ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``.
        num_inference_steps: T.
        guidance_scale: CFG scale; ``<= 1`` runs the conditional model only.
        eta: DDIM eta (0 deterministic, 1 DDPM-like).
        checkpoint_unet: checkpoint each UNet call that runs with gradient.
        checkpoint_vae: checkpoint the VAE decode when it runs with gradient.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        eta: float = 0.0,
        height: int | None = None,
        width: int | None = None,
        checkpoint_unet: bool = True,
        checkpoint_vae: bool = True,
    ) -> None:
        check_pipeline(pipeline)
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        self.unet, self.vae = pipeline.unet, pipeline.vae
        self.text_encoder, self.tokenizer = pipeline.text_encoder, pipeline.tokenizer
        self.guidance_scale = float(guidance_scale)
        self.eta = float(eta)
        self.checkpoint_unet = checkpoint_unet
        self.checkpoint_vae = checkpoint_vae

        # A private scheduler: set_timesteps on the pipeline's own would change its state.
        config = pipeline.scheduler.config
        scheduler = type(pipeline.scheduler).from_config(config)
        scheduler.set_timesteps(num_inference_steps)
        self.timesteps: list[int] = [int(t) for t in scheduler.timesteps]
        self.num_train_timesteps = int(config.num_train_timesteps)
        self.step_ratio = self.num_train_timesteps // num_inference_steps
        self.alphas_cumprod = scheduler.alphas_cumprod.float()
        final = getattr(scheduler, "final_alpha_cumprod", None)
        self.final_alpha_cumprod = torch.as_tensor(final if final is not None else self.alphas_cumprod[0]).float()
        self.prediction_type = config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        self.clip_range = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", False) else None
        if config.get("thresholding", False):
            raise ValueError("dynamic thresholding schedulers are not supported; use a config with thresholding=False")
        self.init_noise_sigma = float(getattr(scheduler, "init_noise_sigma", 1.0))

        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        default = int(self.unet.config.sample_size) * self.vae_scale_factor
        self.height, self.width = height or default, width or default
        if self.height % self.vae_scale_factor or self.width % self.vae_scale_factor:
            raise ValueError(f"height and width must be multiples of {self.vae_scale_factor}, got {self.height}x{self.width}")

    # -- basic blocks -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """Shape of the initial noise for ``batch`` images."""
        f = self.vae_scale_factor
        return (batch, int(self.unet.config.in_channels), self.height // f, self.width // f)

    def initial_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_T on the generator's device (CPU by default, so results do not depend on the GPU)."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(self.latent_shape(batch), generator=generator, device=gen_device)
        return (noise * self.init_noise_sigma).to(self.device, self.unet.dtype)

    def _tokens(self, prompts: Sequence[str], max_length: int) -> torch.Tensor:
        return self.tokenizer(
            list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], negative_prompts: Sequence[str] | None = None) -> torch.Tensor:
        """Text embeddings, ``cat([uncond, cond])`` when guided (the order diffusers uses)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a single string")
        dtype = self.unet.dtype
        cond = self.text_encoder(self._tokens(prompts, self.tokenizer.model_max_length))[0].to(dtype)
        if not self.guided:
            return cond
        negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
        if len(negatives) != len(prompts):
            raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        uncond = self.text_encoder(self._tokens(negatives, cond.shape[1]))[0].to(dtype)
        return torch.cat([uncond, cond])

    def _unet_eps(self, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        model_in = torch.cat([latents, latents]) if self.guided else latents
        out = self.unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if not self.guided:
            return out
        uncond, cond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)

    def model_output(self, latents: torch.Tensor, index: int, embeds: torch.Tensor, grad: bool) -> torch.Tensor:
        """The guided UNet output at step ``index``; checkpointed when ``grad`` and checkpoint_unet."""
        t = torch.tensor(self.timesteps[index], device=latents.device)
        if not grad:
            with torch.no_grad():
                return self._unet_eps(latents, t, embeds)
        with torch.enable_grad():
            if self.checkpoint_unet:
                return checkpoint(self._unet_eps, latents, t, embeds, use_reentrant=False)
            return self._unet_eps(latents, t, embeds)

    def _alphas(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.timesteps[index]
        prev = t - self.step_ratio
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        return a_t, a_prev

    def step(self, index: int, latents: torch.Tensor, model_out: torch.Tensor, noise: torch.Tensor | None = None) -> StepOutput:
        """One DDIM update from ``timesteps[index]``, as ``DDIMScheduler.step`` computes it.

        ``noise`` is the variance noise used when ``eta > 0`` (drawn by the caller).
        """
        a_t, a_prev = self._alphas(index)
        a_t, a_prev = a_t.to(latents.device), a_prev.to(latents.device)
        b_t = 1 - a_t
        if self.prediction_type == "epsilon":
            pred_x0 = (latents - b_t**0.5 * model_out) / a_t**0.5
            eps = model_out
        elif self.prediction_type == "sample":
            pred_x0 = model_out
            eps = (latents - a_t**0.5 * pred_x0) / b_t**0.5
        else:  # v_prediction
            pred_x0 = a_t**0.5 * latents - b_t**0.5 * model_out
            eps = a_t**0.5 * model_out + b_t**0.5 * latents
        if self.clip_range is not None:
            pred_x0 = pred_x0.clamp(-self.clip_range, self.clip_range)
        variance = ((1 - a_prev) / b_t) * (1 - a_t / a_prev)
        std = float(self.eta * variance**0.5)
        mean = a_prev**0.5 * pred_x0 + (1 - a_prev - std**2) ** 0.5 * eps
        if std > 0:
            if noise is None:
                raise ValueError("eta > 0 needs variance noise for every step")
            return StepOutput(mean + std * noise, pred_x0, mean, std)
        return StepOutput(mean, pred_x0, mean, std)

    def add_noise(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """Forward-diffuse clean latents to ``timesteps[index]`` (used by DRaFT-LV)."""
        a_t = self.alphas_cumprod[self.timesteps[index]].to(x0.device)
        return a_t**0.5 * x0 + (1 - a_t) ** 0.5 * noise

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)

    def decode(self, latents: torch.Tensor, grad: bool) -> torch.Tensor:
        """Latents to images in [0, 1]; checkpointed when ``grad`` and checkpoint_vae."""
        if not grad:
            with torch.no_grad():
                return self._decode(latents)
        with torch.enable_grad():
            if self.checkpoint_vae:
                return checkpoint(self._decode, latents, use_reentrant=False)
            return self._decode(latents)

    def variance_noise(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor | None:
        """Fresh noise for a stochastic (eta > 0) step, or None when sampling is deterministic."""
        if self.eta == 0:
            return None
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(shape, generator=generator, device=gen_device).to(self.device, self.unet.dtype)

    # -- composite ----------------------------------------------------------------------------
    def denoise(
        self,
        latents: torch.Tensor,
        embeds: torch.Tensor,
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
        for index in range(start, stop):
            grad = index >= grad_from
            out = self.model_output(latents, index, embeds, grad)
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
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    eta: float = 0.0,
    grad_steps: int = 0,
    negative_prompts: Sequence[str] | None = None,
    latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    height: int | None = None,
    width: int | None = None,
    checkpoint_unet: bool = True,
    checkpoint_vae: bool = True,
) -> SampleOutput:
    """Sample images with DDIM + CFG, keeping the graph through the last ``grad_steps`` steps.

    Args:
        pipeline: a Stable Diffusion 1.x/2.x pipeline (or any object with its five components).
        prompts: one prompt per image.
        grad_steps: K, the number of final steps that carry gradient (0 = plain sampling,
            ``num_inference_steps`` = full DRaFT). The VAE decode has gradient when K > 0.
        latents: initial noise x_T (default: drawn from ``generator``).

    Returns:
        [SampleOutput][draftsdk.SampleOutput] with images in [0, 1].
    """
    sampler = Sampler(
        pipeline,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        eta=eta,
        height=height,
        width=width,
        checkpoint_unet=checkpoint_unet,
        checkpoint_vae=checkpoint_vae,
    )
    if not 0 <= grad_steps <= sampler.num_steps:
        raise ValueError(f"grad_steps must be in [0, {sampler.num_steps}], got {grad_steps}")
    embeds = sampler.encode(prompts, negative_prompts)
    if latents is None:
        latents = sampler.initial_noise(len(prompts), generator)
    elif tuple(latents.shape) != sampler.latent_shape(len(prompts)):
        raise ValueError(f"latents must have shape {sampler.latent_shape(len(prompts))}, got {tuple(latents.shape)}")
    latents = latents.to(sampler.device, sampler.unet.dtype)
    final = sampler.denoise(latents, embeds, grad_from=sampler.num_steps - grad_steps, generator=generator)
    return SampleOutput(images=sampler.decode(final, grad=grad_steps > 0), latents=final)
