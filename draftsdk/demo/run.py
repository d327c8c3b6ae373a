"""``draftsdk demo``: fine-tune the shipped digits model with DRaFT-LV on the CPU, offline, in minutes.

The seed's adversarial experiment in miniature: prompt "a handwritten digit 3", reward = log-probability
that the shipped classifier reads the image as an 8. It runs the real trainer (LoRA on the UNet's
attention projections, the differentiable DDIM sampler, checkpointed rollouts) and writes into the
output folder:

- ``before_after.png``: the same prompts and seeds before and after fine-tuning, labelled with the
  target probability of each image;
- ``reward_curve.png``: training reward and target probability on fixed evaluation seeds per step;
- ``alpha_strip.png``: the adapter scaled by α = 0, 0.5, 1 (interpolating base and fine-tuned model);
- ``metrics.jsonl``, ``lora.safetensors`` (diffusers format), ``checkpoints/``, ``samples/``, ``summary.json``.

DRaFT-LV is the trainer's default, the variant the DRaFT paper recommends (K = 1 plus re-noised
copies of the final latent, batched into one UNet call). In this small world it needs as many updates
as DRaFT-1 and scores three times as many images (benchmarks/README.md has the measurement).

``model="draftsdk:digits-flow"`` (``draftsdk demo --model draftsdk:digits-flow``) runs the same experiment
on the digits world's rectified-flow model (``draftsdk.demo.flow_model``: an SD3 transformer, Euler
sampling), with LoRA on the transformer's attention; ``MODEL_DEFAULTS`` holds each model's budget.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import DraftError
from . import flow_model as fm
from . import model as dm

__all__ = ["run_demo", "DEMO_DEFAULTS", "MODEL_DEFAULTS", "DEMO_MODELS"]

MARKER = "summary.json"
DEMO_DEFAULTS: dict[str, Any] = {
    "steps": 60,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "lora_rank": 4,
    "eval_seeds": list(range(8)),
}
DEMO_MODELS = ("draftsdk:digits", fm.MODEL_NAME)
# Per model: DEMO_DEFAULTS plus the variant and the sampler settings (the UNet model's are its DDIM defaults).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "draftsdk:digits": {
        **DEMO_DEFAULTS,
        "variant": "draft-lv",
        "num_inference_steps": dm.DEFAULT_STEPS,
        "guidance_scale": dm.DEFAULT_GUIDANCE,
    },
    # The same budget works on the flow model: P(target) 0.000 -> 0.918 on the 8 seeds in 65 s (docs/getting-started.md).
    fm.MODEL_NAME: {
        **DEMO_DEFAULTS,
        "variant": "draft-lv",
        "num_inference_steps": fm.DEFAULT_STEPS,
        "guidance_scale": fm.DEFAULT_GUIDANCE,
    },
}


def demo_defaults(model: str) -> dict[str, Any]:
    """The demo's budget and sampler settings for ``model`` (one of ``DEMO_MODELS``); DraftError otherwise."""
    if model not in MODEL_DEFAULTS:
        raise DraftError(f"unknown demo model {model!r}; available: {', '.join(DEMO_MODELS)}")
    return dict(MODEL_DEFAULTS[model])


def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()):
        if (output / MARKER).is_file() or overwrite:
            shutil.rmtree(output)  # a previous demo run (or explicitly allowed): replace it
        else:
            raise DraftError(
                f"output folder {str(output)!r} exists and does not hold a previous demo; pass --overwrite or another --output"
            )


def _probabilities(reward: Any, images: torch.Tensor, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        return reward(images, [prompt] * images.shape[0]).exp()


def run_demo(
    output: Path = Path("demo-output"),
    *,
    digit: int = 3,
    target: int = 8,
    steps: int | None = None,
    variant: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    model: str = "draftsdk:digits",
) -> dict[str, Any]:
    """Run the demo on ``model`` (``draftsdk:digits`` or ``draftsdk:digits-flow``) and return its summary
    (also written to ``summary.json``); ``steps`` and ``variant`` default to the model's (``MODEL_DEFAULTS``)."""
    from .. import lora
    from ..config import TrainConfig
    from ..images import make_grid, plot_lines, save_png
    from ..rewards import combine
    from ..sampling import load_pipeline
    from ..trainer import Trainer
    from .rewards import DigitTarget, _check_digit

    defaults = demo_defaults(model)
    _check_digit(digit)
    _check_digit(target)
    started = time.perf_counter()
    output = Path(output)
    _prepare_output(output, overwrite)
    prompt = dm.prompt_for(digit)
    torch.manual_seed(seed)
    pipe = load_pipeline(model)
    config = TrainConfig(
        model=model,
        rewards={"digit-target": {"options": {"target": target}}},
        variant=variant or defaults["variant"],
        prompts=[prompt],
        num_inference_steps=defaults["num_inference_steps"],
        guidance_scale=defaults["guidance_scale"],
        steps=steps or defaults["steps"],
        batch_size=defaults["batch_size"],
        learning_rate=defaults["learning_rate"],
        lora_rank=defaults["lora_rank"],
        eval_prompts=[prompt],
        eval_seeds=defaults["eval_seeds"],
        eval_every=10,
        save_every=20,
        seed=seed,
        output_dir=output,
        progress=progress,
        tensorboard=False,
        device="cpu",
    )
    assert config.rewards is not None  # given above
    objective = combine(config.rewards)
    trainer = Trainer(pipe, objective, config)
    reward = DigitTarget(target)
    print(f"draftsdk demo: {model}, prompt {prompt!r}, reward digit-target (target {target}), {config.variant}, "
          f"{config.steps} steps of {config.batch_size} images; writing to {output}/", flush=True)

    before, _ = trainer.evaluate([prompt], config.eval_seeds)
    result = trainer.fit()
    after, _ = trainer.evaluate([prompt], config.eval_seeds)
    p_before, p_after = _probabilities(reward, before, prompt), _probabilities(reward, after, prompt)

    strip = []
    for alpha in (0.0, 0.5, 1.0):
        trainer.denoiser.set_adapters([lora.ADAPTER_NAME], [alpha])
        strip.append(trainer.evaluate([prompt], config.eval_seeds)[0])
    trainer.denoiser.set_adapters([lora.ADAPTER_NAME], [1.0])

    seeds = config.eval_seeds
    labels = [f"{p:.2f}" for p in p_before.tolist()] + [f"{p:.2f}" for p in p_after.tolist()]
    grid = make_grid(
        torch.cat([before, after]),
        ncol=len(seeds),
        row_labels=["before", "after"],
        col_labels=[f"s{s}" for s in seeds],
        title=f"{prompt!r}: mean P(classified as {target}) {p_before.mean():.2f} before, {p_after.mean():.2f} after",
        scale=6,
    )
    save_png(grid, output / "before_after.png")
    probs = make_grid(torch.stack(strip).flatten(0, 1), ncol=len(seeds), row_labels=["alpha=0", "alpha=0.5", "alpha=1"],
                      col_labels=[f"s{s}" for s in seeds], title="LoRA scale alpha: 0 = base model, 1 = fine-tuned", scale=6)
    save_png(probs, output / "alpha_strip.png")

    train_steps = [h["step"] for h in result.history]
    eval_steps = [e["step"] for e in result.evals]
    chart = plot_lines(
        {
            "training batches: exp(mean log P)": (train_steps, [math.exp(h["reward/mean"]) for h in result.history]),
            "fixed evaluation seeds: exp(mean log P)": (eval_steps, [math.exp(e["eval/mean"]) for e in result.evals]),
        },
        title=f"DRaFT ({config.variant}) on digit-target: prompt {digit}, target {target}",
        xlabel="training step",
        ylabel="P(target)",
        hlines={"0.8": 0.8},
    )
    save_png(chart, output / "reward_curve.png")

    summary: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "target": target,
        "variant": config.variant,
        "steps": result.steps_done,
        "reward_queries": result.history[-1]["queries"] if result.history else 0,
        "reward_before": result.evals[0]["eval/mean"] if result.evals else None,
        "reward_after": result.evals[-1]["eval/mean"] if result.evals else None,
        "diversity_before": result.evals[0].get("eval/diversity") if result.evals else None,
        "diversity_after": result.evals[-1].get("eval/diversity") if result.evals else None,
        "target_probability_before": float(p_before.mean()),
        "target_probability_after": float(p_after.mean()),
        "per_seed_before": [round(x, 4) for x in p_before.tolist()],
        "per_seed_after": [round(x, 4) for x in p_after.tolist()],
        "seconds": round(time.perf_counter() - started, 1),
        "lora": str(result.lora_path),
        "image_labels": labels,
    }
    try:
        from .evaluate import DigitJudge

        judge = DigitJudge()
        summary["digit_likeness_before"] = judge.likeness(before)
        summary["digit_likeness_after"] = judge.likeness(after)
        summary["judge_reads_before"] = [int(x) for x in judge.predict(before)]
        summary["judge_reads_after"] = [int(x) for x in judge.predict(after)]
    except ImportError:  # scikit-learn is optional for users; the README set-up installs it
        summary["digit_likeness"] = "skipped: install scikit-learn"
    (output / MARKER).write_text(json.dumps(summary, indent=2), encoding="utf-8")

    print(f"reward (mean log P(classified as {target})) on {len(seeds)} fixed seeds: "
          f"{summary['reward_before']:.3f} before -> {summary['reward_after']:.3f} after")
    print(f"mean P(classified as {target}) on the same seeds: "
          f"{summary['target_probability_before']:.3f} before -> {summary['target_probability_after']:.3f} after")
    if "digit_likeness_after" in summary:
        like = summary["digit_likeness_after"]["pca_residual_ratio"], summary["digit_likeness_before"]["pca_residual_ratio"]
        print(f"digit-likeness (PCA residual vs real digits, 1.0 = as real): {like[1]:.2f} before, {like[0]:.2f} after")
    print(f"wrote {output}/before_after.png, reward_curve.png, alpha_strip.png, metrics.jsonl, lora.safetensors "
          f"in {summary['seconds']:.0f} s")
    return summary
