"""Run the documentation's code the way a reader would, offline; tests/test_docs_examples.py uses it.

    python docs/run_examples.py                          # every page and script, a line each
    python docs/run_examples.py howto/resume.md -v       # one page, with its output
    python docs/run_examples.py --show howto/lora.md     # print the code a page shows, and stop
    python docs/run_examples.py --json                   # machine-readable results (the tests)

**Pages.** For every page of the site that shows Python, :func:`page_code` renders the page's
``--8<--`` includes with pymdownx.snippets itself, configured as in mkdocs.yml (sections, dedenting),
takes the page's ``python`` code blocks in order and joins them: exactly the code a reader sees and
would paste, nothing else. That code runs as ``__main__`` in its own process, in an empty working
directory (it holds a ``docs`` link to this folder, as a checkout's root does). The pages set up what
they need in visible code: most begin with docs/examples/quick_setup.py, which saves a tiny
random-weight pipeline and names small run sizes, so each page runs in seconds on a CPU.

**Scripts.** ``*.sh`` examples hold ``draftsdk ...`` commands only (plus comments and ``set`` lines);
each runs through ``draftsdk.cli.main`` with the smoke substitutions of :func:`smoke_command` (the
SD 1.5 id becomes a tiny pipeline; ``train`` gets small sizes and a reward without weights;
``sample`` 4 steps; ``score`` a reward without weights), because the commands are written for a GPU
and the real weights.

Each run is a process forked from this one after torch, diffusers and transformers are imported (the
imports take most of the time on a small CPU); a non-zero exit status, an exception or a timeout fails
it. Pages written by the reward plugins (``rewards/aesthetic.md`` ...) and their scripts
(``aesthetic_*.py`` ...) are run by the plugins' own tests with their tiny stand-in weights; the
other pages left out are listed, with the reason, in :data:`NOT_RUN`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
EXAMPLES = DOCS / "examples"
PLUGIN_PREFIXES = ("aesthetic_", "hpsv2_", "pickscore_", "owlvit_", "adversarial_", "clipscore_",
                   "imagereward_")
PLUGIN_PAGES = {f"rewards/{prefix.rstrip('_')}.md" for prefix in PLUGIN_PREFIXES}
# pages with Python that is not a session to paste, and why
NOT_RUN = {
    **{page: "a reward plugin's page: its plugin's tests run its example" for page in PLUGIN_PAGES},
    "howto/write-a-plugin.md": "the files of a plugin package; pytest runs its tests (test_docs.py)",
    "reference/hooks.md": "hook signatures, one fragment per hook",
    "reference/configuration.md": "generated: one setting in TOML, the CLI and Python",
}
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
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*\{?[ \t]*\.?(?P<lang>[\w+-]*)")


def _snippet_preprocessor():
    """pymdownx.snippets' preprocessor, configured from mkdocs.yml (base_path: the repository)."""
    import markdown
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    options = next(ext["pymdownx.snippets"] for ext in config["markdown_extensions"]
                   if isinstance(ext, dict) and "pymdownx.snippets" in ext)
    options = {**options, "base_path": [str(ROOT)]}
    md = markdown.Markdown(extensions=["pymdownx.snippets"], extension_configs={"pymdownx.snippets": options})
    return md.preprocessors["snippet"]


def fenced_blocks(markdown_text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced code block of ``markdown_text``, in order, each dedented
    to its fence (blocks inside admonitions and tabs are indented)."""
    blocks, lines, i = [], markdown_text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match["indent"], match["fence"], match["lang"].lower()
        body, i = [], i + 1
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]} \
                    and len(line) - len(line.lstrip()) <= len(indent):
                break
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1
        blocks.append((lang, "\n".join(body)))
    return blocks


def code_blocks(markdown_text: str, languages: tuple[str, ...] = ("python", "py")) -> list[str]:
    """The fenced code blocks of ``markdown_text`` in ``languages``, in order."""
    return [code for lang, code in fenced_blocks(markdown_text) if lang in languages]


def page_code(page: Path) -> str:
    """The Python a page shows, in order, with its includes rendered as the site renders them."""
    text = page.read_text(encoding="utf-8")
    rendered = "\n".join(_snippet_preprocessor().run(text.splitlines()))
    return "\n\n".join(code_blocks(rendered)) + "\n"


def pages() -> list[Path]:
    """Every page of the site (the example plugin's README excluded)."""
    return sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.relative_to(DOCS).parts)


def page_name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def pages_with_python() -> list[Path]:
    return [p for p in pages() if re.search(r"^[ \t]*`{3,}[ \t]*\{?\.?py(thon)?\b", p.read_text(encoding="utf-8"), re.M)]


def discover() -> list[Path]:
    """What the tests run: every page that shows Python (but :data:`NOT_RUN`), then the shell
    scripts of docs/examples/."""
    runs = [p for p in pages_with_python() if page_name(p) not in NOT_RUN]
    return runs + sorted(p for p in EXAMPLES.glob("*.sh") if not p.name.startswith("_"))


def name_of(path: Path) -> str:
    return page_name(path) if path.suffix == ".md" else path.name


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


def _child(path: Path, cwd: Path, log: Path) -> None:
    """In the forked process: run one page's code or one script, output in ``log``; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(cwd)
        try:
            if path.suffix == ".sh":
                sys.argv = [str(path)]
                code = _run_shell(path)
            else:
                script = cwd / "page.py"          # what ran, kept for a look after a failure
                script.write_text(page_code(path), encoding="utf-8")
                sys.argv = [str(script)]
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


def run_one(path: Path, workdir: Path, timeout: float = TIMEOUT_S) -> dict[str, object]:
    """Run a page's code or a script in a forked child; return its status, time and output."""
    name = name_of(path)
    slug = name.replace("/", "__").replace(".", "_")
    cwd = workdir / slug
    cwd.mkdir(parents=True)
    (cwd / "docs").symlink_to(DOCS, target_is_directory=True)
    log = workdir / f"{slug}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(path, cwd, log)
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
        "name": name,
        "returncode": status,
        "timed_out": timed_out,
        "seconds": round(time.perf_counter() - start, 2),
        "output": output[-6000:],
    }


def prepare(workdir: Path) -> None:
    """Offline environment, one thread, the heavy imports done once; the tiny pipeline the shell
    scripts' smoke substitutions use (the pages make their own, in code they show)."""
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
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401
    from transformers import CLIPTextModel  # noqa: F401

    import draftsdk.cli  # noqa: F401
    import draftsdk.lora  # noqa: F401
    import draftsdk.testing  # noqa: F401
    import draftsdk.trainer  # noqa: F401

    try:
        from torch.utils import tensorboard  # noqa: F401  (the trainer logs to TensorBoard)
    except ImportError:
        pass
    _snippet_preprocessor()
    if "DRAFTSDK_EXAMPLE_MODEL" not in os.environ:
        os.environ["DRAFTSDK_EXAMPLE_MODEL"] = str(draftsdk.testing.save_tiny_pipeline(workdir / "tiny-sd"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the docs examples offline as smoke tests.")
    parser.add_argument("names", nargs="*", help="pages (howto/lora.md) or scripts (cli_tour.sh); default: all")
    parser.add_argument("--show", action="store_true", help="print the code of the pages named, do not run it")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each example's output")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per example")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    scripts = discover()
    if args.names:
        unknown = set(args.names) - {name_of(s) for s in scripts}
        if unknown:
            parser.error(f"unknown page(s) or script(s): {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if name_of(s) in args.names]
    if args.show:
        for path in scripts:
            print(f"# --- {name_of(path)}\n{page_code(path) if path.suffix == '.md' else path.read_text()}")
        return 0
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
            print(f"{verdict:7} {result['seconds']:6.1f} s  {result['name']}", flush=True)
            if args.verbose or result["returncode"] != 0:
                print(result["output"])
    if args.json:
        print(json.dumps({"workdir": str(workdir), "seconds": round(time.perf_counter() - started, 1),
                          "results": results}, indent=2))
    else:
        print(f"{len(results)} pages and scripts in {time.perf_counter() - started:.0f} s (work folder {workdir})")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
