"""The Benchmarks page, generated from benchmarks/results/ each time the site is built.

mkdocs.yml loads this file as a hook (``hooks:``): :func:`on_files` adds ``benchmarks.md``, made by
:func:`render` from the result files, and the result plots to the site's files. Nothing is written
into docs/, so the page cannot fall behind the results: a new or changed result file is on the page
at the next build. Every file under benchmarks/results/ appears on it (:func:`used_files`, checked by
tests/test_docs.py); a file no section claims lands under "Other results".

For each result the page shows what the benchmark script recorded next to its numbers: the machine,
the library versions, the command and the date (each ``*.json`` holds them; the ``*.md`` of the same
run holds the tables, which the page shows as they are).

    python docs/gen_benchmarks.py               # print the page
    python docs/gen_benchmarks.py -o page.md    # write it somewhere (not under docs/)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = "benchmarks.md"
ASSETS = "assets/benchmarks"
PAGES = (PAGE,)          # pages this hook adds (they are not files under docs/)
VERSIONS = ("python", "torch", "diffusers", "transformers", "peft")


@dataclass
class Result:
    """One run of a benchmark script: its JSON record, its Markdown report, its plots."""

    stem: str            # path under results/ without the suffix, e.g. "gpu/tiny-cpu"
    data: dict
    report: str          # the .md next to the .json ('' if none)
    images: list[Path]

    @property
    def files(self) -> list[Path]:
        base = RESULTS / self.stem
        found = [p for p in (base.with_suffix(".json"), base.with_suffix(".md")) if p.exists()]
        return found + self.images


def load_results() -> list[Result]:
    results = []
    for path in sorted(RESULTS.rglob("*.json")):
        stem = path.relative_to(RESULTS).with_suffix("").as_posix()
        report = path.with_suffix(".md")
        images = sorted(p for p in path.parent.glob(path.stem + "*.png"))
        results.append(Result(stem, json.loads(path.read_text(encoding="utf-8")),
                              report.read_text(encoding="utf-8") if report.exists() else "", images))
    return results


def machine_line(machine: dict) -> str:
    """'Machine: ...; versions: ...; date' from a result's ``machine`` record."""
    hardware = []
    if machine.get("gpu"):
        memory = f", {machine['gpu_memory_gib']} GiB" if machine.get("gpu_memory_gib") else ""
        hardware.append(f"GPU {machine['gpu']}{memory}")
    else:
        hardware.append("no GPU" if machine.get("device", "cpu") == "cpu" else f"device {machine['device']}")
    if machine.get("cpu_count"):
        hardware.append(f"{machine['cpu_count']} CPU cores")
    if machine.get("torch_threads"):
        hardware.append(f"{machine['torch_threads']} torch thread(s)")
    if machine.get("platform"):
        hardware.append(machine["platform"])
    if machine.get("load_average") is not None:
        hardware.append(f"load average {machine['load_average']:.1f} at the start")
    versions = ", ".join(f"{name} {machine[name]}" for name in VERSIONS if machine.get(name))
    if machine.get("cuda"):
        versions += f", CUDA {machine['cuda']}"
    return (f"**Machine:** {'; '.join(hardware)}.  \n**Versions:** {versions or 'not recorded'}.  \n"
            f"**Date:** {machine.get('date', 'not recorded')}.")


def report_body(report: str) -> str:
    """The tables and notes of a script's Markdown report: its title, command and machine lines
    dropped (the page shows those from the JSON), headings moved below the page's, and a line
    break kept after each line of prose (the reports put one figure on each line)."""
    lines, fenced = [], False
    for line in report.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            if re.match(r"^(Command|Machine):", line) or re.match(r"^# ", line):
                continue
            heading = re.match(r"^(#{2,5}) (.*)", line)
            if heading:
                line = f"#{heading.group(1)} {heading.group(2)}"
            elif line.strip() and not re.match(r"^\s*([|>*-]|\d+\.)", line):
                line = line.rstrip() + "  "
        lines.append(line)
    return "\n".join(lines).strip()


SECTIONS = (
    ("sample_efficiency", "Sample efficiency", (
        "Queries of the reward until the target is reached, per variant, on the embedded digits world "
        "(`benchmarks/sample_efficiency.py`): the paper's adversarial experiment in miniature.")),
    ("step_cost", "Step cost and memory", (
        "Seconds per update and peak memory of one update per variant, on a tiny Stable-Diffusion-shaped "
        "pipeline with a free reward, so that the numbers isolate the DRaFT machinery "
        "(`benchmarks/step_cost.py`).")),
    ("reward_cost", "Reward cost", (
        "Seconds and memory per image of each reward plugin's model, forward and backward "
        "(`benchmarks/reward_cost.py`; `--quick` runs use the plugins' tiny stand-in weights).")),
    ("gpu/", "GPU suite", (
        "Step cost, throughput and peak memory per model family and variant (`benchmarks/gpu_suite.py`). "
        "A run named `tiny-cpu` is the suite's CPU check on toy pipelines: it shows that the code runs, "
        "its figures are not GPU figures.")),
)


def _section_of(result: Result) -> str | None:
    return next((title for prefix, title, _ in SECTIONS if result.stem.startswith(prefix)), None)


def render(results: list[Result] | None = None) -> str:
    """The page, as Markdown."""
    results = load_results() if results is None else results
    out = [
        "# Benchmarks",
        "",
        "Generated from `benchmarks/results/` when the site is built (`docs/gen_benchmarks.py`), so it "
        "always shows the files there. Each result names the machine, the library versions, the command "
        "that produced it and the date. `benchmarks/README.md` discusses what the figures mean against "
        "the project's targets.",
        "",
    ]
    titles = [title for _, title, _ in SECTIONS] + ["Other results"]
    intros = {title: intro for _, title, intro in SECTIONS}
    for title in titles:
        members = [r for r in results if (_section_of(r) or "Other results") == title]
        if title == "Other results" and not members:
            continue
        out += [f"## {title}", ""]
        if title in intros:
            out += [intros[title], ""]
        if not members:
            out += ["No results yet.", ""]
        if title == "GPU suite" and not any(r.data.get("machine", {}).get("gpu") for r in members):
            out += ["!!! note \"No GPU results yet\"", "",
                    "    `python benchmarks/gpu_suite.py` on a machine with a CUDA GPU writes "
                    "`benchmarks/results/gpu/<date>-<gpu>.json` and `.md`; they appear here at the next build.",
                    ""]
        for result in members:
            data = result.data
            if len(members) > 1 or title == "GPU suite" or title == "Other results":
                out += [f"### {result.stem}", ""]
            out += [f"**Command:** `{data.get('command', 'not recorded')}`  ", machine_line(data.get("machine", {})), ""]
            for image in result.images:
                rel = image.relative_to(RESULTS).as_posix()
                out += [f"![{result.stem}]({ASSETS}/{rel})", ""]
            body = report_body(result.report)
            if body:
                out += [body, ""]
            files = ", ".join(f"`{p.relative_to(ROOT).as_posix()}`" for p in result.files)
            out += [f"Files: {files}.", ""]
    return "\n".join(out).rstrip() + "\n"


def used_files(results: list[Result] | None = None) -> set[Path]:
    """The result files the page shows."""
    results = load_results() if results is None else results
    return {p for r in results for p in r.files}


# -- the mkdocs hook --------------------------------------------------------------------------------


def on_files(files, config):  # type: ignore[no-untyped-def]
    """Add the generated page and the result plots to the site."""
    from mkdocs.structure.files import File

    results = load_results()
    files.append(File.generated(config, PAGE, content=render(results)))
    for result in results:
        for image in result.images:
            rel = image.relative_to(RESULTS).as_posix()
            files.append(File.generated(config, f"{ASSETS}/{rel}", abs_src_path=str(image)))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the page here instead of printing it")
    args = parser.parse_args(argv)
    page = render()
    if args.output:
        args.output.write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
