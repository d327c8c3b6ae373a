"""The documentation site builds offline with `mkdocs build --strict`, and it documents what the code
offers: every hook with its signature, every public name, the CLI and every configuration field.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
SNIPPET = re.compile(r'--8<--\s+"([^"]+)"')
# pages written by the reward plugins' authors, and generated pages: not held to the rules of
# hand-written pages (they are still built, and their snippets still checked)
PLUGIN_PAGES = {f"rewards/{name}.md" for name in ("aesthetic", "hpsv2", "pickscore", "owlvit", "adversarial", "clipscore",
                                                  "imagereward")}
GENERATED_PAGES = {"reference/cli.md", "reference/configuration.md"}


def _env() -> dict[str, str]:
    return {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}


def _mkdocs_config() -> dict:
    """mkdocs.yml as data; mkdocs' own YAML tags (!relative ...) are read as None."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(MKDOCS_YML.read_text(encoding="utf-8"), Loader=Loader)


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _pages() -> list[Path]:
    """Every Markdown page of the site (the example plugin's README is excluded from the build)."""
    return sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.relative_to(DOCS).parts)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"draftsdk_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _gen_reference():
    spec = importlib.util.spec_from_file_location("draftsdk_docs_gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with `mkdocs build --strict` into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


# -- the build --------------------------------------------------------------------------------------


def test_site_builds_strict_and_offline(site):
    assert (site / "index.html").is_file()
    config = _mkdocs_config()
    assert config["theme"]["font"] is False, "theme.font must be false: no Google Fonts link"
    plugin_names = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    assert "privacy" not in plugin_names, "the privacy plugin downloads assets at build time"
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in html, page
        assert not re.search(r'<script[^>]+src="https?://', html), f"{page} loads a script from the network"


def test_every_page_is_in_the_nav():
    nav = _nav_pages(_mkdocs_config()["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()} | set(_load("gen_benchmarks").PAGES)
    assert sorted(set(nav) - pages) == [], "nav entries without a page"
    assert sorted(pages - set(nav)) == [], "pages missing from the nav"


def test_main_sections_exist():
    nav = _mkdocs_config()["nav"]
    sections = [next(iter(item)) for item in nav]
    for section in ("Tutorials", "How-to guides", "Explanation", "Reference", "Troubleshooting"):
        assert section in sections


# -- snippets ---------------------------------------------------------------------------------------


def _section_lines(path: Path, section: str) -> list[str] | None:
    lines, inside, found = [], False, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.search(rf"--8<--\s*\[\s*start\s*:\s*{re.escape(section)}\s*\]", line):
            inside = found = True
            continue
        if re.search(rf"--8<--\s*\[\s*end\s*:\s*{re.escape(section)}\s*\]", line):
            inside = False
            continue
        if inside:
            lines.append(line)
    return lines if found else None


def _snippet_refs() -> list[tuple[Path, str, str]]:
    refs = []
    for page in _pages():
        for target in SNIPPET.findall(page.read_text(encoding="utf-8")):
            path, _, section = target.partition(":")
            refs.append((page, path, section))
    return refs


def test_every_snippet_reference_resolves():
    refs = _snippet_refs()
    assert len(refs) > 40
    for page, path, section in refs:
        where = f"{page.relative_to(ROOT)}: --8<-- {path}{':' + section if section else ''}"
        assert (ROOT / path).is_file(), f"{where}: no such file"
        if section:
            assert _section_lines(ROOT / path, section) is not None, f"{where}: no section '{section}'"


def test_included_code_fits_the_page():
    """Code on our pages is at most 88 columns wide (wider lines scroll sideways)."""
    too_wide = []
    for page, path, section in _snippet_refs():
        if page.relative_to(DOCS).as_posix() in PLUGIN_PAGES:
            continue
        file = ROOT / path
        if section:
            lines = _section_lines(file, section) or []
        else:
            lines = [line for line in file.read_text(encoding="utf-8").splitlines() if "--8<--" not in line]
        for line in textwrap.dedent("\n".join(lines)).splitlines():
            if len(line) > 88:
                too_wide.append(f"{path}:{section}: {line}")
    assert not too_wide, "\n".join(sorted(set(too_wide)))


def test_a_missing_snippet_fails_the_build(tmp_path):
    """The site's snippets configuration (check_paths) turns a missing file or section into an error."""
    config = _mkdocs_config()
    extensions = []
    for ext in config["markdown_extensions"]:
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            options = dict(ext["pymdownx.snippets"])
            assert options["check_paths"] is True
            options["base_path"] = [str(ROOT)]
            ext = {"pymdownx.snippets": options}
        extensions.append(ext)
    docs = tmp_path / "docs"
    docs.mkdir()
    for target, expected in (
        ("docs/examples/no_such_file.py", "could not be found"),
        ("docs/examples/custom_reward.py:no_such_section", "could not be located"),
    ):
        (docs / "index.md").write_text(f'# Broken\n\n```python\n--8<-- "{target}"\n```\n', encoding="utf-8")
        cfg = {"site_name": "broken", "docs_dir": str(docs), "site_dir": str(tmp_path / "site"),
               "markdown_extensions": extensions}
        (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode != 0, f"{target}: the build passed"
        assert expected in proc.stdout + proc.stderr


def test_python_on_our_pages_comes_from_example_files():
    """Hand-written pages show Python only through includes of files the tests run."""
    fence = re.compile(r"^([ \t]*)```python\n(.*?)^\1```", re.S | re.M)
    for page in _pages():
        rel = page.relative_to(DOCS).as_posix()
        if rel in PLUGIN_PAGES or rel in GENERATED_PAGES:
            continue
        for match in fence.finditer(page.read_text(encoding="utf-8")):
            code = [line.strip() for line in match.group(2).splitlines() if line.strip()]
            inline = [line for line in code if not line.startswith("--8<--")]
            assert not inline, f"{rel}: Python that is not included from docs/examples/: {inline[:3]}"


# -- what must be documented ------------------------------------------------------------------------


def test_every_hook_is_documented_with_its_signature():
    import pluggy

    from draftsdk import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    hooks = {name: getattr(pm.hook, name).spec.argnames for name in vars(pm.hook) if not name.startswith("_")}
    assert "register_rewards" in hooks
    page = (DOCS / "reference" / "hooks.md").read_text(encoding="utf-8")
    for name, args in hooks.items():
        signature = f"{name}({', '.join(args)})"
        assert f"## {signature}" in page, f"hook {signature} has no heading in docs/reference/hooks.md"
    assert "## register_rewards(register)" in page


def _public_names(module) -> set[str]:
    """``__all__`` plus the functions and classes a module defines without a leading underscore."""
    names = set(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            names.add(name)
    return names


def test_every_public_name_is_in_the_api_reference(site):
    import draftsdk
    from draftsdk import extensions, lora, models, plugin_utils, plugins, steppers, testing, variants

    html = "".join(p.read_text(encoding="utf-8") for p in (site / "reference" / "api").glob("*.html"))
    ids = set(re.findall(r'id="(draftsdk[\w.]*)"', html))
    missing = [f"draftsdk.{name}" for name in draftsdk.__all__ if f"draftsdk.{name}" not in ids]
    for module in (lora, testing, plugins, plugin_utils, models, steppers, variants, extensions):
        missing += [f"{module.__name__}.{name}" for name in sorted(_public_names(module))
                    if f"{module.__name__}.{name}" not in ids]
    assert not missing, f"not in docs/reference/api/: {missing}"


def test_pytest_fixtures_are_documented():
    page = (DOCS / "reference" / "api" / "testing.md").read_text(encoding="utf-8")
    assert "::: draftsdk.pytest_plugin" in page
    how_to = (DOCS / "howto" / "write-a-plugin.md").read_text(encoding="utf-8")
    for fixture in ("check_reward", "tiny_sd_path"):
        assert f"`{fixture}`" in how_to


def test_generated_reference_pages_are_current():
    stale = _gen_reference().stale()
    assert not stale, f"regenerate with `python docs/gen_reference.py`: {[str(p.relative_to(ROOT)) for p in stale]}"


def _commands(parser, words):
    yield words, parser
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, child in action.choices.items():
                yield from _commands(child, [*words, name])


def test_cli_reference_matches_the_parser():
    from draftsdk.cli import build_parser

    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    for words, parser in _commands(build_parser(), ["draftsdk"]):
        assert f"`{' '.join(words)}`" in page, f"{' '.join(words)} is not in the CLI reference"
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in page, f"{' '.join(words)} {option} is not in the CLI reference"
            if not action.option_strings and action.help and action.help != "==SUPPRESS==":
                assert action.help in page


def test_configuration_reference_lists_every_field():
    from draftsdk.config import TrainConfig

    page = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    for name, field in TrainConfig.model_fields.items():
        assert f'<a id="{name}"></a>`{name}`' in page, name
        assert (field.description or "").replace("|", "\\|") in page, name


# -- pictures ---------------------------------------------------------------------------------------


DEMO_PICTURES = ("before_after.png", "reward_curve.png", "alpha_strip.png")


def test_getting_started_shows_the_demo_pictures():
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    for name in DEMO_PICTURES:
        assert f'src="assets/demo/{name}"' in page


@pytest.mark.skipif(not (DOCS / "assets" / "demo").is_dir(),
                    reason="docs/assets/demo/ has not been filled from a `draftsdk demo` run yet")
def test_demo_pictures_are_in_place():
    for name in DEMO_PICTURES:
        assert (DOCS / "assets" / "demo" / name).is_file(), name


def test_example_plugin_tests_are_collected_from_the_repository_root():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "docs"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_sharpness.py::test_reward_contract" in proc.stdout
    assert "test_sharpness.py::test_found_through_its_entry_point_once_installed" in proc.stdout


# -- the site as a reader gets it -------------------------------------------------------------------


def _html_code_blocks(html_text: str) -> list[str]:
    """The text of the highlighted code blocks of a built page, in order."""
    import html as html_lib

    blocks = re.findall(r'<div class="[^"]*highlight"><pre>(.*?)</pre>', html_text, re.S)
    return [html_lib.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks]


def _same_code(a: str, b: str) -> bool:
    lines = lambda text: [line.rstrip() for line in text.strip("\n").splitlines()]  # noqa: E731
    return lines(a) == lines(b)


def test_the_docs_tests_run_exactly_the_code_the_site_shows(site):
    """docs/run_examples.py renders a page's code itself; what it runs must be, block by block, the
    code of the built page (the same includes, sections, dedenting and order)."""
    runner = _load("run_examples")
    pages = [p for p in runner.discover() if p.suffix == ".md"]
    assert len(pages) >= 12
    for page in pages:
        rel = runner.page_name(page)
        built = _html_code_blocks((site / rel.replace(".md", ".html")).read_text(encoding="utf-8"))
        rendered = "\n".join(runner._snippet_preprocessor().run(page.read_text(encoding="utf-8").splitlines()))
        ours = runner.fenced_blocks(rendered)
        assert len(built) == len(ours), f"{rel}: {len(built)} code blocks on the site, {len(ours)} in the source"
        for number, ((lang, code), shown) in enumerate(zip(ours, built), start=1):
            assert _same_code(code, shown), f"{rel}, code block {number} ({lang}): the site shows other code"
        run = runner.page_code(page)
        assert _same_code(run, "\n\n".join(code for lang, code in ours if lang in ("python", "py")))
        assert "--8<--" not in run


def test_search_works_from_disk(site):
    """Material's offline plugin: the search index is a script, and the Web Worker shim it needs is
    served from the site itself, not from unpkg.com."""
    config = _mkdocs_config()
    plugin_names = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    assert "search" in plugin_names and "offline" in plugin_names
    assert (site / "search" / "search_index.js").read_text(encoding="utf-8").startswith("var __index = ")
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'src="assets/javascripts/iframe-worker-shim.js"' in index
    assert (site / "assets" / "javascripts" / "iframe-worker-shim.js").stat().st_size > 500
    assert "unpkg.com" not in index


def test_long_signatures_are_wrapped(site):
    """mkdocstrings formats signatures with ruff (or black) when one is installed: long ones wrap,
    one parameter a line, instead of running off the page."""
    import html as html_lib

    assert importlib.util.find_spec("ruff") or importlib.util.find_spec("black"), "pip install ruff"
    options = next(p for p in _mkdocs_config()["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = options["mkdocstrings"]["handlers"]["python"]["options"]
    assert python["separate_signature"] is True and python["line_length"] <= 88
    html = (site / "reference" / "api" / "draftsdk.html").read_text(encoding="utf-8")
    signatures = [html_lib.unescape(re.sub(r"<[^>]+>", "", s))
                  for s in re.findall(r'<div class="doc-signature highlight"><pre>(.*?)</pre>', html, re.S)]
    assert len(signatures) > 20
    sample = next(s for s in signatures if s.lstrip().startswith("sample("))
    assert "\n    prompts: Sequence[str],\n" in sample, sample
    too_long = [line for s in signatures for line in s.splitlines() if len(line) > python["line_length"] + 12]
    assert not too_long, too_long[:3]


# -- the benchmarks page ----------------------------------------------------------------------------


def test_benchmarks_page_shows_every_result_file():
    gen = _load("gen_benchmarks")
    everything = {p for p in gen.RESULTS.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert everything, "benchmarks/results/ is empty"
    missing = sorted(p.relative_to(ROOT).as_posix() for p in everything - gen.used_files())
    assert not missing, f"result files the Benchmarks page does not show: {missing}"
    page = gen.render()
    for path in everything:
        if path.suffix != ".png":
            assert f"`{path.relative_to(ROOT).as_posix()}`" in page


def test_every_result_names_machine_versions_command_and_date():
    gen = _load("gen_benchmarks")
    results = gen.load_results()
    for section in ("Sample efficiency", "Step cost and memory", "GPU suite"):
        assert any(gen._section_of(r) == section for r in results), f"no {section} results"
    for result in results:
        machine = result.data.get("machine", {})
        assert result.data.get("command", "").startswith("python benchmarks/"), result.stem
        assert re.match(r"\d{4}-\d{2}-\d{2}", machine.get("date", "")), result.stem
        for name in ("python", "torch", "diffusers"):
            assert machine.get(name), f"{result.stem}: no {name} version"
        if result.report:
            # the .md and the .json are the output of the same run
            assert result.data["command"] in result.report, f"{result.stem}: .md and .json disagree"
            assert machine["date"] in result.report or machine["date"][:10] in result.report, result.stem


def test_benchmarks_page_is_built_from_the_current_results(site):
    """The built page holds every result's command, date and table rows: it cannot lag behind."""
    import html as html_lib

    gen = _load("gen_benchmarks")
    built = html_lib.unescape(re.sub(r"<[^>]+>", "", (site / "benchmarks.html").read_text(encoding="utf-8")))
    built = re.sub(r"\s+", " ", built)
    for result in gen.load_results():
        assert result.data["command"] in built, result.stem
        assert result.data["machine"]["date"] in built, result.stem
        for row in re.findall(r"^\|(?!-)(.+)\|$", result.report, re.M)[:40]:
            cells = [html_lib.unescape(c.strip().replace("**", "").replace("`", "")) for c in row.split("|")]
            assert " ".join(c for c in cells if c) in " ".join(built.split()) or all(c in built for c in cells), (
                f"{result.stem}: table row not on the built page: {row}"
            )
        for image in result.images:
            assert (site / gen.ASSETS / image.relative_to(gen.RESULTS)).is_file()
    assert "benchmarks.md" in _nav_pages(_mkdocs_config()["nav"])
    assert "docs/gen_benchmarks.py" in (_mkdocs_config().get("hooks") or [])


def test_benchmarks_page_follows_new_results(tmp_path):
    gen = _load("gen_benchmarks")
    results = gen.load_results()
    new = gen.Result("gpu/2027-01-01-h200", {"command": "python benchmarks/gpu_suite.py",
                     "machine": {"date": "2027-01-01 10:00 UTC", "gpu": "NVIDIA H200", "gpu_memory_gib": 139.8,
                                 "torch": "2.14.1", "python": "3.11.7", "diffusers": "0.42.1"}},
                     "# GPU suite\n\nCommand: x\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", [])
    page = gen.render([*results, new])
    gpu = page[page.index("## GPU suite"):]
    assert "### gpu/2027-01-01-h200" in gpu and "GPU NVIDIA H200, 139.8 GiB" in gpu
    assert "No GPU results yet" not in gpu and "| 1 | 2 |" in gpu and "Command: x" not in gpu
    other = gen.Result("new_thing", {"command": "python benchmarks/new.py", "machine": {}}, "", [])
    assert "## Other results" in gen.render([*results, other])
