"""Every example of the documentation runs.

The pages include code from files under docs/examples/ (pymdownx.snippets). This module runs each
``*.py`` and ``*.sh`` example there through docs/run_examples.py: offline (HF_HUB_OFFLINE=1), on
the CPU, each in its own process and empty working directory, on a tiny random-weight Stable
Diffusion pipeline with tiny run sizes. It also loads every example config file and runs the
example plugin's own tests (collected by pytest from docs/examples/draftsdk-sharpness/tests).
Scripts named after a reward plugin (aesthetic_*, hpsv2_* ...) are run by that plugin's tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
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
SCRIPTS = [p.name for p in runner.discover()]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """Run all examples once (one subprocess that forks one child per example)."""
    workdir = tmp_path_factory.mktemp("docs-examples")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    for name in ("DRAFTSDK_EXAMPLE_MODEL", "DRAFTSDK_EXAMPLE_SDXL_MODEL", "DRAFTSDK_EXAMPLE_SMOKE", "DRAFTSDK_EXAMPLE_REWARDS"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, str(RUNNER), "--json", "--workdir", str(workdir / "work")],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=900,
    )
    assert out.stdout.strip(), f"the example runner printed nothing:\n{out.stderr[-4000:]}"
    report = json.loads(out.stdout)
    return {r["name"]: r for r in report["results"]}


def test_there_are_examples():
    assert len(SCRIPTS) >= 8, SCRIPTS
    for needed in ("custom_reward.py", "combine_rewards.py", "lora_scale_mix.py", "resume.py",
                   "train_ddp.py", "variants.py", "sd15_aesthetic.py", "cli_tour.sh", "model_families.py",
                   "custom_variant.py"):
        assert needed in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(results, name):
    result = results[name]
    assert not result["timed_out"], f"{name} timed out after {result['seconds']} s:\n{result['output']}"
    assert result["returncode"] == 0, f"{name} failed (status {result['returncode']}):\n{result['output']}"


def test_plugin_examples_are_left_to_their_plugins():
    for path in EXAMPLES.glob("*.py"):
        if path.name.startswith(runner.PLUGIN_PREFIXES):
            assert path.name not in SCRIPTS


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
    """Nothing under docs/examples/ escapes the tests: scripts run, configs load, the plugin's
    tests are collected."""
    for path in EXAMPLES.iterdir():
        if path.name.startswith((".", "_")) or path.name == "__pycache__":
            continue
        if path.is_dir():
            assert path.name.startswith("draftsdk-") and (path / "tests").is_dir(), path
        elif path.suffix in (".py", ".sh"):
            assert path.name in SCRIPTS or path.name.startswith(runner.PLUGIN_PREFIXES), path
        else:
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
