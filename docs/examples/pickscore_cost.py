"""Measure the memory and time the pickscore reward costs per image, on this machine's CPU.

Random weights at two sizes, saved in the real formats and loaded through the plugin's own code:
``tiny`` (the test model: 2-layer ViT, 224 px input) and ``full`` (transformers CLIPModel with
PickScore_v1's ViT-H-14 architecture: 32-layer width-1280 vision tower, 24-layer width-1024 text
tower, 986 M parameters). Each configuration runs in a fresh
process; peak RSS is reset after loading, so "peak extra" is the memory scoring itself needs on top
of the loaded model (activations, pre-processing, allocator).

Run: python docs/examples/pickscore_cost.py [--sizes tiny full] [--batches 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def build(size: str, folder: Path) -> dict:
    """Save random weights for ``size`` under ``folder`` (once) and return the reward's options."""
    model_dir = folder / f"pickscore-{size}"
    if not (model_dir / "config.json").exists():
        import torch
        from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

        from draftsdk.testing import tiny_clip_tokenizer

        torch.manual_seed(0)
        tokenizer = tiny_clip_tokenizer(1000 if size == "tiny" else 49408)  # 49408: the real CLIP BPE
        ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer), max_position_embeddings=77)
        if size == "tiny":
            text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
            vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
            projection = 32
        else:  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K = the PickScore_v1 architecture
            text = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
            vision = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16)
            projection = 1024
        config = CLIPConfig(text_config=dict(text, hidden_act="gelu", **ids),
                            vision_config=dict(vision, image_size=224, patch_size=14, hidden_act="gelu"),
                            projection_dim=projection, logit_scale_init_value=4.6052)
        CLIPModel(config).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        CLIPImageProcessorPil().save_pretrained(model_dir)
    return {"path": str(model_dir)}


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(options: dict, batch: int, backward: bool, repeats: int, extra: dict) -> dict:
    import torch

    import draftsdk
    import draftsdk_pickscore._model  # noqa: F401  (imports are not part of the load time)
    from transformers import AutoConfig, AutoTokenizer, CLIPModel  # noqa: F401

    rss_start = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    reward = draftsdk.get_reward("pickscore", **options, **extra)
    with torch.no_grad():  # page in lazily mapped (safetensors) weights, so they count as the model's
        for module in vars(reward.model).values():
            if isinstance(module, torch.nn.Module):
                for tensor in module.state_dict().values():
                    tensor.float().sum()
    load_s = time.perf_counter() - t0
    images = torch.rand(batch, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo"] * batch

    def step():
        if backward:
            pixels = images.clone().requires_grad_(True)
            reward(pixels, prompts).sum().backward()
        else:
            with torch.no_grad():
                reward(images, prompts)

    rss_loaded = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    step()  # warm-up (allocator, kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"load_s": load_s, "s_per_image": min(times) / batch, "model_mb": rss_loaded - rss_start,
            "extra_mb": _rss_mb("VmHWM") - rss_loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "draftsdk-cost"))
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable numbers on a busy machine)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = {"grad_checkpointing": True} if args.grad_checkpointing else {}
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["options"], spec["batch"], spec["backward"], args.repeats, extra)))
        return
    print(f"pickscore on CPU ({os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)), "
          f"512x512 inputs, best of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    print("| size | batch | mode | s / image | model in RAM (MB) | peak extra while scoring (MB) | load (s) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        options = build(size, Path(args.cache))
        for batch in args.batches:
            for backward in (False, True):
                spec = json.dumps({"options": options, "batch": batch, "backward": backward})
                cmd = [sys.executable, str(HERE), "--child", spec, "--repeats", str(args.repeats),
                       "--threads", str(args.threads)]
                cmd += ["--grad-checkpointing"] if args.grad_checkpointing else []
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                mode = "forward+backward" if backward else "forward (no_grad)"
                print(f"| {size} | {batch} | {mode} | {r['s_per_image']:.3f} | {r['model_mb']:.0f} | "
                      f"{r['extra_mb']:.0f} | {r['load_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
