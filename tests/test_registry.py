"""The plugin registry: listing, look-up, suggestions, duplicates, broken and misspelled plugins."""

from __future__ import annotations

import subprocess
import sys

import pytest

import draftsdk
from draftsdk.plugins import list_plugins, register_plugin


class _LocalRewards:
    @draftsdk.hookimpl
    def register_rewards(self, register):
        class Half:
            """Half the brightness."""

            name = "half"
            differentiable = True

            def __init__(self, factor: float = 0.5):
                self.factor = factor

            def __call__(self, images, prompts):
                return images.mean(dim=(1, 2, 3)) * self.factor

        register(Half, aliases=("halve",))


def test_builtins_are_listed_with_metadata():
    infos = {r.name: r for r in draftsdk.list_rewards()}
    assert {"brightness", "saturation", "contrast", "target-color"} <= set(infos)
    assert infos["brightness"].plugin == "draftsdk"
    assert infos["brightness"].differentiable is True
    assert infos["brightness"].description == "Mean pixel intensity (0 = black, 1 = white)."
    assert infos["target-color"].aliases == ("target-colour",)


def test_hook_register_rewards_with_options_and_alias():
    register_plugin(_LocalRewards(), name="local-test")
    reward = draftsdk.get_reward("halve", factor=0.25)
    import torch

    assert reward(torch.ones(2, 3, 4, 4), ["a", "b"]).tolist() == [0.25, 0.25]
    assert draftsdk.reward_info("half").plugin == "<local>"


def test_unknown_reward_suggests_close_matches_and_lists_installed():
    with pytest.raises(draftsdk.UnknownRewardError) as err:
        draftsdk.get_reward("brightnes")
    message = str(err.value)
    assert message.startswith("unknown reward 'brightnes'. Did you mean 'brightness'?")
    installed = message.split("Installed: ", 1)[1].split(", ")
    assert {"brightness", "contrast", "saturation", "target-color", "target-colour"} <= set(installed)
    assert installed == sorted(installed)
    assert isinstance(err.value, KeyError)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(TypeError, match=r"reward 'target-color' got unknown option\(s\) 'colour'; it accepts: color"):
        draftsdk.get_reward("target-color", colour=(1, 0, 0))


def test_bad_option_value_is_one_line():
    with pytest.raises(ValueError, match=r"target-color: color must be three numbers in \[0, 1\], got \[2, 0, 0\]"):
        draftsdk.get_reward("target-color", color=(2, 0, 0))


def test_registering_an_instance_is_refused_and_reported():
    class Bad:
        @draftsdk.hookimpl
        def register_rewards(self, register):
            from draftsdk.default_plugins.basic import Brightness

            register(Brightness())

    register_plugin(Bad(), name="bad-instance", distribution="draftsdk-bad", version="1.0")
    names = [r.name for r in draftsdk.list_rewards()]
    assert "brightness" in names  # the others still load
    error = {p.name: p.error for p in list_plugins()}["bad-instance"]
    assert error == (
        "register_rewards failed: TypeError: plugin draftsdk-bad 1.0: register() takes a reward class or a "
        "factory function, not a Brightness instance; pass the class (weights must load only when the reward is used)"
    )


def test_duplicate_name_names_both_distributions():
    class Dupe:
        @draftsdk.hookimpl
        def register_rewards(self, register):
            from draftsdk.default_plugins.basic import Contrast

            register(Contrast)

    register_plugin(Dupe(), name="dupe", distribution="draftsdk-dupe", version="0.0.3")
    with pytest.raises(draftsdk.DuplicateRewardError) as err:
        draftsdk.get_reward("contrast")
    assert str(err.value) == (
        "reward 'contrast' from draftsdk-dupe 0.0.3 is already registered by draftsdk 0.1.0; "
        "uninstall one of them or choose with DRAFTSDK_LOAD_PLUGINS"
    )
    draftsdk.get_reward("brightness")  # other names are unaffected


def test_misspelled_hook_is_reported_and_not_registered():
    class Typo:
        @draftsdk.hookimpl
        def register_reward(self, register):  # missing "s"
            pass

    info = register_plugin(Typo(), name="typo")
    assert info.error == "implements unknown hook 'register_reward'; did you mean 'register_rewards'?"
    assert draftsdk.plugins.get_plugin_manager().get_plugin("typo") is None


def test_hookimpl_with_unknown_argument_is_reported():
    class WrongArgs:
        @draftsdk.hookimpl
        def register_rewards(self, register, extra):
            pass

    info = register_plugin(WrongArgs(), name="wrong-args")
    assert info.error.startswith("invalid hook implementation:")
    assert "extra" in info.error


def test_listing_imports_no_heavy_module():
    code = (
        "import sys, draftsdk; draftsdk.list_rewards(); draftsdk.plugins.list_plugins();"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft', 'open_clip', 'safetensors') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
