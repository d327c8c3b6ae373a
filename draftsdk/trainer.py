"""The DRaFT trainer: LoRA fine-tuning of a Stable Diffusion UNet by backpropagating a reward.

Every variant is the same rollout with the stop-gradient in a different place:

| variant | gradient flows through |
| --- | --- |
| ``draft`` | all T steps (each UNet call checkpointed: memory flat in T) |
| ``draft-k`` | the last K steps; the first T-K run under ``torch.no_grad()`` |
| ``draft-random-k`` | the last K steps, K drawn once per rollout from ``k_range`` |
| ``draft-lv`` | the last step, plus ``lv_copies`` re-noised copies of the final latent (DRaFT-LV) |
| ``refl`` | one step at a random point among the last m, with a one-step x0 prediction |
| ``ddpo`` | none: PPO on the DDIM log-probabilities (a baseline for non-differentiable rewards) |

The loss is ``-objective(images, prompts).mean()`` for any reward, so every plugin works unchanged.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import lora as lora_lib
from .checkpoint import check_run_dir, latest_checkpoint, load_checkpoint_state, prepare_run_dir, save_checkpoint, write_text_atomic
from .config import TrainConfig
from .distributed import DistContext
from .errors import DraftError
from .images import make_grid, save_png
from .prompts import resolve_prompts
from .rewards import RewardOutput, WeightedSum, combine
from .sampling import Sampler, check_pipeline, load_pipeline

__all__ = ["Trainer", "TrainResult", "batch_diversity", "rank_streams"]


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


def batch_diversity(images: torch.Tensor) -> float | None:
    """Mean pairwise RMS distance between the images of a batch (0 = all identical: collapse).

    Images are downsampled to at most 32x32 first, so the measure is cheap and ignores fine noise.
    """
    if images.shape[0] < 2:
        return None
    x = images.detach().float()
    if max(x.shape[-2:]) > 32:
        x = torch.nn.functional.adaptive_avg_pool2d(x, 32)
    flat = x.flatten(1)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    n = flat.shape[0]
    return float(dist.sum() / (n * (n - 1)))


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


def _resolve_device(name: str, dist: DistContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DraftError("device='cuda' but no CUDA GPU is visible; use device='cpu' or 'auto'")
        if dist.active and device.index is None:
            device = torch.device("cuda", dist.local_rank)
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


def _memory_hint(config: TrainConfig, k: int) -> str:
    resolution = f"{config.height or 'default'}x{config.width or 'default'}" if config.height or config.width else "the model's default"
    return (
        "CUDA out of memory. Knobs that reduce memory, with their current values: "
        f"batch_size={config.batch_size} (lower it and raise grad_accum_steps={config.grad_accum_steps}), "
        f"gradient steps K={k} (variant={config.variant}; draft-lv/draft-k with small k need least), "
        f"checkpointing={config.checkpointing!r} ('always' checkpoints every UNet call), "
        f"checkpoint_vae={config.checkpoint_vae}, resolution={resolution}, "
        f"mixed_precision={config.mixed_precision!r} ('bf16' halves the frozen weights)"
    )


class Trainer:
    """Fine-tune ``pipeline.unet`` with LoRA to maximise ``objective``.

    Args:
        pipeline: a Stable Diffusion 1.x/2.x pipeline (fine-tuned in place: after ``fit`` it
            generates with the trained adapter), or a local folder / hub id to load one.
        objective: a reward name, a Reward, a ``{name_or_reward: weight}`` mapping or a
            [WeightedSum][draftsdk.WeightedSum].
        config: a [TrainConfig][draftsdk.TrainConfig]; keyword ``overrides`` replace its fields.

    Examples:
        >>> trainer = Trainer("path/to/sd-1-5", {"aesthetic": 1.0}, TrainConfig(steps=500))  # doctest: +SKIP
        >>> trainer.fit(prompt_set="simple-animals")  # doctest: +SKIP
    """

    def __init__(self, pipeline: Any, objective: Any, config: TrainConfig | None = None, **overrides: Any) -> None:
        config = config or TrainConfig()
        if overrides:
            config = TrainConfig.build({**config.model_dump(), **overrides})
        self.config = config
        self.dist = DistContext.from_env("cuda" if "cuda" in config.device or (config.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = _resolve_device(config.device, self.dist)
        check_run_dir(Path(config.output_dir), overwrite=config.overwrite, resume=config.resume)  # before any loading
        self.model_name = config.model
        if isinstance(pipeline, (str, os.PathLike)):
            self.model_name = str(pipeline)
            pipeline = load_pipeline(str(pipeline), device=self.device)
        check_pipeline(pipeline)
        self.pipeline = pipeline
        self.objective: WeightedSum = objective if isinstance(objective, WeightedSum) else combine(objective)
        if config.variant != "ddpo" and not self.objective.differentiable:
            bad = [t.label for t in self.objective.terms if not t.reward.differentiable]
            raise DraftError(
                f"reward term(s) {', '.join(bad)} are not differentiable, so variant={config.variant!r} cannot "
                "backpropagate through them; use variant='ddpo' (policy gradient) for non-differentiable rewards"
            )
        self.unet = pipeline.unet
        self._prepare_model()

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        return {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.config.mixed_precision]

    def _prepare_model(self) -> None:
        cfg = self.config
        pipe = self.pipeline
        for module in (pipe.vae, pipe.text_encoder, pipe.unet):
            module.requires_grad_(False)
            if module.dtype != self.compute_dtype:
                module.to(dtype=self.compute_dtype)
            module.to(self.device)
            module.eval()
        if lora_lib.ADAPTER_NAME in getattr(self.unet, "peft_config", {}):
            self.params = lora_lib.lora_parameters(self.unet)
        else:
            with torch.random.fork_rng(devices=[]):  # the initial adapter depends on the seed only
                torch.manual_seed(cfg.seed)
                self.params = lora_lib.add_lora(self.unet, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
        for p in self.params:  # LoRA weights train in fp32 even when the frozen weights are half precision
            p.data = p.data.float()
        self.unet.set_adapters([lora_lib.ADAPTER_NAME])
        self.sampler = Sampler(
            pipe,
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
            eta=cfg.eta,
            height=cfg.height,
            width=cfg.width,
        )
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.mixed_precision == "fp16" and self.device.type == "cuda")
        self.rng, self.noise_gen = rank_streams(cfg.seed, self.dist.rank)
        self.queries, self.skipped, self._last_grad_steps = 0, 0, cfg.grad_steps_range()[1]

    def _autocast(self) -> Any:
        if self.config.mixed_precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    # -- rollouts -------------------------------------------------------------------------------
    def _use_checkpointing(self, grad_steps: int) -> None:
        mode = self.config.checkpointing
        unet = mode == "always" or (mode == "auto" and grad_steps > 1)
        self.sampler.checkpoint_unet = unet
        # Checkpointing the decoder lowers the peak only when the UNet activations are not stored too.
        self.sampler.checkpoint_vae = unet and self.config.checkpoint_vae

    @contextlib.contextmanager
    def _adapters_disabled(self) -> Iterator[None]:
        self.unet.disable_adapters()
        try:
            yield
        finally:
            self.unet.enable_adapters()

    def _kl_term(self, index: int, latents: torch.Tensor, out: torch.Tensor, embeds: torch.Tensor, acc: list[torch.Tensor]) -> None:
        if self.config.kl_weight <= 0:
            return
        with self._adapters_disabled():
            reference = self.sampler.model_output(latents.detach(), index, embeds, grad=False)
        acc.append(((out.float() - reference.float()) ** 2).mean())

    def draw_batch(self, prompts: Sequence[str]) -> tuple[list[str], torch.Tensor]:
        """This process's next training prompts and initial noise (from its own seeded streams)."""
        batch = self.rng.choices(list(prompts), k=self.config.batch_size)
        return batch, self.sampler.initial_noise(len(batch), self.noise_gen)

    def rollout(self, prompts: Sequence[str], noise: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str], dict[str, Any]]:
        """Generate images for ``prompts`` (from ``noise``, or fresh noise) with the graph the variant asks for.

        Returns ``(images, prompts_per_image, info)``; DRaFT-LV returns ``(n + 1) * B`` images.
        ``info`` has ``grad_steps`` (K) and ``kl`` (the guard penalty, a tensor or None).
        """
        cfg, s = self.config, self.sampler
        T = s.num_steps
        embeds = s.encode(prompts, [cfg.negative_prompt] * len(prompts) if cfg.negative_prompt else None)
        if noise is None:
            noise = s.initial_noise(len(prompts), self.noise_gen)
        kl: list[torch.Tensor] = []
        variant = cfg.variant
        if variant in ("draft", "draft-k", "draft-random-k"):
            k = {"draft": T, "draft-k": cfg.k}.get(variant) or self.rng.randint(*cfg.k_range)
            self._use_checkpointing(k)
            latents = s.denoise(
                noise,
                embeds,
                grad_from=T - k,
                generator=self.noise_gen,
                on_grad_step=lambda i, x, out: self._kl_term(i, x, out, embeds, kl),
            )
            images = s.decode(latents, grad=True)
            return images, list(prompts), {"grad_steps": k, "kl": torch.stack(kl).mean() if kl else None}

        self._use_checkpointing(1)
        if variant == "draft-lv":
            # DRaFT-1 on the trajectory, then n copies of its final latent (stop-grad) re-noised to the
            # last timestep and denoised in one batched call: no VAE re-encode, no repeated forward.
            last = T - 1
            before = s.denoise(noise, embeds, stop=last, generator=self.noise_gen)
            out = s.model_output(before, last, embeds, grad=True)
            self._kl_term(last, before, out, embeds, kl)
            with torch.enable_grad():
                first = s.step(last, before, out, s.variance_noise(before.shape, self.noise_gen)).prev
            final = first.detach()
            copies = torch.cat([
                s.add_noise(final, last, torch.randn(final.shape, generator=self.noise_gen).to(final))
                for _ in range(cfg.lv_copies)
            ])
            rep_embeds = torch.cat([e.repeat(cfg.lv_copies, 1, 1) for e in embeds.chunk(2 if s.guided else 1)])
            out = s.model_output(copies, last, rep_embeds, grad=True)
            self._kl_term(last, copies, out, rep_embeds, kl)
            with torch.enable_grad():
                renoised = s.step(last, copies, out, s.variance_noise(copies.shape, self.noise_gen)).prev
            images = s.decode(torch.cat([first, renoised]), grad=True)
            reps = cfg.lv_copies + 1
            return images, list(prompts) * reps, {"grad_steps": 1, "kl": torch.stack(kl).mean() if kl else None}

        if variant == "refl":
            stop = self.rng.randint(T - cfg.refl_last_steps, T - 1)
            latents = s.denoise(noise, embeds, stop=stop, generator=self.noise_gen)
            out = s.model_output(latents, stop, embeds, grad=True)
            self._kl_term(stop, latents, out, embeds, kl)
            with torch.enable_grad():
                pred_x0 = s.step(stop, latents, out, s.variance_noise(latents.shape, self.noise_gen)).pred_x0
            images = s.decode(pred_x0, grad=True)
            return images, list(prompts), {"grad_steps": 1, "stop_step": stop, "kl": kl[0] if kl else None}
        raise DraftError(f"variant {variant!r} has no differentiable rollout")

    # -- evaluation -----------------------------------------------------------------------------
    def _eval_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        return torch.cat([self.sampler.initial_noise(1, torch.Generator().manual_seed(seed)) for seed in seeds])

    @torch.no_grad()
    def evaluate(self, prompts: Sequence[str], seeds: Sequence[int]) -> tuple[torch.Tensor, RewardOutput]:
        """Sample every prompt with every seed (no gradient) and score them; rows are prompts."""
        s = self.sampler
        all_prompts = [p for p in prompts for _ in seeds]
        noise = self._eval_noise(seeds).repeat(len(prompts), 1, 1, 1)
        negatives = [self.config.negative_prompt] * len(all_prompts) if self.config.negative_prompt else None
        with self._autocast():
            embeds = s.encode(all_prompts, negatives)
            gen = torch.Generator().manual_seed(12345)
            latents = s.denoise(noise, embeds, generator=gen)
            images = s.decode(latents, grad=False).float()
            scores = self.objective.evaluate(images, all_prompts)
        return images, scores

    def _run_eval(self, step: int, prompts: Sequence[str]) -> dict[str, Any]:
        images, scores = self.evaluate(prompts, self.config.eval_seeds)
        record = {"kind": "eval", "step": step, **{f"eval/{k.split('/', 1)[1]}": v for k, v in scores.summary().items()}}
        record["eval/diversity"] = batch_diversity(images)
        if self.dist.is_main:
            labels = [p if len(p) <= 28 else p[:25] + "..." for p in prompts]
            grid = make_grid(
                images,
                ncol=len(self.config.eval_seeds),
                row_labels=labels,
                col_labels=[f"seed {s}" for s in self.config.eval_seeds],
                title=f"step {step}  reward {record['eval/mean']:.4g}",
                scale=max(1, 128 // images.shape[-1]),
            )
            save_png(grid, self.run_dir / "samples" / f"step-{step:06d}.png")
        return record

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
            "ddpo_stats": self.ddpo_stats.state_dict() if hasattr(self, "ddpo_stats") else {},
        }

    def _save_lora(self, path: Path, step: int) -> Path:
        return lora_lib.save_lora(
            path,
            self.unet,
            base_model=self.model_name,
            reward_spec=self.objective.spec(),
            train_config=self.config.to_json_dict(),
            extra={"step": step},
        )

    def save_checkpoint(self, step: int) -> Path | None:
        """Write checkpoint ``step`` (rank 0 only; other ranks wait)."""
        path = None
        random_states = self.dist.gather(self._random_state())  # every rank takes part
        if self.dist.is_main:
            meta = {"step": step, "config": self.config.to_json_dict(), "reward": self.objective.spec(), "model": self.model_name}
            path = save_checkpoint(
                self.run_dir, step, lambda p: self._save_lora(p, step), self._state(step, random_states), meta, self.config.keep_checkpoints
            )
        self.dist.barrier()
        return path

    def _restore(self, checkpoint: Path) -> int:
        state, meta = load_checkpoint_state(checkpoint)
        if meta.get("reward") != self.objective.spec():
            raise DraftError(
                f"cannot resume {str(checkpoint)!r}: it was trained on reward {json.dumps(meta.get('reward'))} "
                f"but this run's objective is {json.dumps(self.objective.spec())}"
            )
        lora_lib.restore_lora(self.unet, checkpoint / "lora.safetensors")
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
        if state.get("ddpo_stats"):
            from .ddpo import PerPromptStats

            self.ddpo_stats = PerPromptStats()
            self.ddpo_stats.load_state_dict(state["ddpo_stats"])
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

    def _clear_previous_run(self) -> None:
        """With ``overwrite=True``: remove the artifacts of the run that lived here (nothing else)."""
        import shutil

        for name in ("checkpoints", "samples", "tensorboard"):
            shutil.rmtree(self.run_dir / name, ignore_errors=True)
        for name in ("metrics.jsonl", "config.json", "lora.safetensors"):
            (self.run_dir / name).unlink(missing_ok=True)

    # -- the loop ---------------------------------------------------------------------------------
    def _prompts(self, prompts: Any, prompt_file: Any, prompt_set: Any) -> list[str]:
        cfg = self.config
        if prompts is None and prompt_file is None and prompt_set is None:
            prompts, prompt_file, prompt_set = cfg.prompts, cfg.prompt_file, cfg.prompt_set
        if isinstance(prompts, str):
            raise DraftError("prompts must be a list of strings; for a file pass prompt_file=...")
        return resolve_prompts(prompts, prompt_file, prompt_set)

    def _write_metrics(self, record: Mapping[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "kind"):
                    self.tb.add_scalar(key if "/" in key else f"train/{key}", value, record["step"])

    def _trim_metrics(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def _open_tensorboard(self) -> Any:
        if not (self.config.tensorboard and self.dist.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _train_step(self, batch_prompts: Sequence[str], noise: torch.Tensor) -> tuple[dict[str, Any], bool]:
        """One rollout + backward (no optimizer step). Returns its metrics and whether it was finite."""
        cfg = self.config
        with self._autocast():
            images, prompts, info = self.rollout(batch_prompts, noise)
            out = self.objective.evaluate(images, prompts)
        loss = -out.total.float().mean()
        if info["kl"] is not None:
            loss = loss + cfg.kl_weight * info["kl"]
        finite = bool(torch.isfinite(loss))
        if finite:
            self.scaler.scale(loss / cfg.grad_accum_steps).backward()
        metrics = {"loss": float(loss.detach()), **out.summary(), "diversity": batch_diversity(images[: len(batch_prompts)])}
        metrics["grad_steps"] = info["grad_steps"]
        if info["kl"] is not None:
            metrics["kl"] = float(info["kl"].detach())
        self.queries += images.shape[0] * self.dist.world_size
        return metrics, finite

    def update(self, prompts: Sequence[str]) -> dict[str, Any]:
        """One optimizer update: ``grad_accum_steps`` rollouts from ``prompts``, gradients averaged
        across processes, clipped, applied (or skipped when not finite). Returns the step's metrics."""
        cfg = self.config
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        parts: list[dict[str, Any]] = []
        finite = True
        for _ in range(cfg.grad_accum_steps):
            batch, noise = self.draw_batch(prompts)
            if cfg.variant == "ddpo":
                from .ddpo import ddpo_step

                metrics, ok = ddpo_step(self, batch, noise)
            else:
                metrics, ok = self._train_step(batch, noise)
            self._last_grad_steps = metrics["grad_steps"]
            parts.append(metrics)
            finite = finite and ok
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.dist.all_reduce_mean(grads)
        for p, g in zip(self.params, grads):
            p.grad = g
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm or float("inf")))
        skip = self.dist.any(not (finite and math.isfinite(grad_norm)), self.device)
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
        else:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        record = self.dist.mean_dict(self._merge(parts), self.device)
        record.update(
            kind="train",
            grad_norm=grad_norm,
            lr=lr,
            step_time=time.perf_counter() - t0,
            peak_mem_gb=_peak_memory_gb(self.device),
            queries=self.queries,
            skipped=skip,
            skipped_total=self.skipped,
        )
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
        if self.dist.is_main:
            prepare_run_dir(self.run_dir, overwrite=cfg.overwrite, resume=cfg.resume)
            if cfg.overwrite:
                self._clear_previous_run()
        self.dist.barrier()
        start = 0
        checkpoint = latest_checkpoint(self.run_dir) if cfg.resume else None
        if checkpoint is not None:
            start = self._restore(checkpoint)
            self._trim_metrics(start)
        if self.dist.is_main:
            write_text_atomic(self.run_dir / "config.json", json.dumps(cfg.to_json_dict(), indent=2))
        self.tb = self._open_tensorboard()
        result = TrainResult(output_dir=self.run_dir, lora_path=None, steps_done=start)
        if start == 0:
            record = self._run_eval(0, eval_prompts)
            result.evals.append(record)
            self._write_metrics(record)

        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start, desc=f"DRaFT {cfg.variant}", unit="step", dynamic_ncols=True)
        in_a_row = 0
        try:
            for step in range(start + 1, cfg.steps + 1):
                record = {"kind": "train", "step": step, **self.update(train_prompts)}
                in_a_row = in_a_row + 1 if record["skipped"] else 0
                result.history.append(record)
                self._write_metrics(record)
                if on_step is not None:
                    on_step(record)
                if bar is not None:
                    bar.set_postfix(reward=f"{record['reward/mean']:.4g}", s_per_step=f"{record['step_time']:.2f}")
                    bar.update(1)
                if in_a_row >= cfg.max_nonfinite_steps:
                    last = latest_checkpoint(self.run_dir)
                    raise DraftError(
                        f"stopped at step {step}: {in_a_row} updates in a row had a NaN/inf reward or gradient; "
                        f"last good checkpoint: {str(last) if last else 'none'}. Try a lower learning_rate "
                        f"({cfg.learning_rate}), max_grad_norm, or mixed_precision='no'"
                    )
                result.steps_done = step
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    evaluation = self._run_eval(step, eval_prompts)
                    result.evals.append(evaluation)
                    self._write_metrics(evaluation)
                if (step % cfg.save_every == 0 or step == cfg.steps) and not record["skipped"]:
                    self.save_checkpoint(step)
        except torch.OutOfMemoryError as exc:
            raise DraftError(_memory_hint(cfg, self._last_grad_steps)) from exc
        finally:
            if bar is not None:
                bar.close()
            if self.tb is not None:
                self.tb.close()
        result.skipped_steps = self.skipped
        if self.dist.is_main:
            result.lora_path = self._save_lora(self.run_dir / "lora.safetensors", result.steps_done)
        self.dist.barrier()
        return result

    @staticmethod
    def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Average the metrics of the accumulated rollouts of one update."""
        merged: dict[str, Any] = {}
        for key in parts[0]:
            values = [p[key] for p in parts if p.get(key) is not None]
            merged[key] = sum(values) / len(values) if values else None
        return {k: v for k, v in merged.items() if v is not None}
