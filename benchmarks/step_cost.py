"""Step cost and memory of each DRaFT variant, as ratios measured side by side in one run.

    python benchmarks/step_cost.py                     # tiny CPU config (the figures in results/)
    python benchmarks/step_cost.py --scale sd15 --device cuda --dtype bf16 --batch 16   # on a GPU
    python benchmarks/step_cost.py --quick             # a few seconds; run by the test suite

Time: every configuration runs once per round, rounds repeated, the median kept; ratios are to the
no-grad sampling pass of draftsdk's sampler (and to a diffusers pipeline call) at the same batch,
steps and guidance. A "step" is one full optimizer update: rollout, reward, backward, AdamW.
The reward is ``brightness`` (nearly free), so the figures isolate the DRaFT machinery.

Memory: peak per configuration (CUDA: max_memory_allocated in a fresh child process; CPU: peak RSS of
a fresh child process minus its resident size just before the measured update), for K = 1, 5, 10, T with and without
gradient checkpointing of every UNet call.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sd15_pipeline, write_result  # noqa: E402

import draftsdk  # noqa: E402
from draftsdk.sampling import Sampler  # noqa: E402
from draftsdk.testing import tiny_pipeline  # noqa: E402

PROMPTS = ["a photo of a cat", "a watercolour fox", "a red car", "a bowl of fruit"]


def build(args: argparse.Namespace) -> Any:
    if args.scale == "sd15":
        pipe = sd15_pipeline()
    else:
        pipe = tiny_pipeline(sample_size=args.latent)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(args.device)


def make_trainer(pipe: Any, args: argparse.Namespace, variant: str, k: int = 1, checkpointing: str = "auto") -> Any:
    config = draftsdk.TrainConfig(
        variant=variant, k=k, steps=10**6, batch_size=args.batch, num_inference_steps=args.steps,
        guidance_scale=args.guidance, lora_rank=4, device=args.device, progress=False, tensorboard=False,
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[args.dtype], checkpointing=checkpointing,
        output_dir=Path(tempfile.mkdtemp()) / "run",
    )
    return draftsdk.Trainer(pipe, "brightness", config)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timing(args: argparse.Namespace) -> dict[str, Any]:
    pipe = build(args)
    prompts = (PROMPTS * args.batch)[: args.batch]
    trainers = {"DRaFT-1": make_trainer(pipe, args, "draft-k", 1)}
    trainers["DRaFT-LV (n=2)"] = make_trainer(pipe, args, "draft-lv")
    trainers["ReFL (m=10)"] = make_trainer(pipe, args, "refl") if args.steps >= 10 else None
    for k in (5, 10):
        if k < args.steps and not args.quick:
            trainers[f"DRaFT-K (K={k})"] = make_trainer(pipe, args, "draft-k", k)
    if not args.quick:
        trainers[f"full DRaFT (K={args.steps})"] = make_trainer(pipe, args, "draft")
        trainers["DRaFT-1, UNet checkpointed"] = make_trainer(pipe, args, "draft-k", 1, "always")
    trainers = {k: v for k, v in trainers.items() if v is not None}
    sampler = Sampler(pipe, num_inference_steps=args.steps, guidance_scale=args.guidance)
    noise = sampler.initial_noise(args.batch, torch.Generator().manual_seed(0))
    autocast = trainers["DRaFT-1"]._autocast

    def sample_ours() -> None:
        with torch.no_grad(), autocast():
            sampler.decode(sampler.denoise(noise, sampler.encode(prompts)), grad=False)

    def sample_pipeline() -> None:
        with autocast():
            pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, latents=noise, output_type="pt")

    ops: dict[str, Callable[[], Any]] = {"sampling, draftsdk (no grad)": sample_ours, "sampling, diffusers pipeline": sample_pipeline}
    for name, trainer in trainers.items():
        ops[name] = (lambda t=trainer: t.update(prompts))
    times: dict[str, list[float]] = {name: [] for name in ops}
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for name, op in ops.items():
            sync(args.device)
            t0 = time.perf_counter()
            op()
            sync(args.device)
            if round_ > 0:
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["sampling, draftsdk (no grad)"])
    pipeline = statistics.median(times["sampling, diffusers pipeline"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"config": name, "median_s": median, "vs_sampling": median / base, "vs_pipeline": median / pipeline,
                     "images_per_s": args.batch / median, "runs": [round(v, 4) for v in values]})
    lv = next(r for r in rows if r["config"].startswith("DRaFT-LV"))["median_s"]
    one = next(r for r in rows if r["config"] == "DRaFT-1")["median_s"]
    return {"rows": rows, "lv_over_draft1": lv / one}


def memory_child(args: argparse.Namespace, k: int, checkpointing: str) -> float:
    pipe = build(args)
    trainer = make_trainer(pipe, args, "draft" if k >= args.steps else "draft-k", min(k, args.steps), checkpointing)
    prompts = (PROMPTS * args.batch)[: args.batch]
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        trainer.update(prompts)
        return torch.cuda.max_memory_allocated() / 2**30
    current = int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
    trainer.update(prompts)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - current) / 2**20  # both in KiB


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    ks = sorted({1, 5, 10, args.steps} & set(range(1, args.steps + 1))) if not args.quick else [1, args.steps]
    rows = []
    for k in ks:
        for mode in ("always", "never"):
            cmd = [sys.executable, __file__, "--memory-child", f"{k}:{mode}", *args.passthrough]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append({"K": k, "checkpointing": mode, "peak_gib": float(out.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps T")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--latent", type=int, default=32, help="tiny scale: latent size (images are 2x)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny and short: keeps the script alive in the tests")
    parser.add_argument("--no-save", action="store_true", help="print only (the tests use this)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.latent, args.steps, args.repeats, args.batch = 8, 4, 1, 2
    args.passthrough = [f"--scale={args.scale}", f"--device={args.device}", f"--dtype={args.dtype}", f"--batch={args.batch}",
                        f"--steps={args.steps}", f"--guidance={args.guidance}", f"--latent={args.latent}"]
    if args.memory_child:
        k, mode = args.memory_child.split(":")
        print(memory_child(args, int(k), mode))
        return
    result = timing(args)
    mem = memory(args)
    lines = ["| configuration | median s/step | vs no-grad sampling | vs pipeline call | images/s |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['config']} | {r['median_s']:.3f} | {r['vs_sampling']:.2f}x | {r['vs_pipeline']:.2f}x | {r['images_per_s']:.2f} |")
    lines.append(f"\nDRaFT-LV / DRaFT-1 step time: {result['lv_over_draft1']:.2f}x\n")
    unit = "GiB allocated (CUDA)" if args.device.startswith("cuda") else "GiB peak RSS above the model (CPU)"
    lines += [f"| K | checkpointing | peak {unit} |", "|---|---|---|"]
    lines += [f"| {r['K']} | {r['checkpointing']} | {r['peak_gib']:.3f} |" for r in mem]
    full = {r["checkpointing"]: r["peak_gib"] for r in mem if r["K"] == args.steps}
    one = {r["checkpointing"]: r["peak_gib"] for r in mem if r["K"] == 1}
    ratio = full["always"] / one["always"] if one.get("always") else float("nan")
    lines.append(f"\nFull DRaFT / DRaFT-1 peak memory, both checkpointed: {ratio:.2f}x")
    table = "\n".join(lines)
    print(table)
    if not args.no_save:
        name = f"step_cost_{args.scale}_{args.device.split(':')[0]}_T{args.steps}"
        path = write_result(name, {"settings": {k: v for k, v in vars(args).items() if k != "passthrough"},
                                   "timing": result, "memory": mem, "full_over_draft1_memory": ratio}, table)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
