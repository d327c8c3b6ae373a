"""Entry-point discovery against real pip-installed distributions (tests/fixtures/draftsdk-*)."""

from __future__ import annotations

import json


def _env(site, **extra):
    return {"PYTHONPATH": str(site), **extra}


def test_installed_plugin_is_listed_and_usable(cli, fixture_plugins_dir):
    out = cli("rewards", "--json", env=_env(fixture_plugins_dir))
    assert out.returncode == 0, out.stderr
    rewards = {r["name"]: r for r in json.loads(out.stdout)}
    assert rewards["checker"] == {
        "name": "checker",
        "plugin": "draftsdk-checker",
        "version": "0.3.0",
        "description": "Agreement with a 2x2-pixel checkerboard pattern.",
        "differentiable": True,
        "aliases": ["checkerboard"],
        # no RewardMeta given at registration: the fields are there, empty
        "inputs": "", "score_range": None, "memory_gb": None, "reference": "", "parity_tol": None,
        "weights_license": "", "homepage": "",
    }
    assert "brightness" in rewards  # built-ins still there


def test_broken_typo_and_duplicate_plugins_are_reported_not_fatal(cli, fixture_plugins_dir):
    out = cli("plugins", "--json", env=_env(fixture_plugins_dir))
    assert out.returncode == 0, out.stderr
    plugins = {p["distribution"]: p for p in json.loads(out.stdout)}
    assert plugins["draftsdk-broken"]["error"] == (
        "failed to import: ModuleNotFoundError: No module named 'draftsdk_dependency_that_is_not_installed'"
    )
    assert plugins["draftsdk-broken"]["entry_point"] == "broken = draftsdk_broken"
    assert plugins["draftsdk-typo"]["error"] == "implements unknown hook 'register_reward'; did you mean 'register_rewards'?"
    assert plugins["draftsdk-checker"]["error"] is None
    assert plugins["draftsdk-checker"]["rewards"] == ["checker"]

    table = cli("plugins", env=_env(fixture_plugins_dir))
    assert (
        "warning: plugin draftsdk-broken 0.0.1 (entry point broken = draftsdk_broken) failed to import: "
        "ModuleNotFoundError" in table.stderr
    )


def test_duplicate_from_installed_plugin_names_both(cli, fixture_plugins_dir, tmp_path):
    image = tmp_path / "white.png"
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 255, 255)).save(image)
    out = cli("score", "--reward", "brightness", "--prompt", "x", str(image), env=_env(fixture_plugins_dir))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: reward 'brightness' from draftsdk-dupe 0.0.3 is already registered by draftsdk 0.1.0; "
        "uninstall one of them or choose with DRAFTSDK_LOAD_PLUGINS"
    )


def test_load_plugins_env_restricts_loading(cli, fixture_plugins_dir):
    out = cli("plugins", "--json", env=_env(fixture_plugins_dir, DRAFTSDK_LOAD_PLUGINS="draftsdk-checker,dupe"))
    loaded = {p["distribution"] for p in json.loads(out.stdout)}
    assert {"draftsdk-checker", "draftsdk-dupe"} <= loaded
    assert not loaded & {"draftsdk-broken", "draftsdk-typo"}

    none = cli("plugins", "--json", env=_env(fixture_plugins_dir, DRAFTSDK_LOAD_PLUGINS=""))
    assert {p["distribution"] for p in json.loads(none.stdout)} == {"draftsdk"}


def test_asking_for_a_broken_plugins_reward_explains_why(cli, fixture_plugins_dir, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(image)
    out = cli("score", "--reward", "broken", "--prompt", "x", str(image), env=_env(fixture_plugins_dir))
    assert out.returncode == 2
    assert out.stderr.startswith(
        "error: reward 'broken' is unavailable: plugin draftsdk-broken 0.0.1 (entry point broken = draftsdk_broken) "
        "failed to import: ModuleNotFoundError"
    )


def test_load_plugins_typo_is_named_in_the_unknown_reward_error(cli, fixture_plugins_dir, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(image)
    out = cli("score", "--reward", "checker", "--prompt", "x", str(image),
              env=_env(fixture_plugins_dir, DRAFTSDK_LOAD_PLUGINS="draftsdk-chekcer"))
    assert out.returncode == 2
    line = out.stderr.strip()
    assert "\n" not in line and line.startswith("error: unknown reward 'checker'.")
    assert "DRAFTSDK_LOAD_PLUGINS names 'draftsdk-chekcer', which matches no installed plugin (did you mean 'draftsdk-checker'?)" in line
    assert "plugin draftsdk-checker is installed but DRAFTSDK_LOAD_PLUGINS does not load it" in line


def test_trace_names_skipped_plugins_and_load_errors(cli, fixture_plugins_dir):
    out = cli("plugins", env=_env(fixture_plugins_dir, DRAFTSDK_TRACE_PLUGINS="1", DRAFTSDK_LOAD_PLUGINS="draftsdk-checker,broken,nope"))
    trace = out.stderr
    assert "draftsdk-trace: plugin checker (draftsdk-checker 0.3.0 (entry point checker = draftsdk_checker)) loaded" in trace
    assert "draftsdk-trace: plugin broken (draftsdk-broken 0.0.1 (entry point broken = draftsdk_broken)) failed: failed to import" in trace
    assert "draftsdk-trace: plugin typo (draftsdk-typo" in trace and "skipped: not in DRAFTSDK_LOAD_PLUGINS" in trace
    assert "DRAFTSDK_LOAD_PLUGINS names 'nope', which matches no installed plugin" in trace
