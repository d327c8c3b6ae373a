"""Steppers: the noise-schedule algebra of a sampler, as pure differentiable functions.

A stepper knows the discretised schedule (which timestep the denoiser sees at step ``i``) and how one
step moves the latents: ``step(x_t, model_output, i) -> StepOutput(prev, pred_x0, mean, std)``. It
keeps no step counter (diffusers' schedulers do), so DRaFT-LV can re-run the last step and ReFL can
stop anywhere. Every coefficient is a Python float computed once, so the loop never synchronises
with the GPU, and the algebra runs in float32 whatever the latents' dtype.

- [DDIMStepper][draftsdk.steppers.DDIMStepper]: DDIM (eta 0 = deterministic, eta > 0 stochastic, as
  DDPO needs) for epsilon, v and x0 prediction. The schedule comes from the checkpoint's noise
  schedule, whatever scheduler class its folder names, as ``DDIMScheduler.from_config`` does.
- [FlowMatchEulerStepper][draftsdk.steppers.FlowMatchEulerStepper]: rectified flow with the Euler
  step of ``FlowMatchEulerDiscreteScheduler`` (``x + (σ_next − σ)·v``), static or dynamic shift.

Examples:
    >>> import torch
    >>> from diffusers import EulerDiscreteScheduler
    >>> euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    ...                                steps_offset=1, timestep_spacing="leading")
    >>> stepper = DDIMStepper(euler.config, num_inference_steps=4)   # DDIM on the checkpoint's schedule
    >>> stepper.timesteps, stepper.init_noise_sigma
    ([751, 501, 251, 1], 1.0)
    >>> x = torch.randn(1, 4, 8, 8)
    >>> stepper.step(x, torch.zeros_like(x), 3).prev.shape
    torch.Size([1, 4, 8, 8])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import DraftError

__all__ = ["Stepper", "StepOutput", "DDIMStepper", "FlowMatchEulerStepper", "ScheduleError", "flow_shift_mu"]


class ScheduleError(DraftError, ValueError):
    """The checkpoint's scheduler config describes a schedule this stepper cannot sample faithfully."""


@dataclass
class StepOutput:
    """One step: the next latents, the x0 estimate, and the Gaussian ``prev`` was drawn from.

    ``std`` is 0 for a deterministic step (then ``prev == mean``).
    """

    prev: torch.Tensor
    pred_x0: torch.Tensor
    mean: torch.Tensor
    std: float


@runtime_checkable
class Stepper(Protocol):
    """What a sampler needs from a schedule (implement it to add a new kind of sampler).

    Attributes:
        timesteps: the value the denoiser is called with at each step index (``len == num_steps``).
        init_noise_sigma: the standard deviation of the initial noise x_T.
        stochastic: whether ``step`` needs variance noise (DDIM with eta > 0).
    """

    timesteps: list[float]
    init_noise_sigma: float
    stochastic: bool

    @property
    def num_steps(self) -> int: ...

    def step(self, x: torch.Tensor, model_output: torch.Tensor, index: int, noise: torch.Tensor | None = None) -> StepOutput:
        """Move ``x`` (at step ``index``) one step towards the data, given the (guided) model output."""
        ...

    def add_noise(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """Forward-diffuse clean latents ``x0`` to the noise level of step ``index``."""
        ...


_DDPM_SCHEDULERS = {
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "DDIMParallelScheduler", "DDPMParallelScheduler", "TCDScheduler", "LCMScheduler", "DPMSolverSDEScheduler",
}


def _config_dict(config: Mapping[str, Any] | Any) -> dict[str, Any]:
    return dict(config.items() if hasattr(config, "items") else vars(config))


class DDIMStepper:
    """DDIM on a DDPM-family noise schedule (``alphas_cumprod``), as ``DDIMScheduler.step`` computes it.

    Args:
        config: the checkpoint's scheduler config (any DDPM-family class: DDIM, PNDM, Euler, DPM-Solver...).
            Its betas, ``timestep_spacing``, ``steps_offset``, ``prediction_type``, ``clip_sample`` and
            ``rescale_betas_zero_snr`` are used; the sampling algorithm is always DDIM.
        num_inference_steps: T.
        eta: 0 is deterministic DDIM; 1 is DDPM-like (DDPO).

    Raises:
        ScheduleError: a flow-matching or otherwise non-DDPM config, dynamic thresholding, or an
            unknown prediction type.
    """

    def __init__(self, config: Mapping[str, Any] | Any, num_inference_steps: int, eta: float = 0.0) -> None:
        from diffusers import DDIMScheduler

        cfg = _config_dict(config)
        name = cfg.get("_class_name", "")
        if name and name not in _DDPM_SCHEDULERS:
            raise ScheduleError(
                f"scheduler {name} has no DDPM noise schedule that DDIM can sample faithfully "
                "(a flow-matching checkpoint needs the flow stepper; EDM/Karras-only schedules are not supported)"
            )
        if cfg.get("thresholding", False):
            raise ScheduleError("the scheduler config asks for dynamic thresholding, which draftsdk does not sample; set thresholding=false")
        prediction_type = cfg.get("prediction_type", "epsilon")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ScheduleError(f"unsupported prediction_type {prediction_type!r} (expected epsilon, v_prediction or sample)")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        from .plugin_utils import quiet_diffusers

        known = {k: v for k, v in cfg.items() if not k.startswith("_")}
        try:
            with quiet_diffusers():  # other classes' settings (Euler's interpolation_type...) do not apply to DDIM
                scheduler = DDIMScheduler.from_config(known)
            scheduler.set_timesteps(num_inference_steps)
        except (ValueError, NotImplementedError) as exc:
            raise ScheduleError(f"cannot derive a DDIM schedule from this scheduler config: {str(exc).splitlines()[0]}") from None
        self.prediction_type = prediction_type
        self.eta = float(eta)
        self.stochastic = self.eta > 0
        self.timesteps: list[float] = [int(t) for t in scheduler.timesteps]
        self.init_noise_sigma = float(scheduler.init_noise_sigma)
        self.clip_range = float(scheduler.config.clip_sample_range) if scheduler.config.clip_sample else None
        alphas = scheduler.alphas_cumprod.float()
        final = torch.as_tensor(scheduler.final_alpha_cumprod).float()
        ratio = scheduler.config.num_train_timesteps // num_inference_steps
        # Per step: sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), the direction coefficient and the std,
        # computed in float32 with DDIMScheduler's own formulas (so the floats equal its tensors bit for bit).
        self._coef: list[tuple[float, float, float, float, float]] = []
        for t in self.timesteps:
            prev = t - ratio
            a_t = alphas[t]
            a_prev = alphas[prev] if prev >= 0 else final
            variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
            std = self.eta * variance**0.5
            direction = (1 - a_prev - std**2).clamp(min=0) ** 0.5
            values = (a_t**0.5, (1 - a_t) ** 0.5, a_prev**0.5, direction, std)
            self._coef.append(tuple(float(v) for v in values))  # type: ignore[arg-type]

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def step(self, x: torch.Tensor, model_output: torch.Tensor, index: int, noise: torch.Tensor | None = None) -> StepOutput:
        """One DDIM update from ``timesteps[index]``; ``noise`` is the variance noise when eta > 0."""
        sa, sb, sa_prev, direction, std = self._coef[index]
        dtype = x.dtype
        x, out = x.float(), model_output.float()
        if self.prediction_type == "epsilon":
            pred_x0, eps = (x - sb * out) / sa, out
        elif self.prediction_type == "sample":
            pred_x0 = out
            eps = (x - sa * pred_x0) / sb
        else:  # v_prediction
            pred_x0, eps = sa * x - sb * out, sa * out + sb * x
        if self.clip_range is not None:
            pred_x0 = pred_x0.clamp(-self.clip_range, self.clip_range)
        mean = sa_prev * pred_x0 + direction * eps
        prev = mean
        if std > 0:
            if noise is None:
                raise ValueError("eta > 0 needs variance noise for every step")
            prev = mean + std * noise.float()
        return StepOutput(prev.to(dtype), pred_x0.to(dtype), mean.to(dtype), std)

    def add_noise(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """``sqrt(a_t)·x0 + sqrt(1 − a_t)·noise`` at ``timesteps[index]``."""
        sa, sb = self._coef[index][:2]
        return (sa * x0.float() + sb * noise.float()).to(x0.dtype)


def flow_shift_mu(image_seq_len: int, config: Mapping[str, Any] | Any, *, default_max_shift: float = 1.15) -> float:
    """FLUX's resolution-dependent shift ``mu``: linear in the number of image tokens between
    ``(base_image_seq_len, base_shift)`` and ``(max_image_seq_len, max_shift)`` (diffusers' ``calculate_shift``).

    A config without ``max_shift`` gets ``default_max_shift`` (FluxPipeline uses 1.15, SD3's 1.16)."""
    cfg = _config_dict(config)
    base_len, max_len = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
    base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", default_max_shift)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + base_shift - slope * base_len


class FlowMatchEulerStepper:
    """Rectified flow, ``x_t = (1 − σ)·x0 + σ·ε``, with the Euler step ``x + (σ_next − σ)·v``.

    The sigmas are those ``FlowMatchEulerDiscreteScheduler.set_timesteps`` computes from the
    checkpoint's config: the static ``shift`` (SD3) or, with ``use_dynamic_shifting``, the shift from
    ``mu`` (FLUX; compute it with [flow_shift_mu][draftsdk.steppers.flow_shift_mu]).

    Args:
        config: the checkpoint's ``FlowMatchEulerDiscreteScheduler`` config.
        num_inference_steps: T.
        mu: the dynamic shift (required when the config uses dynamic shifting).
        sigmas: explicit sigmas to pass to ``set_timesteps`` (as some pipelines do, e.g. FLUX's
            ``linspace(1, 1/T, T)``).
    """

    stochastic = False
    eta = 0.0

    def __init__(
        self,
        config: Mapping[str, Any] | Any,
        num_inference_steps: int,
        *,
        mu: float | None = None,
        sigmas: list[float] | None = None,
    ) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        cfg = _config_dict(config)
        name = cfg.get("_class_name", "FlowMatchEulerDiscreteScheduler")
        if name != "FlowMatchEulerDiscreteScheduler":
            raise ScheduleError(f"scheduler {name} is not a flow-matching Euler schedule; use the DDIM stepper for DDPM-family models")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if cfg.get("stochastic_sampling") or cfg.get("invert_sigmas"):
            raise ScheduleError("stochastic_sampling / invert_sigmas flow schedules are not supported; set them to false")
        scheduler = FlowMatchEulerDiscreteScheduler.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
        if scheduler.config.use_dynamic_shifting and mu is None:
            raise ScheduleError("this flow schedule shifts with the resolution (use_dynamic_shifting); pass mu")
        kwargs: dict[str, Any] = {}
        if mu is not None and scheduler.config.use_dynamic_shifting:
            kwargs["mu"] = mu
        if sigmas is not None:
            kwargs["sigmas"] = sigmas
            scheduler.set_timesteps(**kwargs)
        else:
            scheduler.set_timesteps(num_inference_steps, **kwargs)
        sigmas32 = scheduler.sigmas.float()
        self.sigmas = [float(s) for s in sigmas32]  # T + 1 values, the last is the terminal sigma (0)
        self._dt = [float(sigmas32[i + 1] - sigmas32[i]) for i in range(len(sigmas32) - 1)]  # in float32, as the scheduler
        self.timesteps: list[float] = [float(t) for t in scheduler.timesteps]
        self.init_noise_sigma = 1.0  # x_T is plain Gaussian noise at sigma = 1

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def step(self, x: torch.Tensor, model_output: torch.Tensor, index: int, noise: torch.Tensor | None = None) -> StepOutput:
        """``x + (σ_next − σ)·v`` in float32; ``pred_x0 = x − σ·v``."""
        dtype = x.dtype
        xf, v = x.float(), model_output.float()
        prev = xf + self._dt[index] * v
        pred_x0 = xf - self.sigmas[index] * v
        prev = prev.to(dtype)
        return StepOutput(prev, pred_x0.to(dtype), prev, 0.0)

    def add_noise(self, x0: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """``(1 − σ)·x0 + σ·noise`` at step ``index``."""
        sigma = self.sigmas[index]
        return ((1 - sigma) * x0.float() + sigma * noise.float()).to(x0.dtype)
