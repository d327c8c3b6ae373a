"""Shared fixtures for draftsdk's core tests (all offline, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures"


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Every test starts from freshly discovered plugins and leaves no in-process plugin behind."""
    from draftsdk.plugins import reset_plugins

    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(scope="session")
def fixture_plugins_dir(tmp_path_factory) -> Path:
    """The test plugin distributions of tests/fixtures, really pip-installed into a target folder."""
    target = tmp_path_factory.mktemp("site")
    dists = sorted(str(p) for p in FIXTURE_PLUGINS.iterdir() if (p / "pyproject.toml").exists())
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), *dists],
        check=True,
    )
    return target


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m draftsdk ARGS` in a subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "draftsdk", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )


@pytest.fixture
def cli():
    """The `run_cli` helper: `cli("rewards", "--json")` -> CompletedProcess."""
    return run_cli


# Saved tiny random-weight flow-matching pipelines shared by the family test modules: name -> (family, builder options)
FLOW_PIPELINES = {
    "sd3": ("sd3", {}),
    "sd3-shift1-no-t5": ("sd3", {"shift": 1.0, "t5": False}),
    "flux-dev": ("flux", {}),
    "flux-schnell": ("flux", {"guidance_embeds": False}),
    "flux2-klein": ("flux2-klein", {}),
    "flux2-klein-distilled": ("flux2-klein", {"is_distilled": True}),
    "qwenimage": ("qwenimage", {}),
}


@pytest.fixture(scope="session")
def flow_folder(tmp_path_factory):
    """``flow_folder(name)``: the folder of the tiny pipeline ``FLOW_PIPELINES[name]``, built once per session."""
    from draftsdk.testing import save_tiny_pipeline

    root = tmp_path_factory.mktemp("flow-pipelines")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            family, options = FLOW_PIPELINES[name]
            built[name] = save_tiny_pipeline(root / name, family=family, **options)
        return built[name]

    return get
