"""Bad input across config, CLI, rewards, LoRA files and prompts: each gives one actionable line
(exit status 2 from the CLI, no traceback) and writes or overwrites nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import draftsdk
from draftsdk.cli import main


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-an-image.png").write_text("hello")
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    (tmp_path / "bad.toml").write_text("steps = [")
    (tmp_path / "latin1.toml").write_bytes('prompts = ["caf\xe9"]\n'.encode("latin-1"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "weights.bin").write_bytes(b"\x80\x04not really")
    from PIL import Image

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "ok.png")
    run = tmp_path / "existing-run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    return tmp_path


def _toml(path: Path, **settings) -> str:
    lines = []
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    for key, value in settings.items():
        if key not in tables and value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"[{key}]")
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path.name  # the tests run in the folder


GOOD = dict(model="missing-model-folder", rewards={"brightness": 1.0}, prompts=["a"], output_dir="new-run")

CASES = [
    ("train missing file", lambda d: ["train", "nope.toml"], "config file 'nope.toml' does not exist"),
    ("train bad toml", lambda d: ["train", "bad.toml"], "config file 'bad.toml' is not valid TOML: "),
    ("train typo", lambda d: ["train", _toml(d / "c.toml", **GOOD, stpes=3)], "invalid c.toml: stpes: unknown setting; did you mean 'steps'?"),
    ("train k > T", lambda d: ["train", _toml(d / "c.toml", **GOOD, variant="draft-k", k=80, num_inference_steps=50)], "invalid c.toml: k: k=80 is larger than num_inference_steps=50"),
    ("train no model", lambda d: ["train", _toml(d / "c.toml", rewards={"brightness": 1}, prompts=["a"])], "invalid config: model: `draftsdk train` needs model = a local pipeline folder or a hub id"),
    ("train no rewards", lambda d: ["train", _toml(d / "c.toml", model="m", prompts=["a"])], "invalid config: rewards: `draftsdk train` needs a [rewards] table"),
    ("train unknown reward", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "rewards": {"brightnes": 1.0}})], "unknown reward 'brightnes'. Did you mean 'brightness'?"),
    ("train bad --set", lambda d: ["train", _toml(d / "c.toml", **GOOD), "--set", "steps"], "expected KEY=VALUE, got 'steps'"),
    ("train nan weight", lambda d: ["train", _toml(d / "c.toml", **GOOD), "--set", "rewards.brightness=NaN"], "combine: weight of term 'brightness' must be finite, got nan"),
    ("train missing model", lambda d: ["train", _toml(d / "c.toml", **GOOD)], "cannot load the pipeline 'missing-model-folder'"),
    ("train existing run dir", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "output_dir": "existing-run"})], "run directory 'existing-run' already exists and is not empty; pass resume=True"),
    ("train empty prompt file", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "prompts": None, "prompt_file": "empty.txt"})], "prompt file 'empty.txt' has no prompts (one per line)"),
    ("train missing prompt file", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "prompts": None, "prompt_file": "p.txt"})], "prompt file 'p.txt' does not exist"),
    ("train unknown prompt set", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "prompts": None, "prompt_set": "simple-animal"})], "unknown prompt set 'simple-animal'. Did you mean 'simple-animals'?"),
    ("train two prompt sources", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "prompt_set": "digits"})], "give exactly one prompt source"),
    ("score missing image", lambda d: ["score", "--reward", "brightness", "--prompt", "x", "gone.png"], "image file 'gone.png' does not exist"),
    ("score not an image", lambda d: ["score", "--reward", "brightness", "--prompt", "x", "not-an-image.png"], "'not-an-image.png' is not an image file that Pillow can read"),
    ("score unknown option", lambda d: ["score", "--reward", "target-color", "--opt", "colour=[1,0,0]", "--prompt", "x", "ok.png"], "reward 'target-color' got unknown option(s) 'colour'; it accepts: color"),
    ("score prompt count", lambda d: ["score", "--reward", "brightness", "--prompt", "a", "--prompt", "b", "--prompt", "c", "ok.png", "ok.png"], "give one --prompt for all images or one per image; got 3 for 2"),
    ("lora mix zero", lambda d: ["lora", "mix", "a.safetensors:0", "b.safetensors:0", "-o", "m.safetensors"], "mix: all weights are zero; the mix would be the base model"),
    ("lora mix malformed", lambda d: ["lora", "mix", "a.safetensors:x", "-o", "m.safetensors"], "'a.safetensors:x': expected FILE:WEIGHT with a number after the colon, got 'x'"),
    ("lora info pickle", lambda d: ["lora", "info", "weights.bin"], "'weights.bin' is a pickle file, which can run code when loaded"),
    ("lora info missing", lambda d: ["lora", "info", "gone.safetensors"], "LoRA file 'gone.safetensors' does not exist"),
    ("sample bad scales", lambda d: ["sample", "--model", "m", "--prompt", "p", "--scales", "0,half", "-o", "g.png"], "--scales: expected comma-separated numbers, got '0,half'"),
    ("sample missing lora", lambda d: ["sample", "--model", "m", "--lora", "gone.safetensors:0.5", "--prompt", "p", "-o", "g.png"], "LoRA file 'gone.safetensors' does not exist"),
    ("train latin-1 config", lambda d: ["train", "latin1.toml"], "config file 'latin1.toml' is not UTF-8 text (byte 0xe9 at offset 15); save it as UTF-8"),
    ("train latin-1 prompts", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits", "prompts": None, "prompt_file": "latin1.txt"})], "prompt file 'latin1.txt' is not UTF-8 text (byte 0xe9 at offset 3)"),
    ("train steps = true", lambda d: ["train", _toml(d / "c.toml", **GOOD, steps=True)], "invalid c.toml: steps: expected a number, got the boolean true"),
    ("train device=gpu", lambda d: ["train", _toml(d / "c.toml", **{**GOOD, "model": "draftsdk:digits"}, device="gpu")], "device='gpu' is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("train huge batch", lambda d: ["train", _toml(d / "c.toml", **GOOD, batch_size=100000)], "invalid c.toml: batch_size: Input should be less than or equal to 1024"),
    ("score device=gpu", lambda d: ["score", "--reward", "brightness", "--prompt", "x", "--device", "gpu", "ok.png"], "device='gpu' is not a torch device"),
    ("demo bad digit", lambda d: ["demo", "--digit", "12", "--output", "d"], "digit-target: option 'target' must be an integer digit 0-9, got 12"),
]


@pytest.mark.parametrize("argv, expected", [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input_is_one_line_and_writes_nothing(workdir, capsys, argv, expected):
    args = argv(workdir)
    before = _snapshot(workdir)
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    after = _snapshot(workdir)
    assert after == before, set(after) ^ set(before)


def test_python_api_bad_rewards_name_the_term():
    with pytest.raises(ValueError, match="combine: weight of term 'contrast' must be finite, got inf"):
        draftsdk.combine({"brightness": 1.0, "contrast": float("inf")})

    class Wide:
        name, differentiable = "wide", True

        def __call__(self, images, prompts):
            return images.mean(dim=(2, 3))

    with pytest.raises(draftsdk.RewardContractError, match=r"reward 'wide' \(plugin: <local>\) returned shape \(1, 3\); expected \(1,\)"):
        draftsdk.combine(Wide())(torch.rand(1, 3, 4, 4), ["x"])


@pytest.mark.parametrize("argv", [["demo", "--steps", "0"], ["sample", "--model", "m", "--prompt", "p", "--steps", "-1"]])
def test_step_counts_below_one_are_usage_errors(workdir, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "--steps: must be at least 1" in capsys.readouterr().err
    assert not (workdir / "demo-output").exists()


def test_json_output_into_a_closed_pipe_exits_quietly(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(f"{sys.executable} -m draftsdk rewards --json | head -c 1", shell=True, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "[" and proc.stderr == "", proc.stderr
