"""CPU time and memory per image of each reward plugin, forward and forward + backward, random weights.

    python benchmarks/reward_cost.py --reward aesthetic                  # tiny and full (ViT-L/14), batches 1,2
    python benchmarks/reward_cost.py --reward aesthetic --sizes full --batches 2 --modes backward --grad-checkpointing
    python benchmarks/reward_cost.py --reward owlvit --sizes tiny,full,owlv2   # OWLv2 B/16 too (slow on a CPU)
    python benchmarks/reward_cost.py --reward adversarial                # ResNet-50 at 64 and 512 px inputs
    python benchmarks/reward_cost.py --reward pickscore --quick          # ~15 s on 2 CPU cores; run by the test suite

Weights: random, at the test model's size (``tiny``) and at the real architecture's (``full``; ``owlv2``
for owlvit), saved in the real format under ``--cache`` (built once per reward and size; delete the
folder to rebuild) and loaded through the plugin's own loading code, with no download.

Each configuration (size, input size, batch, mode) runs in a fresh child process on ``--threads`` torch
threads (default 1: on a busy shared machine, OpenMP threads that spin-wait for a core made ops up to
30x slower). Time: one warm-up call, then ``--repeats`` timed calls; the best and the median per image.
Memory: "model in RAM" is the resident memory the loaded reward adds (lazily mapped weights paged in);
"peak extra" is the peak RSS while scoring above the loaded model and the input batch (the peak is reset
after loading): the activations kept for the backward pass, pre-processing buffers, the allocator.
Load time excludes the imports. Results go to ``results/reward_cost_<reward>[_quick].{md,json}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

# -- the five rewards: how each one's random-weight model is built ---------------------------------


def build_aesthetic(size: str, folder: Path) -> dict[str, Any]:
    """``tiny``: the test model (2-layer ViT, 224 px); ``full``: CLIP ViT-L/14's vision tower + the 768-1024-128-64-16-1 head."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    if size == "tiny":
        config = CLIPVisionConfig(image_size=224, patch_size=14, hidden_size=48, intermediate_size=96,
                                  num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
    else:  # openai/clip-vit-large-patch14 vision_config
        config = CLIPVisionConfig(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
                                  num_hidden_layers=24, num_attention_heads=16, projection_dim=768, hidden_act="quick_gelu")
    CLIPVisionModelWithProjection(config).save_pretrained(folder / "clip")
    widths = [config.projection_dim, 1024, 128, 64, 16, 1]
    state = {}
    for i, (fan_in, fan_out) in zip((0, 2, 4, 6, 7), zip(widths[:-1], widths[1:])):
        layer = torch.nn.Linear(fan_in, fan_out)
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = layer.weight.data, layer.bias.data
    torch.save(state, folder / "head.pth")
    return {"path": str(folder / "clip"), "head": str(folder / "head.pth")}


def build_hpsv2(size: str, folder: Path) -> dict[str, Any]:
    """``tiny``: a 2-layer open_clip ViT; ``full``: open_clip ViT-H-14 (the HPSv2 architecture, 986 M parameters)."""
    import open_clip
    import torch

    model = "ViT-H-14"
    if size == "tiny":
        model = str(folder / "tiny-hps-vit.json")
        Path(model).write_text(json.dumps({
            "embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        }))
        open_clip.add_model_config(model)
    torch.manual_seed(0)
    clip = open_clip.create_model(Path(model).stem if size == "tiny" else model, pretrained=None)
    torch.save({"state_dict": clip.state_dict()}, folder / "hps.pt")  # the layout of HPS_v2_compressed.pt
    return {"path": str(folder / "hps.pt"), "model": model}


def build_pickscore(size: str, folder: Path) -> dict[str, Any]:
    """``tiny``: a 2-layer CLIPModel; ``full``: PickScore_v1's ViT-H-14 architecture (986 M parameters)."""
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
    model_dir = folder / "model"
    CLIPModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    CLIPImageProcessorPil().save_pretrained(model_dir)
    return {"path": str(model_dir)}


def build_owlvit(size: str, folder: Path) -> dict[str, Any]:
    """``tiny``: the 0.1 M-parameter test detector (64 px); ``full``: OWL-ViT B/32 (768 px); ``owlv2``: OWLv2 B/16 (960 px)."""
    if size == "tiny":
        from draftsdk_owlvit.testing import save_tiny_detector

        return {"path": str(save_tiny_detector(folder / "model")), "query": "a strawberry", "device": "cpu"}
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    from draftsdk.testing import tiny_clip_tokenizer

    torch.manual_seed(0)
    tok = tiny_clip_tokenizer(49408, model_max_length=16)  # the full CLIP BPE vocabulary, offline
    if size == "full":
        model = OwlViTForObjectDetection(OwlViTConfig())  # defaults = google/owlvit-base-patch32
        proc = OwlViTProcessor(image_processor=OwlViTImageProcessor(), tokenizer=tok)
    else:
        model = Owlv2ForObjectDetection(Owlv2Config())  # defaults = google/owlv2-base-patch16
        proc = Owlv2Processor(image_processor=Owlv2ImageProcessor(), tokenizer=tok)
    model.save_pretrained(folder / "model")
    proc.save_pretrained(folder / "model")
    return {"path": str(folder / "model"), "query": "a strawberry", "device": "cpu"}


def build_adversarial(size: str, folder: Path) -> dict[str, Any]:
    """``full``: a torchvision ResNet-50 (25.6 M parameters), the only network the plugin loads."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    torch.save(resnet50(weights=None).state_dict(), folder / "resnet50-random.pth")
    return {"path": str(folder / "resnet50-random.pth"), "target": ["tabby", "tiger cat"], "device": "cpu"}


def describe_owlvit(reward: Any, images: Any, prompts: list[str]) -> str:
    return f"model input {reward.input_size[0]} px, {reward.box_scores(images[:1], prompts[:1]).shape[1]} boxes"


def describe_adversarial(reward: Any, images: Any, prompts: list[str]) -> str:
    return f"input resized to {reward.resize_size}, cropped to {reward.crop_size}"


@dataclass(frozen=True)
class RewardSpec:
    build: Callable[[str, Path], dict[str, Any]]  # (size, empty folder) -> the reward's options
    sizes: dict[str, str]  # size -> the model it is, as the table shows it
    default_sizes: tuple[str, ...]
    prompt: str = "a photo"
    image_sizes: tuple[int, ...] = (512,)  # Stable Diffusion's output size
    imports: tuple[str, ...] = ()  # "module" or "module:name", imported before the timed load
    grad_checkpointing: bool = True  # the reward takes grad_checkpointing=True
    describe: Callable[[Any, Any, list[str]], str] | None = None


REWARDS = {
    "aesthetic": RewardSpec(
        build_aesthetic, {"tiny": "tiny", "full": "full (ViT-L/14)"}, ("tiny", "full"),
        imports=("draftsdk_aesthetic._model", "transformers:CLIPVisionModelWithProjection")),
    "hpsv2": RewardSpec(
        build_hpsv2, {"tiny": "tiny", "full": "full (ViT-H-14)"}, ("tiny", "full"),
        imports=("draftsdk_hpsv2._model", "open_clip")),
    "pickscore": RewardSpec(
        build_pickscore, {"tiny": "tiny", "full": "full (ViT-H-14)"}, ("tiny", "full"),
        imports=("draftsdk_pickscore._model", "transformers:CLIPModel", "transformers:AutoTokenizer")),
    "owlvit": RewardSpec(
        build_owlvit, {"tiny": "tiny", "full": "full (OWL-ViT B/32)", "owlv2": "owlv2 (OWLv2 B/16)"}, ("tiny", "full"),
        prompt="a fruit bowl", grad_checkpointing=False, describe=describe_owlvit,
        imports=("draftsdk_owlvit", "transformers:OwlViTForObjectDetection", "transformers:Owlv2ForObjectDetection",
                 "transformers:AutoTokenizer", "transformers:AutoImageProcessor")),
    "adversarial": RewardSpec(
        build_adversarial, {"full": "full (ResNet-50)"}, ("full",), prompt="a bear", image_sizes=(64, 512),
        grad_checkpointing=False, describe=describe_adversarial,
        imports=("draftsdk_adversarial", "torchvision.models:resnet50")),
}

# -- the harness -----------------------------------------------------------------------------------------


def prepare(reward: str, size: str, cache: Path) -> dict[str, Any]:
    """The reward's options for ``size``, its random weights built under ``cache`` on first use."""
    folder = cache / f"{reward}-{size}"
    done = folder / "options.json"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)  # a build that was interrupted
        folder.mkdir(parents=True)
        options = REWARDS[reward].build(size, folder)
        done.write_text(json.dumps(options))
    return json.loads(done.read_text())


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _modules(reward: Any) -> list[Any]:
    import torch

    model = reward.model
    if isinstance(model, torch.nn.Module):
        return [model]
    return [m for m in vars(model).values() if isinstance(m, torch.nn.Module)]


def child(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load the reward, score one batch ``repeats`` times, measure."""
    import torch

    import draftsdk

    torch.set_num_threads(job["threads"])
    spec = REWARDS[job["reward"]]
    for name in spec.imports:  # the imports are not part of the load time
        module, _, attr = name.partition(":")
        loaded = importlib.import_module(module)
        if attr:
            getattr(loaded, attr)
    extra = {"grad_checkpointing": True} if job["grad_checkpointing"] else {}
    rss_start = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    reward = draftsdk.get_reward(job["reward"], **job["options"], **extra)
    modules = _modules(reward)
    with torch.no_grad():  # page in lazily mapped (safetensors) weights, so they count as the model's
        for module in modules:
            for tensor in module.state_dict().values():
                tensor.float().sum()
    load_s = time.perf_counter() - t0
    rss_model = _rss_mb("VmRSS")
    batch, px = job["batch"], job["image"]
    images = torch.rand(batch, 3, px, px, generator=torch.Generator().manual_seed(0))
    prompts = [spec.prompt] * batch

    def step() -> None:
        if job["backward"]:
            reward(images.clone().requires_grad_(True), prompts).sum().backward()
        else:
            with torch.no_grad():
                reward(images, prompts)

    rss_loaded = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    step()  # warm-up (allocator, kernels)
    times = []
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    extra_mb = _rss_mb("VmHWM") - rss_loaded
    params = {id(p): p.numel() for m in modules for p in m.parameters()}
    with torch.no_grad():
        note = spec.describe(reward, images, prompts) if spec.describe else ""
    return {"params_m": sum(params.values()) / 1e6, "load_s": load_s, "model_mb": rss_model - rss_start,
            "best_s_per_image": min(times) / batch, "median_s_per_image": statistics.median(times) / batch,
            "extra_mb": extra_mb, "extra_mb_per_image": extra_mb / batch, "note": note}


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"]), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the child for {job['size']}, {job['image']} px, batch {job['batch']} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, cache: Path) -> list[dict[str, Any]]:
    spec = REWARDS[args.reward]
    rows = []
    for size in args.sizes:
        options = prepare(args.reward, size, cache)
        for px in args.image_sizes:
            for batch in args.batches:
                for mode in args.modes:
                    job = {"reward": args.reward, "size": size, "options": options, "image": px, "batch": batch,
                           "backward": mode == "backward", "repeats": args.repeats, "threads": args.threads,
                           "grad_checkpointing": args.grad_checkpointing}
                    label = "forward (no_grad)"
                    if mode == "backward":
                        label = "forward+backward" + (", grad_checkpointing" if args.grad_checkpointing else "")
                    row = {"size": spec.sizes[size], "image": px, "batch": batch, "mode": label, **run_child(job)}
                    rows.append(row)
                    print(table_row(row), flush=True)
    return rows


HEADER = ["| size | params (M) | input | batch | mode | s / image (best) | s / image (median) | model in RAM (MB) "
          "| peak extra (MB) | peak extra / image (MB) | load (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]


def table_row(r: dict[str, Any]) -> str:
    return (f"| {r['size']} | {r['params_m']:.1f} | {r['image']}x{r['image']} | {r['batch']} | {r['mode']} | "
            f"{r['best_s_per_image']:.3f} | {r['median_s_per_image']:.3f} | {r['model_mb']:.0f} | {r['extra_mb']:.0f} | "
            f"{r['extra_mb_per_image']:.0f} | {r['load_s']:.2f} |")


def _choices(allowed: list[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list of {', '.join(allowed)}; got {text!r}")
        return items
    return parse


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward", choices=sorted(REWARDS), help="which reward plugin to measure (required)")
    parser.add_argument("--sizes", help="comma-separated: tiny, full (owlvit: also owlv2; adversarial: full only); "
                                        "default: the reward's tiny and full")
    parser.add_argument("--batches", type=_ints, default=[1, 2], help="comma-separated (default 1,2)")
    parser.add_argument("--image-sizes", type=_ints, help="input side in px, comma-separated (default 512; adversarial 64,512)")
    parser.add_argument("--modes", type=_choices(["forward", "backward"], "--modes"), default=["forward", "backward"],
                        help="forward (no_grad) and/or backward (forward + backward to the pixels); default both")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up (default 3)")
    parser.add_argument("--grad-checkpointing", action="store_true", help="build the reward with grad_checkpointing=True")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable numbers on a busy machine)")
    parser.add_argument("--cache", type=Path, help="where the random weights are built once (default $TMPDIR/draftsdk-cost; "
                                                    "--quick: a new temporary folder)")
    parser.add_argument("--quick", action="store_true", help="the smallest size, batch 1, one timed call (~15 s on 2 CPU cores)")
    parser.add_argument("--no-save", action="store_true", help="print only (the tests use this)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.reward:
        parser.error("--reward is required")
    spec = REWARDS[args.reward]
    try:
        args.sizes = _choices(list(spec.sizes), f"--sizes of {args.reward}")(args.sizes) if args.sizes else list(spec.default_sizes)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    args.image_sizes = args.image_sizes or list(spec.image_sizes)
    if args.grad_checkpointing and not spec.grad_checkpointing:
        parser.error(f"{args.reward} has no grad_checkpointing option")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.sizes, args.batches, args.image_sizes, args.repeats = [spec.default_sizes[0]], [1], args.image_sizes[:1], 1
    import torch

    print(f"{args.reward} on CPU ({os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)), "
          f"{args.repeats} timed call(s) after a warm-up; load average {os.getloadavg()[0]:.1f}")
    print(HEADER[0] + "\n" + HEADER[1], flush=True)
    with tempfile.TemporaryDirectory(prefix="draftsdk-cost-") as tmp:
        cache = args.cache or (Path(tmp) if args.quick else Path(os.environ.get("TMPDIR", "/tmp")) / "draftsdk-cost")
        rows = measure(args, cache)
    notes = dict.fromkeys(f"- {r['size']}: {r['note']}" for r in rows if r["note"])
    if notes:
        print("\n" + "\n".join(notes))
    if not args.no_save:
        lines = [f"Reward: {args.reward}, {args.threads} torch thread(s), {args.repeats} timed call(s) after a warm-up.",
                 "", *HEADER, *(table_row(r) for r in rows)]
        lines += ["", *notes] if notes else []
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"}
        name = f"reward_cost_{args.reward}" + ("_quick" if args.quick else "")
        path = write_result(name, {"settings": settings, "rows": rows}, "\n".join(lines))
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
