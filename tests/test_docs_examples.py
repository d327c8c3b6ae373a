"""Every page's code runs as shown.

docs/run_examples.py renders each page's ``--8<--`` includes with pymdownx.snippets, configured as
the site is, joins the page's ``python`` blocks in order and runs exactly that code in a fresh
process and an empty working directory, offline (HF_HUB_OFFLINE=1) and on the CPU. The pages set up
what they need in code they show (docs/examples/quick_setup.py: a tiny random-weight pipeline and
small run sizes). The ``*.sh`` examples run through the CLI with small sizes on a tiny pipeline. This
module also loads every example config file; the example plugin's own tests are collected by pytest
from docs/examples/draftsdk-sharpness/tests. The reward plugins' pages and scripts (aesthetic_* ...)
are run by those plugins' tests. tests/test_docs.py checks that the code run here is the code the
built site shows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
RUNNER = ROOT / "docs" / "run_examples.py"


def _runner():
    spec = importlib.util.spec_from_file_location("draftsdk_docs_run_examples", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()
RUNS = [runner.name_of(p) for p in runner.discover()]
PAGES = [name for name in RUNS if name.endswith(".md")]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """Run every page and script once (one subprocess that forks one child for each)."""
    workdir = tmp_path_factory.mktemp("docs-examples")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DRAFTSDK_EXAMPLE_MODEL", None)
    out = subprocess.run(
        [sys.executable, str(RUNNER), "--json", "--workdir", str(workdir / "work")],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=900,
    )
    assert out.stdout.strip(), f"the example runner printed nothing:\n{out.stderr[-4000:]}"
    report = json.loads(out.stdout)
    return {r["name"]: r for r in report["results"]}


def test_the_pages_that_show_code_are_run():
    assert len(PAGES) >= 12, PAGES
    for needed in ("index.md", "tutorials/sd15-aesthetic.md", "howto/custom-reward.md",
                   "howto/combine-rewards.md", "howto/lora.md", "howto/resume.md", "howto/multi-gpu.md",
                   "howto/choose-variant.md", "howto/write-a-variant.md", "explanation/model-families.md",
                   "explanation/variants.md", "explanation/failures.md", "troubleshooting.md",
                   "rewards/jpeg.md"):
        assert needed in PAGES
    assert "cli_tour.sh" in RUNS
    shown = {runner.page_name(p) for p in runner.pages_with_python()}
    assert shown - set(PAGES) == set(runner.NOT_RUN) & shown, "a page with Python is neither run nor listed in NOT_RUN"


@pytest.mark.parametrize("name", RUNS)
def test_page_code_runs(results, name):
    result = results[name]
    assert not result["timed_out"], f"{name} timed out after {result['seconds']} s:\n{result['output']}"
    assert result["returncode"] == 0, f"{name} failed (status {result['returncode']}):\n{result['output']}"


def test_a_page_runs_in_a_fresh_namespace_with_only_what_it_shows(tmp_path):
    """The runner executes the page's blocks and nothing else: a name a page uses without defining
    it fails the run, as it would in a reader's interpreter."""
    page = runner.DOCS / "howto" / "custom-reward.md"
    code = runner.page_code(page)
    assert code.startswith("import torch")
    assert "MODEL = str(save_tiny_pipeline" in code and code.index("QUICK = ") < code.index("**QUICK")
    assert "--8<--" not in code
    broken = tmp_path / "page.md"
    broken.write_text('# x\n\n```python\nprint(MODEL)\n```\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", runner.page_code(broken)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode != 0 and "NameError" in proc.stderr


def test_code_blocks_follow_the_fences():
    text = (
        "# Page\n\n```python\na = 1\n```\n\n```bash\nrm -rf /\n```\n\n"
        '!!! note\n\n    ```python title="x.py"\n    b = a + 1\n\n    c = b\n    ```\n\n'
        "````python\nd = '```'\n````\n\n```toml\nx = 1\n```\n"
    )
    assert runner.code_blocks(text) == ["a = 1", "b = a + 1\n\nc = b", "d = '```'"]


def test_includes_render_as_on_the_site():
    """Sections are cut out and dedented, whole files lose their section markers, an include keeps
    the indentation of its line."""
    pre = runner._snippet_preprocessor()
    lines = pre.run(['    --8<-- "docs/examples/custom_loop.py:where"', '--8<-- "docs/examples/quick_setup.py"'])
    text = "\n".join(lines)
    assert lines[0].startswith("    out = draftsdk.sample(")
    assert "--8<--" not in text and "[start:" not in text
    assert "MODEL = str(save_tiny_pipeline" in text


def test_example_scripts_hide_nothing():
    """Outside their docstring, the Python examples hold only sections that pages show: no code a
    reader would not see."""
    import ast

    for path in sorted(EXAMPLES.glob("*.py")):
        if path.name.startswith(runner.PLUGIN_PREFIXES):
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        body = tree.body[1:] if tree.body and isinstance(getattr(tree.body[0], "value", None), ast.Constant) else tree.body
        hidden, inside = [], False
        sections = re.findall(r"--8<-- \[start:(\w+)\]", text)
        lines = text.splitlines()
        in_section = [False] * (len(lines) + 1)
        for number, line in enumerate(lines, start=1):
            if "--8<-- [start:" in line:
                inside = True
            elif "--8<-- [end:" in line:
                inside = False
            in_section[number] = inside
        for node in body if sections else []:     # no sections: the page includes the whole file
            if not all(in_section[n] for n in range(node.lineno, node.end_lineno + 1)):
                hidden.append(f"{path.name}:{node.lineno}")
        assert not hidden, f"code outside any section (no page shows it): {hidden}"
        included = "".join(p.read_text(encoding="utf-8") for p in runner.pages())
        whole = f'--8<-- "docs/examples/{path.name}"' in included
        for section in sections:
            assert whole or f'--8<-- "docs/examples/{path.name}:{section}"' in included, (
                f"{path.name}:{section} is on no page"
            )
        assert sections or whole, f"{path.name} has no sections and no page includes all of it"


def test_every_example_is_on_a_page_that_is_run():
    run_pages = "".join((runner.DOCS / name).read_text(encoding="utf-8") for name in PAGES)
    for path in sorted(EXAMPLES.glob("*.py")):
        if not path.name.startswith(runner.PLUGIN_PREFIXES):
            assert f"docs/examples/{path.name}" in run_pages, f"{path.name} is on no page the tests run"


def test_plugin_examples_are_left_to_their_plugins():
    for path in EXAMPLES.glob("*.py"):
        if path.name.startswith(runner.PLUGIN_PREFIXES):
            assert path.name not in RUNS
    for page in runner.PLUGIN_PAGES:
        assert page not in RUNS


def test_plugin_examples_are_run_by_their_plugin_tests():
    """A script named after a reward plugin is skipped here, so its plugin's tests must run it
    (benchmarks live in benchmarks/, not here)."""
    for path in EXAMPLES.glob("*.py"):
        prefix = next((p for p in runner.PLUGIN_PREFIXES if path.name.startswith(p)), None)
        if prefix is None:
            continue
        tests = ROOT / "plugins" / f"draftsdk-{prefix.rstrip('_')}" / "tests"
        assert any(path.name in t.read_text(encoding="utf-8") for t in tests.rglob("*.py")), (
            f"{path.name} is run neither here nor by {tests.relative_to(ROOT)}"
        )


def test_every_file_in_examples_is_covered():
    """Nothing under docs/examples/ escapes the tests: pages run the scripts' code, shell scripts
    run, configs load, the plugin's tests are collected."""
    for path in EXAMPLES.iterdir():
        if path.name.startswith((".", "_")) or path.name == "__pycache__":
            continue
        if path.is_dir():
            assert path.name.startswith("draftsdk-") and (path / "tests").is_dir(), path
        elif path.suffix == ".sh":
            assert path.name in RUNS, path
        elif path.suffix != ".py":
            assert path.suffix in (".toml", ".yaml", ".yml", ".json"), f"untested example file {path}"


CONFIGS = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".toml", ".yaml", ".yml", ".json"))


@pytest.mark.parametrize("name", CONFIGS)
def test_example_config_loads(name):
    """Every example config validates, and names only rewards that are registered."""
    import draftsdk
    from draftsdk.config import TrainConfig

    config = TrainConfig.from_file(EXAMPLES / name)
    assert config.rewards, f"{name} has no rewards"
    for reward_name in config.rewards:
        info = draftsdk.reward_info(reward_name)   # UnknownRewardError if the plugin is missing
        assert info.differentiable in (True, None)


def test_shell_examples_hold_only_draftsdk_commands():
    for path in EXAMPLES.glob("*.sh"):
        for command in runner.shell_commands(path):
            assert command.startswith("draftsdk "), f"{path.name}: {command}"


def test_smoke_substitution(monkeypatch):
    monkeypatch.setenv("DRAFTSDK_EXAMPLE_MODEL", "/tiny")
    words = runner.smoke_command(["train", "x.toml", "--set", "resume=true"])
    assert words[:4] == ["train", "x.toml", "--set", "resume=true"]
    assert "steps=4" in words and 'model="/tiny"' in words
    assert 'rewards={"brightness": 1.0}' in words
    sample = runner.smoke_command(["sample", "--model", runner.SD15])
    assert sample[2] == "/tiny" and sample[-2:] == ["--steps", "4"]
