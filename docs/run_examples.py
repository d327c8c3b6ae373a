"""Run the example scripts of docs/examples/ offline, the way tests/test_docs_examples.py does.

    python docs/run_examples.py                 # every example, a summary line each
    python docs/run_examples.py resume.py -v    # one example, with its output
    python docs/run_examples.py --json          # machine-readable results (used by the tests)

The examples are written for real models (Stable Diffusion 1.5 and the reward plugins' weights). Here
they run as smoke tests, offline and on the CPU, through environment variables every example reads:

- ``DRAFTSDK_EXAMPLE_MODEL``: a tiny random-weight Stable Diffusion pipeline saved with
  ``draftsdk.testing.save_tiny_pipeline`` (instead of the SD 1.5 hub id);
- ``DRAFTSDK_EXAMPLE_SDXL_MODEL``: the same for Stable Diffusion XL (instead of the SDXL base id);
- ``DRAFTSDK_EXAMPLE_SMOKE``: JSON ``TrainConfig`` overrides that shrink a run (4 DDIM steps, batch 2,
  2 updates, CPU, fp32);
- ``DRAFTSDK_EXAMPLE_REWARDS``: JSON rewards that need no weights, for examples whose real reward does.

Each example runs in its own process, forked from this one after torch, diffusers and transformers are
imported (the imports take most of the time on a small CPU), in its own empty temporary working
directory that holds a ``docs`` link to this folder. ``*.py`` examples run as ``__main__``; ``*.sh``
examples hold ``draftsdk ...`` commands only (plus comments and ``set`` lines), each run through ``draftsdk.cli.main`` with the smoke
substitutions of :func:`smoke_command` (the SD 1.5 id becomes the tiny pipeline; ``train`` gets the
smoke overrides and a reward without weights; ``sample`` gets 4 steps; ``score`` a reward without
weights). A non-zero exit status, an
exception or a timeout fails the example.

Scripts whose name starts with a reward plugin's prefix (``aesthetic_`` ...) belong to that plugin and
are run by its own tests; names starting with ``_`` are helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
EXAMPLES = DOCS / "examples"
PLUGIN_PREFIXES = ("aesthetic_", "hpsv2_", "pickscore_", "owlvit_", "adversarial_", "clipscore_")
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SMOKE = {
    "num_inference_steps": 4,
    "batch_size": 2,
    "steps": 2,
    "eval_seeds": [0],
    "eval_every": 1000,
    "mixed_precision": "no",
    "device": "cpu",
    "progress": False,
    "tensorboard": False,
}
SMOKE_REWARDS = {"brightness": 1.0}
TIMEOUT_S = 240


def discover() -> list[Path]:
    """The example scripts these tests run (plugin-owned and helper scripts excluded)."""
    found = [p for p in sorted(EXAMPLES.iterdir()) if p.is_file() and p.suffix in (".py", ".sh")]
    return [p for p in found if not p.name.startswith(("_", *PLUGIN_PREFIXES))]


def shell_commands(script: Path) -> list[str]:
    """The commands of a ``.sh`` example: comments dropped, ``\\`` continuations joined."""
    commands, current = [], ""
    for raw in script.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#") or line.startswith("set ")):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def smoke_command(words: list[str]) -> list[str]:
    """A documented ``draftsdk`` command turned into its offline smoke version."""
    model = os.environ["DRAFTSDK_EXAMPLE_MODEL"]
    words = [model if w == SD15 else w for w in words]
    if words[:1] == ["train"]:
        resumed = any(w.replace(" ", "") == "resume=true" for w in words)
        overrides = {**SMOKE, "steps": 4 if resumed else SMOKE["steps"], "rewards": SMOKE_REWARDS, "model": model}
        for key, value in overrides.items():
            words += ["--set", f"{key}={json.dumps(value)}"]
    elif words[:1] == ["sample"]:
        words += ["--steps", "4"]
    elif words[:1] == ["score"]:
        words += ["--reward", next(iter(SMOKE_REWARDS))]
    return words


def _run_shell(script: Path) -> int:
    from draftsdk.cli import main

    for command in shell_commands(script):
        words = shlex.split(command)
        if words[0] != "draftsdk":
            raise SystemExit(f"{script.name}: only `draftsdk ...` commands can be run here, got: {command}")
        print(f"$ {command}", flush=True)
        status = main(smoke_command(words[1:]))
        if status:
            return status
    return 0


def _child(script: Path, cwd: Path, log: Path) -> None:
    """In the forked process: run one example with its output in ``log``; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(cwd)
        sys.argv = [str(script)]
        sys.path.insert(0, str(script.parent))
        try:
            if script.suffix == ".sh":
                code = _run_shell(script)
            else:
                runpy.run_path(str(script), run_name="__main__")
                code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code not in (None, 0) and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - report anything the example raises
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_one(script: Path, workdir: Path, timeout: float = TIMEOUT_S) -> dict[str, object]:
    """Run ``script`` in a forked child; return its status, time and output."""
    cwd = workdir / script.stem
    cwd.mkdir(parents=True)
    (cwd / "docs").symlink_to(DOCS, target_is_directory=True)
    log = workdir / f"{script.stem}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(script, cwd, log)
    status: int | None = None
    while time.perf_counter() - start < timeout:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.05)
    timed_out = status is None
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        status = -9
    output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return {
        "name": script.name,
        "returncode": status,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 2),
        "output": output[-6000:],
    }


def prepare(workdir: Path) -> None:
    """Offline environment, one thread, the heavy imports done once, the tiny pipeline saved once."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(1)
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    from diffusers import StableDiffusionPipeline  # noqa: F401
    from transformers import CLIPTextModel  # noqa: F401

    import draftsdk.cli  # noqa: F401
    import draftsdk.lora  # noqa: F401
    import draftsdk.trainer  # noqa: F401
    from draftsdk.testing import save_tiny_pipeline

    model = save_tiny_pipeline(workdir / "tiny-sd")
    os.environ["DRAFTSDK_EXAMPLE_MODEL"] = str(model)
    os.environ["DRAFTSDK_EXAMPLE_SDXL_MODEL"] = str(save_tiny_pipeline(workdir / "tiny-sdxl", family="sdxl"))
    os.environ["DRAFTSDK_EXAMPLE_SMOKE"] = json.dumps(SMOKE)
    os.environ["DRAFTSDK_EXAMPLE_REWARDS"] = json.dumps(SMOKE_REWARDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the docs examples offline as smoke tests.")
    parser.add_argument("names", nargs="*", help="example file names (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each example's output")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per example")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    scripts = discover()
    if args.names:
        unknown = set(args.names) - {s.name for s in scripts}
        if unknown:
            parser.error(f"unknown example(s): {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.name in args.names]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="draftsdk-examples-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepare(workdir)
    results = []
    for script in scripts:
        result = run_one(script, workdir, args.timeout)
        results.append(result)
        if not args.json:
            verdict = "ok" if result["returncode"] == 0 else "TIMEOUT" if result["timed_out"] else "FAILED"
            print(f"{verdict:7} {result['seconds']:6.1f} s  {script.name}", flush=True)
            if args.verbose or result["returncode"] != 0:
                print(result["output"])
    if args.json:
        print(json.dumps({"workdir": str(workdir), "seconds": round(time.perf_counter() - started, 1),
                          "results": results}, indent=2))
    else:
        print(f"{len(results)} examples in {time.perf_counter() - started:.0f} s (work folder {workdir})")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
