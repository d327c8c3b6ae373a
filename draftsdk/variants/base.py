"""What a variant is: where the gradient flows and which images are scored, as a small strategy object.

A reward-backpropagation variant implements one method, ``rollout(ctx, prompts, noise)``, with the
[Sampler][draftsdk.sampling.Sampler]'s blocks (``denoise``, ``model_output``, ``step``,
``add_noise``, ``decode``); the base class scores the images, adds the KL guard and calls
``ctx.backward``. A variant that trains differently (DDPO) overrides ``train_step`` instead. Options
are a pydantic model, filled from the ``TrainConfig`` fields of the same name and from
``TrainConfig.variant_options``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..models import Conditioning
    from ..rewards import RewardOutput, WeightedSum
    from ..sampling import Sampler

__all__ = ["NoOptions", "Rollout", "StepContext", "StepResult", "Variant", "RewardBackprop", "batch_diversity", "find_fault"]


def batch_diversity(images: torch.Tensor) -> float | None:
    """Mean pairwise RMS distance between the images of a batch (0 = all identical: collapse).

    Images are downsampled to at most 32x32 first, so the measure is cheap and ignores fine noise.
    """
    import math

    if images.shape[0] < 2:
        return None
    x = images.detach().float()
    if max(x.shape[-2:]) > 32:
        x = torch.nn.functional.adaptive_avg_pool2d(x, 32)
    flat = x.flatten(1)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    n = flat.shape[0]
    return float(dist.sum() / (n * (n - 1)))


class NoOptions(BaseModel):
    """A variant without options."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Rollout:
    """Images with the graph a variant asked for.

    Attributes:
        images: (N, 3, H, W) in [0, 1]; N may exceed the batch (DRaFT-LV scores copies).
        prompts: one prompt per image.
        grad_steps: how many sampling steps carried gradient (K).
        kl: the KL-guard penalty of the steps with gradient, or None.
        info: extra metrics (numbers) to log.
    """

    images: torch.Tensor
    prompts: list[str]
    grad_steps: int
    kl: torch.Tensor | None = None
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class StepResult:
    """What one ``train_step`` reports: metrics (floats), whether the loss was finite, images scored,
    and, when not finite, where the NaN/inf appeared (``fault``, one line for the stop message)."""

    metrics: dict[str, Any]
    finite: bool
    queries: int
    fault: str | None = None


def find_fault(scores: RewardOutput) -> str | None:
    """Where a NaN/inf entered a rollout scored by [StepContext.score][draftsdk.variants.StepContext.score]:
    the sampled images (a diverged adapter) or reward terms; None when every value is finite."""
    if scores.images_nonfinite:
        return "the sampled images were NaN/inf (the adapter or the sampler diverged)"
    if bool(torch.isfinite(scores.total).all()):  # a NaN/inf term always reaches the weighted total
        return None
    bad = scores.nonfinite_terms()
    return f"the reward returned NaN/inf ({', '.join(repr(b) for b in bad) or 'total'}) on finite images"


class StepContext:
    """What the trainer lends a variant for one rollout: the sampler, random streams, the objective.

    Attributes:
        sampler: the [Sampler][draftsdk.sampling.Sampler] (family + stepper).
        rng: the prompt/K stream of this process (``random.Random``).
        noise_gen: the noise stream of this process (``torch.Generator``).
        objective: the [WeightedSum][draftsdk.WeightedSum] being maximised.
        kl_weight: the KL guard's weight (0 = off).
        negative_prompt: the config's negative prompt, or None.
        accumulation: rollouts per optimizer update (``backward`` divides by it).
        rank: this process's index in ``gather``'s result.
    """

    def __init__(
        self,
        sampler: Sampler,
        *,
        rng: random.Random,
        noise_gen: torch.Generator,
        objective: WeightedSum,
        kl_weight: float = 0.0,
        negative_prompt: str | None = None,
        accumulation: int = 1,
        checkpointing: str = "auto",
        checkpoint_vae: bool = True,
        autocast: Any = contextlib.nullcontext,
        scale_loss: Any = None,
        optimizer_step: Any = None,
        gather: Any = None,
        rank: int = 0,
    ) -> None:
        self.sampler = sampler
        self.rng = rng
        self.noise_gen = noise_gen
        self.objective = objective
        self.kl_weight = kl_weight
        self.negative_prompt = negative_prompt
        self.accumulation = accumulation
        self.checkpointing = checkpointing
        self.checkpoint_vae = checkpoint_vae
        self._autocast = autocast
        self._scale_loss = scale_loss or (lambda loss: loss)
        self._optimizer_step = optimizer_step
        self._gather = gather or (lambda obj: [obj])
        self.rank = rank
        self.kl_terms: list[torch.Tensor] = []

    def optimizer_step(self) -> bool:
        """Apply the gradients accumulated so far now, as the trainer does after ``train_step`` (averaged
        across processes, clipped, NaN-guarded), and clear them; True when the update was applied.

        For variants that make several updates per rollout (DDPO's minibatches). Every process must
        call it the same number of times. The trainer still applies the last gradients itself.
        """
        if self._optimizer_step is None:
            raise RuntimeError("this StepContext has no optimizer (built outside a Trainer)")
        return bool(self._optimizer_step())

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (``[obj]`` in one process)."""
        return list(self._gather(obj))

    def autocast(self) -> Any:
        """The trainer's mixed-precision context for the sampling part."""
        return self._autocast()

    def encode(self, prompts: Sequence[str]) -> Conditioning:
        """The (cached) conditioning of ``prompts`` with the config's negative prompt."""
        negatives = [self.negative_prompt] * len(prompts) if self.negative_prompt else None
        return self.sampler.encode(prompts, negatives)

    def use_checkpointing(self, grad_steps: int) -> None:
        """Set the sampler's checkpointing for a rollout with ``grad_steps`` steps with gradient."""
        mode = self.checkpointing
        denoiser = mode == "always" or (mode == "auto" and grad_steps > 1)
        self.sampler.checkpoint_denoiser = denoiser
        self.sampler.checkpoint_vae = self.checkpoint_vae  # per block: the decoder's activations are the largest

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The frozen base model (LoRA off) inside the block."""
        denoiser = self.sampler.denoiser
        denoiser.disable_adapters()
        try:
            yield
        finally:
            denoiser.enable_adapters()

    def guard(self, index: int, latents: torch.Tensor, out: torch.Tensor, cond: Conditioning) -> None:
        """Record the KL guard ``||out - out_base||²`` for a step with gradient (no-op when kl_weight is 0)."""
        if self.kl_weight <= 0:
            return
        with self.adapters_disabled():
            reference = self.sampler.model_output(latents.detach(), index, cond, grad=False)
        self.kl_terms.append(((out.float() - reference.float()) ** 2).mean())

    def guard_hook(self, cond: Conditioning) -> Any:
        """``on_grad_step`` callback for ``Sampler.denoise`` that records the guard."""
        return lambda index, latents, out: self.guard(index, latents, out, cond)

    def take_kl(self) -> torch.Tensor | None:
        """The mean guard penalty recorded since the last call (None when nothing was recorded)."""
        terms, self.kl_terms = self.kl_terms, []
        return torch.stack(terms).mean() if terms else None

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> RewardOutput:
        """Evaluate the objective in float32, outside the sampler's autocast (a reward controls its own precision).

        Non-finite images (a diverged adapter) are not shown to the rewards: every term scores NaN,
        so the trainer skips the update with the right diagnosis."""
        if not bool(torch.isfinite(images).all()):
            from ..rewards import RewardOutput

            nan = images.new_full((images.shape[0],), float("nan"), dtype=torch.float32)
            return RewardOutput(nan, {term.label: nan for term in self.objective.terms}, images_nonfinite=True)
        return self.objective.evaluate(images.float(), list(prompts))

    def backward(self, loss: torch.Tensor) -> bool:
        """Backpropagate ``loss / accumulation`` (through the fp16 GradScaler when one is on); False if not finite."""
        if not bool(torch.isfinite(loss)):
            return False
        self._scale_loss(loss / self.accumulation).backward()
        return True


class Variant:
    """Base class of a training variant. Register subclasses with the ``register_variants`` hook.

    Attributes:
        name: the key used in ``TrainConfig.variant``.
        needs_gradient: whether the objective must be differentiable (False for policy gradient).
        Options: the pydantic model of the variant's settings.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_gradient: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, num_steps: int) -> None:
        self.options = options
        self.num_steps = num_steps
        self.check(num_steps)

    def check(self, num_steps: int) -> None:
        """Raise ValueError (starting with the field name) when the options do not fit T = ``num_steps``."""

    def grad_steps_range(self) -> tuple[int, int]:
        """(min, max) number of sampling steps that carry gradient."""
        return (1, 1)

    def train_step(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> StepResult:
        """One rollout and its backward pass (the optimizer step is the trainer's)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints (plain containers and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class RewardBackprop(Variant):
    """A variant that backpropagates the reward through the images its ``rollout`` returns."""

    def rollout(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> Rollout:
        """Generate images for ``prompts`` from ``noise`` with the graph this variant keeps."""
        raise NotImplementedError

    def train_step(self, ctx: StepContext, prompts: Sequence[str], noise: torch.Tensor) -> StepResult:
        with ctx.autocast():
            rollout = self.rollout(ctx, prompts, noise)
        scores = ctx.score(rollout.images, rollout.prompts)
        loss = -scores.total.float().mean()
        if rollout.kl is not None:
            loss = loss + ctx.kl_weight * rollout.kl
        fault = find_fault(scores)
        finite = fault is None and ctx.backward(loss)
        metrics: dict[str, Any] = {
            "loss": float(loss.detach()),
            **scores.summary(),
            "diversity": batch_diversity(rollout.images[: len(prompts)]),
            "grad_steps": rollout.grad_steps,
            **rollout.info,
        }
        if rollout.kl is not None:
            metrics["kl"] = float(rollout.kl.detach())
        return StepResult(metrics, finite, rollout.images.shape[0], fault)
