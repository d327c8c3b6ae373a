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

    Example:
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
    scores = []
    with torch.no_grad():
        for image, prompt in zip(images, prompts):
            scores.append(float(objective(image.to(args.device), [prompt])[0]))
    if args.json:
        print(json.dumps([{"image": p, "prompt": q, "score": s} for p, q, s in zip(args.images, prompts, scores)], indent=2))
    else:
        for path, value in zip(args.images, scores):
            print(f"{value:.6g}\t{path}")
    return 0


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

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``draftsdk`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
