"""The model-family seam: everything that differs between SD 1.x, SDXL, SD3, FLUX... lives in one object.

A [ModelFamily][draftsdk.models.ModelFamily] says which pipeline class loads a folder, turns prompts
into a [Conditioning][draftsdk.models.Conditioning], calls the denoiser (with its guidance), gives
the latent shape and the stepper, decodes latents to images, and names the LoRA targets and the key
prefix of exported adapters. The sampler, the variants and the trainer only talk to this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import DraftError
from ..steppers import FlowMatchEulerStepper, flow_shift_mu

__all__ = ["Conditioning", "ModelFamily", "ModelLoadError", "PackedLatents"]


class ModelLoadError(DraftError, OSError):
    """A pipeline folder or hub id could not be loaded."""


@dataclass
class Conditioning:
    """Prompt conditioning of a batch: named tensors, batch dimension first.

    ``cond`` holds what the denoiser gets for the prompts; ``uncond`` the same for the negative
    prompts when classifier-free guidance runs (else None); ``shared`` what is the same for every
    image (kept as is by slicing and concatenation). SD has one tensor (``encoder_hidden_states``);
    SDXL adds ``text_embeds`` and ``time_ids``; FLUX shares its position ids.

    Examples:
        >>> import torch
        >>> c = Conditioning({"encoder_hidden_states": torch.zeros(2, 7, 32)})
        >>> len(c.repeat(3)), len(c[1:])
        (6, 1)
    """

    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor] | None = None
    shared: dict[str, torch.Tensor] = field(default_factory=dict)  # not per image (FLUX's position ids)

    def __len__(self) -> int:
        return next(iter(self.cond.values())).shape[0]

    @property
    def guided(self) -> bool:
        return self.uncond is not None

    def _map(self, fn: Any) -> Conditioning:
        cond = {k: fn(v) for k, v in self.cond.items()}
        uncond = None if self.uncond is None else {k: fn(v) for k, v in self.uncond.items()}
        return Conditioning(cond, uncond, self.shared)

    def __getitem__(self, index: slice | int) -> Conditioning:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    def repeat(self, n: int) -> Conditioning:
        """``n`` copies of the batch, one after the other (rows ``b, b + B, ...`` are prompt ``b``)."""
        return self._map(lambda t: torch.cat([t] * n))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        """Move every tensor (floating tensors also cast to ``dtype`` when given)."""
        moved = self._map(lambda t: t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device))
        moved.shared = {k: v.to(device) for k, v in self.shared.items()}
        return moved

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Concatenate batches along the batch dimension."""
        first = parts[0]
        cond = {k: torch.cat([p.cond[k] for p in parts]) for k in first.cond}
        uncond = None
        if first.uncond is not None:
            uncond = {k: torch.cat([p.uncond[k] for p in parts]) for k in first.uncond}  # type: ignore[index]
        return Conditioning(cond, uncond, first.shared)


class ModelFamily:
    """Base class of a model family. Subclass it, set the class attributes, override the methods.

    Register a subclass with the ``register_model_families`` hook; built-ins go through the same hook.

    Attributes:
        name: the family's key (``TrainConfig.family``, ``load_pipeline(..., family=...)``).
        pipeline_classes: diffusers pipeline class names (``model_index.json``'s ``_class_name``)
            this family loads; the first is used to load a folder.
        required_components: pipeline attributes that must be present.
        denoiser_name: the attribute that holds the denoiser (``unet`` / ``transformer``); it is
            also the key prefix of exported LoRA files, as diffusers' loaders expect.
        default_lora_targets: the modules a LoRA adapts when the config does not say.
        default_steps, default_guidance: sampling defaults.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    required_components: ClassVar[tuple[str, ...]] = ()
    optional_components: ClassVar[tuple[str, ...]] = ()
    denoiser_name: ClassVar[str] = "unet"
    default_lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    default_steps: ClassVar[int] = 50
    default_guidance: ClassVar[float] = 7.5
    load_kwargs: ClassVar[dict[str, Any]] = {}

    # -- loading and inspection ---------------------------------------------------------------------
    def pipeline_class(self) -> Any:
        """The diffusers pipeline class this family loads with (ModelLoadError when the installed
        diffusers predates it)."""
        import diffusers

        try:
            return getattr(diffusers, self.pipeline_classes[0])
        except AttributeError:
            raise ModelLoadError(
                f"the {self.name} family needs diffusers.{self.pipeline_classes[0]}, which diffusers {diffusers.__version__} "
                "does not have; upgrade diffusers (pip install -U diffusers)"
            ) from None

    def load(self, model: str, *, dtype: torch.dtype | None = None) -> Any:
        """Load a folder or hub id with this family's pipeline class (CPU; the caller moves it)."""
        from ..plugin_utils import quiet_diffusers, quiet_transformers

        kwargs = dict(self.load_kwargs)
        index = Path(model) / "model_index.json"
        if index.is_file():  # components saved as None (SD3 without T5) must be passed as None again
            import json

            entries = json.loads(index.read_text(encoding="utf-8"))
            kwargs.update({k: None for k, v in entries.items() if isinstance(v, list) and v and v[0] is None and k not in kwargs})
        if dtype is not None:
            kwargs["torch_dtype"] = dtype
        try:
            with quiet_diffusers(), quiet_transformers():  # hub-lookup warnings would bury our one-line error
                pipe = self.pipeline_class().from_pretrained(model, **kwargs)
        except (OSError, ValueError) as exc:
            if Path(model).exists():
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelLoadError(f"cannot load the pipeline folder {model!r}: {first}") from None
            raise ModelLoadError(
                f"cannot load the pipeline {model!r}: it is not a local folder and not in the Hugging Face cache "
                "(offline or unknown id); pass a folder saved with save_pretrained, or download it with network access"
            ) from None
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def missing_components(self, pipeline: Any) -> list[str]:
        return [c for c in self.required_components if getattr(pipeline, c, None) is None]

    def check(self, pipeline: Any) -> None:
        """Raise TypeError naming the missing components."""
        missing = self.missing_components(pipeline)
        if missing:
            raise TypeError(
                f"{type(pipeline).__name__} is not a {self.description or self.name} pipeline: missing {', '.join(missing)} "
                f"(needs {', '.join(self.required_components)}; load one with draftsdk.load_pipeline(path_or_id))"
            )

    def denoiser(self, pipeline: Any) -> Any:
        """The module LoRA is attached to and trained (``pipeline.unet`` / ``pipeline.transformer``).

        A diffusers model (a ``torch.nn.Module`` with ``config``, ``device`` and peft's adapter methods),
        hence typed ``Any``."""
        return getattr(pipeline, self.denoiser_name)

    def _modules(self, pipeline: Any, names: Any) -> list[torch.nn.Module]:
        return [m for c in names if isinstance(m := getattr(pipeline, c, None), torch.nn.Module)]

    def frozen_modules(self, pipeline: Any) -> list[torch.nn.Module]:
        """Every module with weights (denoiser, VAE, text encoders): frozen, moved and cast by the trainer."""
        return self._modules(pipeline, (*self.required_components, *self.optional_components))

    def text_encoders(self, pipeline: Any) -> list[torch.nn.Module]:
        """The text encoders (``text_encoder*`` components), which ``offload_text_encoders`` moves off the GPU."""
        names = [c for c in (*self.required_components, *self.optional_components) if c.startswith("text_encoder")]
        return self._modules(pipeline, names)

    def frozen_dtype(self, pipeline: Any, module: torch.nn.Module, dtype: torch.dtype) -> torch.dtype:
        """The dtype a frozen module is kept in when training in ``dtype`` (e.g. a VAE that needs fp32)."""
        return dtype

    # -- sampling -----------------------------------------------------------------------------------
    def vae_scale_factor(self, pipeline: Any) -> int:
        """Pixels per latent cell: 2 ** (VAE levels - 1), 8 for the published VAEs."""
        return 2 ** (len(pipeline.vae.config.block_out_channels) - 1)

    def default_size(self, pipeline: Any) -> tuple[int, int]:
        """(height, width) when the config does not say: the denoiser's ``sample_size`` in pixels."""
        size = int(self.denoiser(pipeline).config.sample_size) * self.vae_scale_factor(pipeline)
        return size, size

    def size_multiple(self, pipeline: Any) -> int:
        """Height and width must be multiples of this."""
        return self.vae_scale_factor(pipeline) * int(getattr(self.denoiser(pipeline).config, "patch_size", None) or 1)

    def latent_shape(self, pipeline: Any, batch: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the initial noise for ``batch`` images: (B, channels, H / f, W / f)."""
        f = self.vae_scale_factor(pipeline)
        return (batch, int(self.denoiser(pipeline).config.in_channels), height // f, width // f)

    def stepper(self, pipeline: Any, num_inference_steps: int, *, eta: float, height: int, width: int) -> Any:
        """The [Stepper][draftsdk.steppers.Stepper] for this checkpoint's schedule."""
        raise NotImplementedError

    def encode(
        self, pipeline: Any, prompts: Sequence[str], negative_prompts: Sequence[str] | None, *, guided: bool, height: int, width: int
    ) -> Conditioning:
        """Prompts (and negatives, when ``guided``) to conditioning, under no_grad (text encoders are frozen)."""
        raise NotImplementedError

    def uses_cfg(self, pipeline: Any, guidance_scale: float) -> bool:
        """Whether sampling runs a classifier-free-guidance batch (negative prompts) at this scale."""
        return guidance_scale > 1.0

    def predict(
        self, pipeline: Any, latents: torch.Tensor, timestep: torch.Tensor | float, cond: Conditioning, guidance_scale: float
    ) -> torch.Tensor:
        """The guided model output at ``timestep`` (the Sampler passes a 0-dim tensor; the family decides how guidance is applied)."""
        raise NotImplementedError

    def decode(self, pipeline: Any, latents: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
        """Latents to images ``(B, 3, height, width)`` in [0, 1] (the size unpacks packed latents)."""
        raise NotImplementedError

    # -- helpers shared by the built-in families ------------------------------------------------------
    @staticmethod
    def cfg_batch(latents: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The denoiser input of one call: ``[uncond, cond]`` stacked when guided (the order diffusers uses)."""
        if cond.uncond is None:
            return latents, cond.cond
        return torch.cat([latents, latents]), {k: torch.cat([cond.uncond[k], cond.cond[k]]) for k in cond.cond}

    @staticmethod
    def apply_cfg(out: torch.Tensor, cond: Conditioning, guidance_scale: float) -> torch.Tensor:
        """``uncond + g·(cond − uncond)`` for an output of ``cfg_batch``'s input (unchanged when not guided)."""
        if cond.uncond is None:
            return out
        uncond, text = out.chunk(2)
        return uncond + guidance_scale * (text - uncond)

    @staticmethod
    def vae_decode(pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
        """Decode VAE-space latents (already unscaled) to images in [0, 1], as the pipelines' postprocess does."""
        vae = pipeline.vae
        image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)


class PackedLatents(ModelFamily):
    """Base class of the transformer families whose latents are packed in 2x2 patches (FLUX.1, FLUX.2,
    Qwen-Image): sizes are multiples of twice the VAE factor, the default is the pipelines'
    ``default_sample_size`` of 128 latent pixels, ``_grid`` is the (h, w) grid of tokens, and the
    stepper is Euler over ``linspace(1, 1/T, T)`` shifted by [shift_mu][draftsdk.models.PackedLatents.shift_mu]
    of the image's token count (override it for another shift rule, as FLUX.2-Klein does)."""

    def default_size(self, pipeline: Any) -> tuple[int, int]:
        size = 128 * self.vae_scale_factor(pipeline)
        return size, size

    def size_multiple(self, pipeline: Any) -> int:
        return self.vae_scale_factor(pipeline) * 2

    #: whether a scheduler config with ``use_flow_sigmas`` gets the scheduler's own sigmas (FLUX.1, FLUX.2)
    honours_flow_sigmas: ClassVar[bool] = True

    def _grid(self, pipeline: Any, height: int, width: int) -> tuple[int, int]:
        f = self.vae_scale_factor(pipeline)
        return height // f // 2, width // f // 2

    def shift_mu(self, image_tokens: int, num_inference_steps: int, scheduler_config: dict[str, Any]) -> float:
        """The dynamic shift ``mu`` for ``image_tokens`` packed tokens (diffusers' ``calculate_shift``)."""
        return flow_shift_mu(image_tokens, scheduler_config)

    def stepper(self, pipeline: Any, num_inference_steps: int, *, eta: float, height: int, width: int) -> FlowMatchEulerStepper:
        """Euler over the pipelines' sigmas ``linspace(1, 1/T, T)``, shifted by ``shift_mu`` of the image's tokens."""
        config = {**pipeline.scheduler.config, "_class_name": type(pipeline.scheduler).__name__}
        h, w = self._grid(pipeline, height, width)
        T = num_inference_steps
        own = self.honours_flow_sigmas and config.get("use_flow_sigmas")
        sigmas = None if own else np.linspace(1.0, 1 / T, T).tolist()
        return FlowMatchEulerStepper(config, T, mu=self.shift_mu(h * w, T, config), sigmas=sigmas)
