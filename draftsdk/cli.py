"""The ``draftsdk`` command line.

Errors caused by input (unknown reward, bad config, missing file ...) print one line starting with
``error:`` and exit with status 2; set ``DRAFTSDK_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import DraftError

__all__ = ["main", "build_parser", "parse_option"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return wrap


def parse_option(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is read as JSON when it parses (numbers, lists, true), else a string.

    Examples:
        >>> parse_option("target=8"), parse_option("query=a cat"), parse_option("color=[1,0,0]")
        (('target', 8), ('query', 'a cat'), ('color', [1, 0, 0]))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())


@command("rewards")
def _rewards(args: argparse.Namespace) -> int:
    from .registry import list_rewards

    infos = list_rewards()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    flag = {True: "yes", False: "no", None: "?"}
    rows = [[i.name, i.plugin, flag[i.differentiable], i.description] for i in infos]
    _print_table(rows, ["NAME", "PLUGIN", "DIFFERENTIABLE", "DESCRIPTION"])
    return 0


@command("plugins")
def _plugins(args: argparse.Namespace) -> int:
    from .plugins import list_plugins

    plugins = list_plugins()
    if args.json:
        fields = ("name", "distribution", "version", "entry_point", "rewards", "error")
        print(json.dumps([{f: getattr(p, f) for f in fields} for p in plugins], indent=2))
        return 0
    rows = [[p.distribution, p.version, p.name, ", ".join(p.rewards) or "-"] for p in plugins if not p.error]
    _print_table(rows, ["DISTRIBUTION", "VERSION", "PLUGIN", "REWARDS"])
    for p in plugins:
        if p.error:
            print(f"warning: plugin {p.label} {p.error}", file=sys.stderr)
    return 0


def load_image(path: str | os.PathLike[str]) -> Any:
    """Read an image file as a (1, 3, H, W) float tensor in [0, 1]; one-line errors name the file."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"image file {str(file)!r} does not exist")
    try:
        with Image.open(file) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{str(file)!r} is not an image file that Pillow can read ({type(exc).__name__})") from None
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


@command("score")
def _score(args: argparse.Namespace) -> int:
    import torch

    from .rewards import combine

    if len(args.prompt) not in (1, len(args.images)):
        raise ValueError(f"give one --prompt for all images or one per image; got {len(args.prompt)} for {len(args.images)}")
    options = dict(parse_option(o) for o in args.opt)
    objective = combine({args.reward: {"options": options}})
    prompts = args.prompt * len(args.images) if len(args.prompt) == 1 else args.prompt
    images = [load_image(path) for path in args.images]  # all read first: a bad file fails before any model loads
    from .trainer import parse_device

    device = parse_device(args.device)
    scores = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts):
            scores.append(float(objective(image.to(device), [prompt])[0]))
    if args.json:
        print(json.dumps([{"image": p, "prompt": q, "score": s} for p, q, s in zip(args.images, prompts, scores)], indent=2))
    else:
        for path, value in zip(args.images, scores):
            print(f"{value:.6g}\t{path}")
    return 0


@command("train")
def _train(args: argparse.Namespace) -> int:
    from .config import ConfigError, TrainConfig
    from .prompts import resolve_prompts
    from .rewards import combine
    from .trainer import Trainer

    config = TrainConfig.from_file(args.config, args.set)
    if config.model is None:
        raise ConfigError("invalid config: model: `draftsdk train` needs model = a local pipeline folder or a hub id")
    if config.rewards is None:
        raise ConfigError("invalid config: rewards: `draftsdk train` needs a [rewards] table, e.g. brightness = 1.0")
    objective = combine(config.rewards)
    prompts = resolve_prompts(config.prompts, config.prompt_file, config.prompt_set)  # fail before loading the model
    trainer = Trainer(config.model, objective, config)
    if trainer.dist.is_main:
        print(f"run directory: {config.output_dir}", flush=True)
    result = trainer.fit(prompts)
    if trainer.dist.is_main:
        last = result.history[-1] if result.history else {}
        print(f"done: {result.steps_done} steps, reward {last.get('reward/mean', float('nan')):.4g}, "
              f"{result.skipped_steps} skipped; LoRA: {result.lora_path}")
    return 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None


@command("sample")
def _sample(args: argparse.Namespace) -> int:
    import torch

    from . import lora
    from .atomic import check_output_path
    from .images import IMAGE_FORMATS, make_grid, save_image
    from .sampling import Sampler, load_pipeline

    seeds = [int(x) for x in _floats(args.seeds, "--seeds")]
    scales = _floats(args.scales, "--scales")
    specs = [lora.parse_weighted_path(text) for text in args.lora]
    if not seeds or not scales:
        raise ValueError("--seeds and --scales need at least one value each")
    if len(scales) > 1 and not specs:
        raise ValueError("--scales needs at least one --lora FILE[:WEIGHT] to scale")
    for path, _ in specs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"LoRA file {path!r} does not exist")
    check_output_path(args.output, [p for p, _ in specs], overwrite=args.overwrite)
    if Path(args.output).suffix.lower() not in IMAGE_FORMATS:
        raise ValueError(f"-o {args.output}: use a .png, .jpg or .webp file name")
    from .trainer import parse_device

    pipe = load_pipeline(args.model, device=parse_device(args.device))
    names = [lora.load_lora(pipe, path, f"lora{i}", trust_pickle=args.trust_pickle) for i, (path, _) in enumerate(specs)]
    sampler = Sampler(pipe, num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.height, width=args.width)
    rows = [(p, s) for p in args.prompt for s in seeds]
    columns = []
    with torch.no_grad():
        cond = sampler.encode([p for p, _ in rows])
        noise = torch.cat([sampler.initial_noise(1, torch.Generator().manual_seed(s)) for _, s in rows])
        for alpha in scales:
            if names:
                lora.set_mix(pipe, {n: alpha * w for n, (_, w) in zip(names, specs)})
            columns.append(sampler.decode(sampler.denoise(noise, cond), grad=False).float().cpu())
    grid_images = torch.stack(columns, dim=1).flatten(0, 1)
    labels = [("mix x" if len(names) > 1 else "alpha=") + f"{a:g}" for a in scales] if names else ["base"]
    row_labels = [f"{p[:24]} / seed {s}" for p, s in rows]
    grid = make_grid(grid_images, ncol=len(scales), row_labels=row_labels, col_labels=labels,
                     scale=max(1, 128 // grid_images.shape[-1]))
    out = save_image(grid, args.output)
    print(f"wrote {out} ({len(rows)} rows x {len(scales)} columns)")
    return 0


@command("lora")
def _lora(args: argparse.Namespace) -> int:
    from . import lora

    if args.lora_command == "mix":
        from .atomic import check_output_path

        inputs = [lora.parse_weighted_path(text) for text in args.inputs]
        check_output_path(args.output, [p for p, _ in inputs], overwrite=args.overwrite)
        out = lora.mix_files(inputs, args.output, trust_pickle=args.trust_pickle)
        mixed = lora.read_lora(out)
        print(f"wrote {out}: {len(mixed.modules())} modules, rank {mixed.rank}")
        return 0
    info = lora.read_lora(args.file, trust_pickle=args.trust_pickle)
    summary = {"file": str(info.path), "rank": info.rank, "alpha": info.alpha, "modules": len(info.modules()),
               "targets": info.targets, **{k: v for k, v in info.info.items() if k not in ("rank", "alpha", "targets")}}
    print(json.dumps(summary, indent=2, default=str))
    return 0


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    run_demo(
        output=Path(args.output), digit=args.digit, target=args.target, steps=args.steps,
        variant=args.variant, seed=args.seed, overwrite=args.overwrite, model=args.model,
    )
    return 0


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--steps 0`` is refused with a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``draftsdk`` (used by the docs to render the CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="draftsdk",
        description="Fine-tune diffusion models directly on differentiable rewards (DRaFT).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("rewards", help="list the installed rewards")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("plugins", help="list the installed plugins and their load errors")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("score", help="score image files with a reward")
    p.add_argument("--reward", required=True, help="reward name (see `draftsdk rewards`)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="reward option (repeatable)")
    p.add_argument("--prompt", action="append", default=[], required=True, help="prompt, once or once per image")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")

    p = sub.add_parser("train", help="fine-tune a pipeline with DRaFT from a TOML/YAML config")
    p.add_argument("config", help="config file (.toml, .yaml or .json) with model, rewards and TrainConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable; dotted keys reach into tables)")

    p = sub.add_parser("sample", help="render a grid of images with LoRA adapters at several scales or mixes")
    p.add_argument("--model", required=True, help="pipeline folder or hub id")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:WEIGHT]", help="LoRA file with an optional weight (repeatable: mixed)")
    p.add_argument("--prompt", action="append", required=True, help="prompt (repeatable: one row group each)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, one row each (default: 0)")
    p.add_argument("--scales", default="1", help="comma-separated LoRA scales, one column each (default: 1)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the model family's, 50 for SD)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model family's, 7.5 for SD)")
    p.add_argument("--height", type=int, default=None, help="image height (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="image width (default: the model's)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--trust-pickle", action="store_true", help="allow .bin/.pt LoRA files (loaded with weights_only=True)")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg or .webp: the suffix picks the format)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")

    p = sub.add_parser("lora", help="inspect or mix LoRA files")
    lsub = p.add_subparsers(dest="lora_command", metavar="ACTION", required=True)
    q = lsub.add_parser("mix", help="write one adapter equal to the weighted sum of several (exact)")
    q.add_argument("inputs", nargs="+", metavar="FILE[:WEIGHT]", help="LoRA files with weights")
    q.add_argument("-o", "--output", required=True, help="output .safetensors file (never one of the inputs)")
    q.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    q.add_argument("--trust-pickle", action="store_true", help="allow .bin/.pt inputs (loaded with weights_only=True)")
    q = lsub.add_parser("info", help="print a LoRA file's rank, targets and draftsdk metadata")
    q.add_argument("file", help="LoRA file")
    q.add_argument("--trust-pickle", action="store_true", help="allow .bin/.pt files (loaded with weights_only=True)")

    p = sub.add_parser("demo", help="fine-tune the embedded digits model on the CPU and write pictures (offline)")
    p.add_argument("--digit", type=int, default=3, help="the prompted digit (default: 3)")
    p.add_argument("--target", type=int, default=8, help="the digit the classifier should see (default: 8)")
    p.add_argument("--model", default="draftsdk:digits",
                   help="embedded model: draftsdk:digits (UNet, DDIM) or draftsdk:digits-flow (SD3 transformer, rectified flow)")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps (default: the demo's budget for the model)")
    p.add_argument("--variant", default=None, help="DRaFT variant (default: the model's, draft-lv)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--output", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder's run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``draftsdk`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:  # `draftsdk rewards --json | head`: the reader left; so do we, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (DraftError, ValueError, TypeError, OSError) as exc:
        if os.environ.get("DRAFTSDK_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
