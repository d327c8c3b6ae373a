"""The DRaFT trainer: the loop that fine-tunes a LoRA adapter of a diffusion model on a reward.

It knows neither the model family nor the variant. The [model family][draftsdk.models] loads,
conditions, denoises and decodes; the [variant][draftsdk.variants] makes the rollout (where the
gradient flows) and its backward pass; the trainer all-reduces the gradients across processes,
clips them, steps AdamW, and around that writes metrics, evaluations and checkpoints.

Examples:
    >>> import draftsdk
    >>> from draftsdk.testing import tiny_pipeline
    >>> cfg = draftsdk.TrainConfig(variant="draft-k", k=2, steps=2, batch_size=2, num_inference_steps=4,
    ...                            output_dir=__import__("tempfile").mkdtemp() + "/run", progress=False)
    >>> result = draftsdk.Trainer(tiny_pipeline(), "brightness", cfg).fit(["a cat", "a dog"])
    >>> result.steps_done, result.lora_path.name
    (2, 'lora.safetensors')
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import resource
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import lora as lora_lib
from .atomic import write_text_atomic
from .checkpoint import RunLock, check_run_dir, clear_run, is_run_dir, latest_checkpoint, prepare_run_dir, resume_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .distributed import DistContext
from .errors import DraftError
from .evaluation import Evaluator
from .metrics import MetricsLog, merge_metrics
from .models import family_for_model, get_family
from .prompts import resolve_prompts
from .registry import objective_record
from .rewards import RewardOutput, WeightedSum, combine
from .sampling import Sampler, check_pipeline, load_pipeline
from .variants.base import Rollout, StepContext, batch_diversity

__all__ = ["Trainer", "TrainResult", "batch_diversity", "rank_streams"]

ZERO_GRAD_WARN_AFTER = 3  # updates in a row with an exactly zero LoRA gradient before the warning


@dataclass
class TrainResult:
    """What [Trainer.fit][draftsdk.Trainer.fit] returns.

    Attributes:
        output_dir: the run directory.
        lora_path: the final adapter (diffusers-format safetensors).
        history: one dict per update (the lines of ``metrics.jsonl`` with ``kind == "train"``).
        evals: the evaluation records (``kind == "eval"``).
        steps_done: updates completed in total (including those before a resume).
        skipped_steps: updates skipped because the reward or gradient was not finite.
    """

    output_dir: Path
    lora_path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0
    skipped_steps: int = 0


def rank_streams(seed: int, rank: int, offset: int = 0) -> tuple[random.Random, torch.Generator]:
    """The prompt/K stream and the noise stream of process ``rank`` (different on every rank).

    ``offset`` (the step) gives fresh streams when a run resumes with another number of processes.
    """
    key = seed * 1000 + rank + 7919 * offset
    return random.Random(key), torch.Generator().manual_seed(key)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def parse_device(name: str) -> torch.device:
    """``torch.device(name)`` with ``'auto'`` (CUDA when visible) and a one-line error for a typo."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(name)
    except RuntimeError:
        raise DraftError(f"device={name!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None


def _resolve_device(name: str, dist: DistContext) -> torch.device:
    device = parse_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DraftError("device='cuda' but no CUDA GPU is visible; use device='cpu' or 'auto'")
        if device.index is None:  # set_device needs an index: this process's GPU
            device = torch.device("cuda", dist.local_rank if dist.active else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "cosine":
            progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _memory_hint(config: TrainConfig, k: int, precision: str) -> str:
    resolution = f"{config.height or 'default'}x{config.width or 'default'}" if config.height or config.width else "the model's default"
    return (
        "CUDA out of memory. Knobs that reduce memory, with their current values: "
        f"batch_size={config.batch_size} (lower it and raise grad_accum_steps={config.grad_accum_steps}), "
        f"gradient steps K={k} (variant={config.variant}; draft-lv/draft-k with small k need least), "
        f"checkpointing={config.checkpointing!r} ('always' checkpoints every denoiser call), "
        f"checkpoint_vae={config.checkpoint_vae}, checkpoint_blocks={config.checkpoint_blocks} (True checkpoints each "
        f"block inside the denoiser), offload_text_encoders={config.offload_text_encoders}, resolution={resolution}, "
        f"mixed_precision={precision!r} ('bf16' halves the frozen weights)"
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """SIGTERM (what torchrun and job schedulers send) stops a run like Ctrl-C: cleanly, with a message."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build_variant(config: TrainConfig, num_steps: int) -> Any:
    try:
        return config.build_variant(num_steps)
    except ValueError as exc:
        raise ConfigError(f"invalid config: {exc}") from None


class Trainer:
    """Fine-tune a LoRA adapter of ``pipeline``'s denoiser to maximise ``objective``.

    Args:
        pipeline: a pipeline of a registered model family (fine-tuned in place: after ``fit`` it
            generates with the trained adapter), or a local folder / hub id to load one.
        objective: a reward name, a Reward, a ``{name_or_reward: weight}`` mapping or a
            [WeightedSum][draftsdk.WeightedSum].
        config: a [TrainConfig][draftsdk.TrainConfig]; keyword ``overrides`` replace its fields.
        eval_rewards: rewards scored on the evaluation images and logged as ``eval/<name>`` but not
            optimised (any form ``objective`` takes; default: ``config.eval_rewards``).

    Examples:
        >>> trainer = Trainer("path/to/sd-1-5", {"aesthetic": 1.0}, TrainConfig(steps=500))  # doctest: +SKIP
        >>> trainer.fit(prompt_set="simple-animals")  # doctest: +SKIP
    """

    def __init__(
        self, pipeline: Any, objective: Any, config: TrainConfig | None = None, *, eval_rewards: Any = None, **overrides: Any
    ) -> None:
        config = config or TrainConfig()
        if overrides:
            config = TrainConfig.build({**config.model_dump(), **overrides})
        self.config = config
        self.dist = DistContext.from_env("cuda" if "cuda" in config.device or (config.device == "auto" and torch.cuda.is_available()) else "cpu",
                                         timeout_s=config.collective_timeout_s)
        self.device = _resolve_device(config.device, self.dist)
        check_run_dir(Path(config.output_dir), overwrite=config.overwrite, resume=config.resume)  # before any loading
        self.model_name = config.model
        if isinstance(pipeline, (str, os.PathLike)):
            self.model_name = str(pipeline)
            family = get_family(config.family) if config.family else family_for_model(self.model_name)
            _build_variant(config, config.num_inference_steps or family.default_steps)  # a bad option fails before loading
            pipeline = load_pipeline(self.model_name, device=self.device, family=family.name)
        self.family = check_pipeline(pipeline, config.family)
        self.pipeline = pipeline
        self.objective: WeightedSum = objective if isinstance(objective, WeightedSum) else combine(objective)
        watched = eval_rewards if eval_rewards is not None else config.eval_rewards
        self.watched = None if watched is None else watched if isinstance(watched, WeightedSum) else combine(watched)
        cfg = config
        self.sampler = Sampler(
            pipeline,
            family=self.family,
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
            eta=cfg.eta,
            height=cfg.height,
            width=cfg.width,
        )
        if cfg.compile:
            self.sampler.enable_compile(**cfg.compile_options)
        self.variant = _build_variant(cfg, self.sampler.num_steps)
        if self.variant.needs_gradient and not self.objective.differentiable:
            bad = [t.label for t in self.objective.terms if not t.reward.differentiable]
            raise DraftError(
                f"reward term(s) {', '.join(bad)} are not differentiable, so variant={cfg.variant!r} cannot "
                "backpropagate through them; use variant='ddpo' (policy gradient) for non-differentiable rewards"
            )
        if getattr(self.variant, "needs_stochastic_sampler", False) and not self.sampler.stepper.stochastic:
            raise DraftError(
                f"variant {cfg.variant!r} needs a stochastic sampler with step log-probabilities, which the "
                f"{self.family.name} family's {type(self.sampler.stepper).__name__} does not provide; use a DRaFT variant"
            )
        self._prepare_model()

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """The resolved ``mixed_precision``: ``auto`` is bf16 on CUDA and no on the CPU."""
        mode = self.config.mixed_precision
        if mode == "auto":
            return "bf16" if self.device.type == "cuda" else "no"
        return mode

    @property
    def compute_dtype(self) -> torch.dtype:
        return {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def _prepare_model(self) -> None:
        cfg, pipe = self.config, self.pipeline
        if self.device.type == "cuda" and cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        for module in self.family.frozen_modules(pipe):
            module.requires_grad_(False)
            dtype = self.family.frozen_dtype(pipe, module, self.compute_dtype)
            if module.dtype != dtype:
                module.to(dtype=dtype)
            module.to(self.device)
            module.eval()
        self.denoiser = self.family.denoiser(pipe)
        if lora_lib.ADAPTER_NAME in getattr(self.denoiser, "peft_config", {}):
            self.params = lora_lib.lora_parameters(self.denoiser)
        else:
            targets = cfg.lora_targets or list(self.family.default_lora_targets)
            with torch.random.fork_rng(devices=[]):  # the initial adapter depends on the seed only
                torch.manual_seed(cfg.seed)
                self.params = lora_lib.add_lora(self.denoiser, cfg.lora_rank, cfg.lora_alpha, targets)
        for p in self.params:  # LoRA weights train in fp32 even when the frozen weights are half precision
            p.data = p.data.float()
        self.denoiser.set_adapters([lora_lib.ADAPTER_NAME])
        if cfg.checkpoint_blocks:
            self.denoiser.enable_gradient_checkpointing()  # active only inside calls with gradient
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16" and self.device.type == "cuda")
        self.rng, self.noise_gen = rank_streams(cfg.seed, self.dist.rank)
        self.queries, self.skipped, self._last_grad_steps = 0, 0, self.variant.grad_steps_range()[1]
        self.evaluator = self._evaluator(cfg.eval_seeds)

    def _autocast(self) -> Any:
        if self.precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def context(self) -> StepContext:
        """What the variant gets for one rollout (this process's streams, the sampler, the objective)."""
        cfg = self.config
        return StepContext(
            self.sampler,
            rng=self.rng,
            noise_gen=self.noise_gen,
            objective=self.objective,
            kl_weight=cfg.kl_weight,
            negative_prompt=cfg.negative_prompt,
            accumulation=cfg.grad_accum_steps,
            checkpointing=cfg.checkpointing,
            checkpoint_vae=cfg.checkpoint_vae,
            autocast=self._autocast,
            scale_loss=self.scaler.scale,
            optimizer_step=self._inner_step,
            gather=self.dist.gather,
            rank=self.dist.rank,
        )

    # -- rollouts -------------------------------------------------------------------------------
    def draw_batch(self, prompts: Sequence[str]) -> tuple[list[str], torch.Tensor]:
        """This process's next training prompts and initial noise (from its own seeded streams)."""
        batch = self.rng.choices(list(prompts), k=self.config.batch_size)
        return batch, self.sampler.initial_noise(len(batch), self.noise_gen)

    def rollout(self, prompts: Sequence[str], noise: torch.Tensor | None = None) -> Rollout:
        """The variant's images for ``prompts`` (from ``noise``, or fresh noise), with its graph.

        Only for variants that backpropagate a reward (``RewardBackprop``); DRaFT-LV returns
        ``(n + 1) * B`` images.
        """
        if not hasattr(self.variant, "rollout"):
            raise DraftError(f"variant {self.config.variant!r} makes no differentiable rollout")
        if noise is None:
            noise = self.sampler.initial_noise(len(prompts), self.noise_gen)
        with self._autocast():
            return self.variant.rollout(self.context(), prompts, noise)

    def _encode_then_offload(self, prompts: Sequence[str], chunk: int = 32) -> None:
        """Fill the sampler's prompt cache for every prompt, then move the text encoders to the CPU."""
        unique = list(dict.fromkeys(prompts))
        negatives = [self.config.negative_prompt] * chunk if self.config.negative_prompt else None
        with self._autocast():
            for i in range(0, len(unique), chunk):
                part = unique[i : i + chunk]
                self.sampler.encode(part, negatives[: len(part)] if negatives else None)
        for module in self.family.text_encoders(self.pipeline):
            module.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, prompts: Sequence[str], seeds: Sequence[int] | None = None) -> tuple[torch.Tensor, RewardOutput]:
        """Sample every prompt with every seed (no gradient) and score them; rows are prompts."""
        return (self.evaluator if seeds is None else self._evaluator(seeds)).evaluate(prompts)

    def _evaluator(self, seeds: Sequence[int]) -> Evaluator:
        cfg = self.config
        return Evaluator(self.sampler, self.objective, seeds, negative_prompt=cfg.negative_prompt, autocast=self._autocast,
                         watched=self.watched)

    def _run_eval(self, step: int, prompts: Sequence[str]) -> dict[str, Any]:
        grid = self.run_dir / "samples" / f"step-{step:06d}.png" if self.dist.is_main else None
        return self.evaluator.record(step, prompts, grid)

    # -- checkpoints ------------------------------------------------------------------------------
    def _random_state(self) -> dict[str, Any]:
        """This process's random streams: prompts/K, initial noise, torch's global generator."""
        version, internal, gauss = self.rng.getstate()
        return {"python": [version, list(internal), gauss], "noise": self.noise_gen.get_state(), "torch": torch.get_rng_state()}

    def _state(self, step: int, random_states: list[Any]) -> dict[str, Any]:
        return {
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "random_states": random_states,  # one per rank: each resumes its own streams
            "counters": {"queries": self.queries, "skipped": self.skipped, "world_size": self.dist.world_size},
            "variant": self.variant.state_dict(),
        }

    def _save_lora(self, path: Path, step: int) -> Path:
        return lora_lib.save_lora(
            path,
            self.denoiser,
            prefix=self.family.denoiser_name,
            base_model=self.model_name,
            reward_spec=self.objective.spec(),
            train_config=self.config.to_json_dict(),
            extra={"step": step, "family": self.family.name},
        )

    def save_checkpoint(self, step: int) -> Path | None:
        """Write checkpoint ``step`` (rank 0 only; other ranks wait)."""
        path = None
        random_states = self.dist.gather(self._random_state())  # every rank takes part
        if self.dist.is_main:
            meta = {"step": step, "config": self.config.to_json_dict(), "reward": self.objective.spec(), "model": self.model_name,
                    "family": self.family.name, "identity": self._run_identity(), "objective": objective_record(self.objective),
                    "eval_objective": objective_record(self.watched) if self.watched is not None else None}
            path = save_checkpoint(
                self.run_dir, step, lambda p: self._save_lora(p, step), self._state(step, random_states), meta, self.config.keep_checkpoints
            )
        self.dist.barrier()
        return path

    def _run_identity(self) -> dict[str, Any]:
        """The settings that define a run: a resume must match them all (compared in their JSON form)."""
        cfg = self.config
        return json.loads(json.dumps({
            "model": self.model_name,
            "family": self.family.name,
            "lora_rank": cfg.lora_rank,
            "lora_alpha": cfg.lora_alpha,
            "lora_targets": sorted(cfg.lora_targets or self.family.default_lora_targets),
            "variant": cfg.variant,
            "variant options": cfg.variant_option_values(),
            "reward": self.objective.spec(),
        }, default=str))

    def _check_resume(self, checkpoint: Path, meta: dict[str, Any]) -> None:
        saved = meta.get("identity")
        if saved is None:  # a checkpoint written before identities were recorded: the reward at least
            saved = {"reward": json.loads(json.dumps(meta.get("reward"), default=str))}
        mine = self._run_identity()
        differ = [k for k in saved if k in mine and saved[k] != mine[k] and not (k == "model" and None in (saved[k], mine[k]))]
        if differ:
            parts = "; ".join(f"{k}: {json.dumps(saved[k])} there, {json.dumps(mine[k])} here" for k in differ)
            raise DraftError(
                f"cannot resume {str(checkpoint)!r}: the run was started with other settings ({parts}); "
                "use the same settings, or start a new run in another output_dir"
            )

    def _restore(self, checkpoint: Path, state: dict[str, Any], meta: dict[str, Any]) -> int:
        self._check_resume(checkpoint, meta)
        lora_lib.restore_lora(self.denoiser, checkpoint / "lora.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self._apply_optimizer_settings()
        self.scaler.load_state_dict(state["scaler"])
        saved_world = state["counters"].get("world_size", 1)
        if saved_world == self.dist.world_size:
            mine = state["random_states"][self.dist.rank]
            version, internal, gauss = mine["python"]
            self.rng.setstate((version, tuple(internal), gauss))
            self.noise_gen.set_state(mine["noise"])
            torch.set_rng_state(mine["torch"])
        else:  # another process count: fresh per-rank streams, offset by the step so they do not repeat
            self.rng, self.noise_gen = rank_streams(self.config.seed, self.dist.rank, offset=int(state["step"]))
            torch.set_rng_state(state["random_states"][0]["torch"])
        self.variant.load_state_dict(state.get("variant") or {})
        self.queries = int(state["counters"]["queries"])
        self.skipped = int(state["counters"]["skipped"])
        return int(state["step"])

    def _apply_optimizer_settings(self) -> None:
        """Make the (possibly resumed) optimizer follow this run's config: a resume may change lr & co."""
        cfg = self.config
        self.lr_scheduler.base_lrs = [cfg.learning_rate for _ in self.optimizer.param_groups]
        factor = _lr_lambda(cfg)(self.lr_scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group.update(lr=cfg.learning_rate * factor, initial_lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                         betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
        self.lr_scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    # -- the loop ---------------------------------------------------------------------------------
    def _prompts(self, prompts: Any, prompt_file: Any, prompt_set: Any) -> list[str]:
        cfg = self.config
        if prompts is None and prompt_file is None and prompt_set is None:
            prompts, prompt_file, prompt_set = cfg.prompts, cfg.prompt_file, cfg.prompt_set
        if isinstance(prompts, str):
            raise DraftError("prompts must be a list of strings; for a file pass prompt_file=...")
        return resolve_prompts(prompts, prompt_file, prompt_set)

    def _optimizer_step(self, finite: bool) -> tuple[float, bool, bool]:
        """Average the gradients across processes, clip, and step (or skip and clear them); returns
        (grad_norm, skipped for NaN/inf, skipped by the fp16 loss scaler)."""
        cfg = self.config
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.dist.all_reduce_mean(grads)
        for p, g in zip(self.params, grads):
            p.grad = g
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm or float("inf")))
        nonfinite = self.dist.any(not finite, self.device)  # grad_norm is already the same on every rank
        # fp16: an inf gradient from finite losses is the GradScaler's calibration (it lowers the scale), not a fault
        scaler_skip = not nonfinite and not math.isfinite(grad_norm) and self.scaler.is_enabled()
        nonfinite = nonfinite or not (scaler_skip or math.isfinite(grad_norm))
        if nonfinite or scaler_skip:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        return grad_norm, nonfinite, scaler_skip

    def _inner_step(self) -> bool:
        """An optimizer step inside ``train_step`` (StepContext.optimizer_step); True when applied."""
        _, nonfinite, scaler_skip = self._optimizer_step(True)
        self.optimizer.zero_grad(set_to_none=True)  # the next minibatch starts from zero
        return not (nonfinite or scaler_skip)

    def update(self, prompts: Sequence[str]) -> dict[str, Any]:
        """One optimizer update: ``grad_accum_steps`` rollouts from ``prompts``, gradients averaged
        across processes, clipped, applied (or skipped when not finite). Returns the step's metrics."""
        cfg = self.config
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        parts: list[dict[str, Any]] = []
        faults: list[str] = []
        finite = True
        ctx = self.context()
        for _ in range(cfg.grad_accum_steps):
            batch, noise = self.draw_batch(prompts)
            result = self.variant.train_step(ctx, batch, noise)
            self._last_grad_steps = result.metrics["grad_steps"]
            self.queries += result.queries * self.dist.world_size
            parts.append(result.metrics)
            finite = finite and result.finite
            if result.fault:
                faults.append(result.fault)
        grad_norm, nonfinite, scaler_skip = self._optimizer_step(finite)
        skip = nonfinite or scaler_skip
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        record: dict[str, Any] = self.dist.mean_dict(merge_metrics(parts), self.device)
        record.update(
            kind="train",
            grad_norm=grad_norm,
            lr=lr,
            step_time=time.perf_counter() - t0,
            peak_mem_gb=_peak_memory_gb(self.device),
            queries=self.queries,
            skipped=skip,
            skipped_total=self.skipped,
            nonfinite=nonfinite,
            scaler_skipped=scaler_skip,
        )
        if nonfinite:
            record["fault"] = (faults[0] if faults else "the loss was NaN/inf" if not finite
                               else "the LoRA gradient was NaN/inf" if not math.isfinite(grad_norm)
                               else "another process had NaN/inf")
        return record

    def fit(
        self,
        prompts: Sequence[str] | None = None,
        *,
        prompt_file: str | Path | None = None,
        prompt_set: str | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> TrainResult:
        """Train for ``config.steps`` updates (continuing the latest checkpoint when ``resume``).

        Prompts come from the argument, else from the config (``prompts``, ``prompt_file`` or
        ``prompt_set``). ``on_step(record)`` is called after every update with its metrics.
        """
        cfg = self.config
        train_prompts = self._prompts(prompts, prompt_file, prompt_set)
        eval_prompts = cfg.eval_prompts or train_prompts[:4]
        self.run_dir = Path(cfg.output_dir)
        lock = RunLock(self.run_dir)
        if self.dist.is_main:
            existing = is_run_dir(self.run_dir)
            prepare_run_dir(self.run_dir, overwrite=cfg.overwrite, resume=cfg.resume)
            lock.acquire()  # a second run into this folder fails now, naming this process
            if cfg.overwrite and existing:
                clear_run(self.run_dir)
        self.dist.barrier()
        try:
            with _sigterm_as_interrupt():
                return self._fit(train_prompts, eval_prompts, on_step)
        finally:
            lock.release()

    def _fit(self, train_prompts: list[str], eval_prompts: list[str], on_step: Callable[[dict[str, Any]], None] | None) -> TrainResult:
        cfg = self.config
        log = MetricsLog(self.run_dir, enabled=self.dist.is_main, tensorboard=cfg.tensorboard)
        start = 0
        found = resume_checkpoint(self.run_dir) if cfg.resume else None
        if found is not None:
            start = self._restore(*found)
            log.trim(start)
        elif cfg.resume and self.dist.is_main:
            fresh = not (self.run_dir / "metrics.jsonl").exists()
            print(f"draftsdk: no checkpoint in {str(self.run_dir)!r}; starting from step 0"
                  + ("" if fresh else " (the metrics of the interrupted start are dropped)"), file=sys.stderr)
            log.trim(-1)
        if self.dist.is_main:
            write_text_atomic(self.run_dir / "config.json", json.dumps(cfg.to_json_dict(), indent=2))
        if cfg.offload_text_encoders:
            self._encode_then_offload([*train_prompts, *eval_prompts])
        result = TrainResult(output_dir=self.run_dir, lora_path=None, steps_done=start)
        if start == 0:
            record = self._run_eval(0, eval_prompts)
            result.evals.append(record)
            log.write(record)

        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start, desc=f"DRaFT {cfg.variant}", unit="step", dynamic_ncols=True)
        first_norms: list[float]
        in_a_row, applied, first_norms = 0, 0, []
        try:
            for step in range(start + 1, cfg.steps + 1):
                record = {"kind": "train", "step": step, **self.update(train_prompts)}
                in_a_row = in_a_row + 1 if record["nonfinite"] else 0
                applied += not record["skipped"]
                if len(first_norms) < ZERO_GRAD_WARN_AFTER and not record["skipped"]:
                    first_norms.append(record["grad_norm"])
                if len(first_norms) == ZERO_GRAD_WARN_AFTER and not any(first_norms) and self.dist.is_main:
                    first_norms.append(-1.0)  # warn once
                    warnings.warn(
                        f"the LoRA gradient was exactly zero in the first {ZERO_GRAD_WARN_AFTER} updates: the objective does "
                        "not depend on the images (a constant reward, all weights 0, or no path from the reward to the "
                        "adapter); the run is learning nothing",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                result.history.append(record)
                log.write(record)
                if on_step is not None:
                    on_step(record)
                if bar is not None:
                    bar.set_postfix(reward=f"{record.get('reward/mean', math.nan):.4g}", s_per_step=f"{record['step_time']:.2f}")
                    bar.update(1)
                if in_a_row >= cfg.max_nonfinite_steps:
                    last = latest_checkpoint(self.run_dir)
                    raise DraftError(
                        f"stopped at step {step}: {in_a_row} updates in a row were skipped for NaN/inf, the last because "
                        f"{record['fault']}; last good checkpoint: {str(last) if last else 'none'}. Try a lower learning_rate "
                        f"({cfg.learning_rate}), max_grad_norm, or mixed_precision='no'"
                    )
                result.steps_done = step
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    evaluation = self._run_eval(step, eval_prompts)
                    result.evals.append(evaluation)
                    log.write(evaluation)
                if (step % cfg.save_every == 0 or step == cfg.steps) and not record["skipped"]:
                    self.save_checkpoint(step)
        except torch.OutOfMemoryError as exc:
            raise DraftError(_memory_hint(cfg, self._last_grad_steps, self.precision)) from exc
        finally:
            if bar is not None:
                bar.close()
            log.close()
        result.skipped_steps = self.skipped
        if self.dist.is_main:
            result.lora_path = self._save_lora(self.run_dir / "lora.safetensors", result.steps_done)
        self.dist.barrier()
        if cfg.steps > start and applied == 0:
            raise DraftError(
                f"no update was applied in {cfg.steps - start} steps (every one was skipped for a NaN/inf reward or "
                f"gradient); the adapter in {str(self.run_dir)!r} is unchanged. Check the reward, or lower learning_rate"
            )
        return result
