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


# -- reward metadata (RewardMeta) -----------------------------------------------------------------

REPO_REWARDS = {
    "brightness", "saturation", "contrast", "target-color", "digit-target", "digit-boldness",
    "jpeg-compressibility", "jpeg-incompressibility",
}


def test_every_reward_of_the_repository_carries_metadata():
    """Built-ins and every installed plugins/draftsdk-* reward: differentiable, input, range, memory, licence."""
    from draftsdk.registry import RewardMeta

    infos = {r.name: r for r in draftsdk.list_rewards()}
    ours = [r for r in infos.values() if r.name in REPO_REWARDS or r.plugin.startswith("draftsdk-") and r.plugin != "draftsdk-checker"]
    assert REPO_REWARDS <= set(infos)
    for info in ours:
        meta = info.meta
        assert isinstance(meta, RewardMeta), info.name
        assert info.differentiable in (True, False), info.name
        assert meta.inputs and meta.weights_license, info.name
        assert meta.score_range is not None and meta.score_range[0] < meta.score_range[1], info.name
        assert meta.memory_gb is not None, info.name
        if meta.memory_gb:  # a model: where it comes from and how close it is to its reference
            assert meta.reference and meta.parity_tol is not None and meta.homepage.startswith("https://"), info.name
    assert infos["jpeg-compressibility"].differentiable is False
    assert infos["jpeg-compressibility"].meta.parity_tol == 0.0


def test_rewards_json_prints_metadata_and_imports_no_torch():
    code = (
        "import io, json, sys, contextlib; from draftsdk.cli import main; buf = io.StringIO();"
        "contextlib.redirect_stdout(buf).__enter__(); main(['rewards', '--json']); sys.stdout = sys.__stdout__;"
        "rows = {r['name']: r for r in json.loads(buf.getvalue())};"
        "print(json.dumps([rows['brightness'], rows['jpeg-compressibility']])); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows_line, torch_line = out.stdout.strip().splitlines()
    import json

    brightness, jpeg = json.loads(rows_line)
    assert torch_line == "False"
    assert brightness["differentiable"] is True and brightness["inputs"] == "image"
    assert brightness["score_range"] == [0.0, 1.0] and brightness["memory_gb"] == 0.0
    assert jpeg["differentiable"] is False and jpeg["reference"].startswith("ddpo-pytorch")
    assert set(brightness) >= {"inputs", "score_range", "memory_gb", "reference", "parity_tol", "weights_license", "homepage"}


def test_reward_meta_is_validated_and_given_at_registration():
    from draftsdk.registry import RewardMeta

    for bad in (dict(score_range=(2, 1)), dict(score_range=("a", 1)), dict(memory_gb=-1), dict(parity_tol="1e-4"),
                dict(inputs=3), dict(differentiable="yes")):
        with pytest.raises(TypeError, match="RewardMeta"):
            RewardMeta(**bad)

    class Meta:
        @draftsdk.hookimpl
        def register_rewards(self, register):
            class Scored:
                name = "scored"
                differentiable = True

                def __call__(self, images, prompts):
                    return images.mean(dim=(1, 2, 3))

            class Liar(Scored):
                name = "liar"

            class Plain(Scored):
                name = "plain-dict"

            register(Scored, meta=RewardMeta(inputs="image", score_range=(0, 1), memory_gb=0.5, parity_tol=1e-4))
            register(Plain, meta={"inputs": "image"})  # refused: a typed object, not a dict

    register_plugin(Meta(), name="meta-test", distribution="draftsdk-meta", version="1.2")
    info = draftsdk.reward_info("scored")
    assert info.meta.score_range == (0.0, 1.0) and info.as_dict()["parity_tol"] == 1e-4
    assert "RewardMeta" in plugin_info_error("meta-test")

    class Mismatch:
        @draftsdk.hookimpl
        def register_rewards(self, register):
            class NoGrad:
                name = "nograd"
                differentiable = False

                def __call__(self, images, prompts):
                    return images.mean(dim=(1, 2, 3))

            register(NoGrad, meta=RewardMeta(differentiable=True))

    register_plugin(Mismatch(), name="mismatch-test", distribution="draftsdk-mismatch", version="0.1")
    assert "differentiable=False but its RewardMeta says differentiable=True" in plugin_info_error("mismatch-test")


def plugin_info_error(name):
    draftsdk.list_rewards()
    from draftsdk.plugins import plugin_info

    return plugin_info(name).error or ""


# -- DRAFTSDK_TRACE_PLUGINS and DRAFTSDK_LOAD_PLUGINS -----------------------------------------------


def test_trace_plugins_prints_plugins_hooks_and_registrations():
    env = {**__import__("os").environ, "DRAFTSDK_TRACE_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "draftsdk", "rewards"], capture_output=True, text=True, env=env, check=True)
    trace = [line for line in out.stderr.splitlines() if line.startswith("draftsdk-trace: ")]
    text = "\n".join(trace)
    assert "plugin draftsdk.default_plugins.basic (draftsdk " in text and "implements register_rewards" in text
    assert "calling register_rewards of draftsdk.default_plugins.basic" in text
    assert "draftsdk.default_plugins.basic registered reward 'brightness'" in text
    assert "NAME" in out.stdout  # the listing itself is unchanged
    quiet = subprocess.run([sys.executable, "-m", "draftsdk", "rewards"], capture_output=True, text=True, check=True,
                           env={k: v for k, v in env.items() if k != "DRAFTSDK_TRACE_PLUGINS"})
    assert "draftsdk-trace" not in quiet.stderr


# -- a bug inside a plugin keeps its traceback and names the reward and distribution ----------------


class _Buggy:
    @draftsdk.hookimpl
    def register_rewards(self, register):
        class BrokenInit:
            name = "broken-init"
            differentiable = True

            def __init__(self):
                {}["missing"]  # a plugin bug: KeyError

            def __call__(self, images, prompts):
                return images.mean(dim=(1, 2, 3))

        class BrokenCall:
            name = "broken-call"
            differentiable = True

            def __call__(self, images, prompts):
                return images.mean(dim=(1, 2, 3)) + "oops"  # a plugin bug: TypeError

        class UserError(BrokenCall):
            name = "user-error"

            def __init__(self, level: int = 1):
                if level < 0:
                    raise ValueError("user-error: level must be >= 0, got -1")

        register(BrokenInit)
        register(BrokenCall)
        register(UserError)


def test_plugin_bug_in_constructor_or_call_names_the_reward_and_keeps_the_traceback():
    import torch

    from draftsdk.registry import RewardPluginError

    register_plugin(_Buggy(), name="buggy", distribution="draftsdk-buggy", version="0.4")
    with pytest.raises(RewardPluginError) as err:
        draftsdk.get_reward("broken-init")
    assert str(err.value).startswith("reward 'broken-init' from draftsdk-buggy 0.4 failed in its constructor with KeyError")
    assert isinstance(err.value.__cause__, KeyError) and err.value.__cause__.__traceback__ is not None

    objective = draftsdk.combine({"broken-call": 1.0})
    with pytest.raises(RewardPluginError) as err:
        objective(torch.rand(1, 3, 4, 4), ["x"])
    assert "reward 'broken-call' from draftsdk-buggy 0.4 failed in its call with TypeError" in str(err.value)
    assert "bug in the plugin" in str(err.value) and isinstance(err.value.__cause__, TypeError)

    # user errors stay one-line errors of their own type
    with pytest.raises(ValueError, match="^user-error: level must be >= 0"):
        draftsdk.get_reward("user-error", level=-1)


def test_cli_shows_a_plugin_bug_with_its_traceback_and_a_user_error_in_one_line(tmp_path, capsys):
    from PIL import Image

    from draftsdk.cli import main
    from draftsdk.registry import RewardPluginError

    image = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(image)
    register_plugin(_Buggy(), name="buggy", distribution="draftsdk-buggy", version="0.4")
    with pytest.raises(RewardPluginError, match="reward 'broken-call' from draftsdk-buggy 0.4"):
        main(["score", "--reward", "broken-call", "--prompt", "x", str(image)])  # not cut to one line
    assert main(["score", "--reward", "user-error", "--opt", "level=-1", "--prompt", "x", str(image)]) == 2
    assert capsys.readouterr().err.strip() == "error: user-error: level must be >= 0, got -1"


def test_objective_record_names_each_terms_distribution_and_version():
    import torch

    from draftsdk.registry import objective_record

    register_plugin(_LocalRewards(), name="local-test", distribution="draftsdk-local", version="2.0")

    class Mine:
        name = "mine"
        differentiable = True

        def __call__(self, images, prompts):
            return images.mean(dim=(1, 2, 3))

    record = objective_record(draftsdk.combine({"brightness": 1.0, "half": {"weight": 0.5, "options": {"factor": 0.1}}, Mine(): 0.2}))
    by_name = {r["name"]: r for r in record}
    assert by_name["brightness"]["plugin"] == "draftsdk" and by_name["brightness"]["version"] == draftsdk.plugins.plugin_info(
        "draftsdk.default_plugins.basic").version
    assert by_name["half"] == {"name": "half", "options": {"factor": 0.1}, "weight": 0.5, "offset": 0.0, "scale": 1.0,
                               "plugin": "draftsdk-local", "version": "2.0"}
    assert by_name["mine"]["plugin"] == "<local>" and by_name["mine"]["module"] == __name__
    assert torch.is_tensor(draftsdk.combine({"half": 1.0})(torch.ones(1, 3, 2, 2), ["x"]))


def test_run_directory_records_the_objectives_distributions(tmp_path):
    import json

    from draftsdk import TrainConfig, Trainer
    from draftsdk.testing import tiny_pipeline

    cfg = TrainConfig(steps=1, batch_size=1, num_inference_steps=2, learning_rate=1e-2, output_dir=tmp_path / "run",
                      progress=False, eval_seeds=[0], save_every=1)
    Trainer(tiny_pipeline(), {"brightness": 1.0, "contrast": 0.5}, cfg, eval_rewards={"saturation": 1.0}).fit(["a cat"])
    metas = sorted((tmp_path / "run").rglob("meta.json"))
    assert metas
    meta = json.loads(metas[-1].read_text())
    objective = meta["objective"]
    assert [(t["name"], t["plugin"]) for t in objective] == [("brightness", "draftsdk"), ("contrast", "draftsdk")]
    assert all(t["version"] for t in objective)
    assert [(t["name"], t["plugin"]) for t in meta["eval_objective"]] == [("saturation", "draftsdk")]


# -- the plugin directory page (docs/rewards/index.md, generated by docs/gen_reference.py) ----------


def _gen_reference():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "gen_reference.py"
    spec = importlib.util.spec_from_file_location("draftsdk_docs_gen_reference_registry", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_directory_lists_every_reward_with_its_page_and_metadata():
    gen = _gen_reference()
    rows = {r["name"]: r for r in gen.registrations()}
    table = gen.render_directory()
    installed = {r.name: r for r in draftsdk.list_rewards()}
    # every reward registered in this environment by draftsdk or a plugin of this repository is a row
    repo_dists = {d["distribution"] for d in gen.plugin_distributions()} | {"draftsdk"}
    for name, info in installed.items():
        if info.plugin in repo_dists:
            assert name in rows, f"{name} ({info.plugin}) is missing from the directory"
            assert rows[name]["meta"] == info.meta, name  # read from source == registered when installed
            assert f"`{name}`" in table
    # every repository plugin has a page, linked from its row and in the site's navigation
    nav = (gen.ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for dist in gen.plugin_distributions():
        names = [r for r in rows.values() if r["distribution"] == dist["distribution"]]
        assert names, f"{dist['distribution']} registers no reward"
        for row in names:
            page = gen.reward_page(row)
            assert page is not None, f"no docs/rewards page for {row['name']}"
            assert f"[`{row['name']}`]({page})" in table
            assert f"rewards/{page}" in nav
    assert len(table.splitlines()) == 2 + len(rows)  # header, rule, one row per reward


def test_plugin_directory_row_shows_the_metadata():
    gen = _gen_reference()
    line = next(line for line in gen.render_directory().splitlines() if line.startswith(("| [`imagereward`]", "| `imagereward`")))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1].startswith("`draftsdk-imagereward` ([home](https://github.com/THUDM/ImageReward))")
    assert cells[2:6] == ["yes", "image + prompt", "-2 .. 2", "~0.9 GB"]
    assert cells[6].endswith("(≤ 0.0001)") and cells[7].startswith("Apache-2.0")
    jpeg = next(line for line in gen.render_directory().splitlines() if "`jpeg-compressibility`" in line)
    assert "| no |" in jpeg and "(exact)" in jpeg and "| none |" in jpeg
