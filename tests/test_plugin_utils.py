"""draftsdk.plugin_utils: the helpers the reward plugins share (dtype/device options, paths, errors, frozen models)."""

from __future__ import annotations

import copy
import doctest
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from draftsdk import plugin_utils
from draftsdk.plugin_utils import (
    checkpoint_layers,
    first_line,
    freeze,
    hub_file,
    hub_offline,
    local_path,
    looks_like_path,
    not_cached_error,
    offline_hint,
    quiet_transformers,
    resolve_device,
    resolve_dtype,
    resolve_source,
)

# --------------------------------------------------------------------------- dtype / device


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("float32", torch.float32), ("fp32", torch.float32), ("float", torch.float32), ("FP32", torch.float32),
        ("float16", torch.float16), ("fp16", torch.float16), ("half", torch.float16), ("torch.float16", torch.float16),
        ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16), ("BFloat16", torch.bfloat16), (" bf16 ", torch.bfloat16),
        (torch.float32, torch.float32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
        (None, torch.float32),
    ],
)
def test_resolve_dtype_accepts_names_aliases_and_dtypes(spec, expected):
    assert resolve_dtype(spec, "myreward") is expected


@pytest.mark.parametrize(
    ("spec", "shown"),
    [("int8", "'int8'"), ("float64", "'float64'"), ("", "''"), (16, "16"), (torch.int8, "torch.int8"), (torch.float64, "torch.float64")],
)
def test_resolve_dtype_rejects_other_values_in_one_line(spec, shown):
    with pytest.raises(ValueError) as err:
        resolve_dtype(spec, "myreward")
    assert str(err.value) == f"myreward: dtype must be one of 'float32', 'float16', 'bfloat16', got {shown}"
    assert "\n" not in str(err.value)


def test_resolve_device():
    assert resolve_device(None) is None  # follow the images
    assert resolve_device(None, auto=True) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), auto=True) == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # parsed, not opened
    with pytest.raises(RuntimeError):
        resolve_device("gpu-please")


# --------------------------------------------------------------------------- paths


def test_local_path(tmp_path, monkeypatch):
    file = tmp_path / "head.pth"
    file.write_bytes(b"x")
    assert local_path(str(file)) == str(file)
    assert local_path(file) == str(file)  # PathLike too
    assert local_path(tmp_path) == str(tmp_path)  # folders count
    assert local_path(tmp_path / "missing") is None
    assert local_path("openai/clip-vit-large-patch14") is None  # a hub id
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_path("~/head.pth") == str(file)  # ~ is expanded
    assert local_path("~/nope.pth") is None


@pytest.mark.parametrize(
    ("spec", "is_path"),
    [
        ("/abs/model", True), ("./model", True), ("../model", True), ("~/model", True), ("~", True),
        (".\\model", True), ("C:\\models\\clip", True), (Path("/abs"), True),
        ("openai/clip-vit-large-patch14", False), ("org/repo/file.pth", False), ("model", False), ("", False),
    ],
)
def test_looks_like_path(spec, is_path):
    assert looks_like_path(spec) is is_path


def test_resolve_source(tmp_path, monkeypatch):
    where = dict(who="myreward", what="CLIP folder", option="path", example="/folder/with/config.json")
    assert resolve_source(tmp_path, **where) == str(tmp_path)
    assert resolve_source("openai/clip-vit-large-patch14", **where) == "openai/clip-vit-large-patch14"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_source("~", **where) == str(tmp_path)
    for missing in ("./no/such/folder", "~/nope", str(tmp_path / "nope")):
        with pytest.raises(FileNotFoundError) as err:
            resolve_source(missing, **where)
        assert str(err.value) == f"myreward: CLIP folder {missing!r} does not exist; pass path='/folder/with/config.json'"


def _fake_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as huggingface_hub's cache does after a download."""
    commit = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        target = repo / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_hub_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_hub_cache(tmp_path / "hub", "org/repo", {"head.pth": b"cached", "sub/w.pt": b"nested"})
    where = dict(who="myreward", what="head file", option="head", example="/path/to/head.pth")

    local = tmp_path / "mine.pth"
    local.write_bytes(b"local")
    assert hub_file(local, **where) == str(local)
    assert Path(hub_file("org/repo/head.pth", **where)).read_bytes() == b"cached"
    assert Path(hub_file("org/repo/sub/w.pt", **where)).read_bytes() == b"nested"

    def message(spec, kind=FileNotFoundError):
        with pytest.raises(kind) as err:
            hub_file(spec, **where)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert message(tmp_path) == (
        f"myreward: head file {str(tmp_path)!r} is a folder; pass the file itself, e.g. head='/path/to/head.pth'"
    )
    assert message("./no/head.pth") == "myreward: head file './no/head.pth' does not exist; pass head='/path/to/head.pth'"
    assert message("org/head.pth", ValueError) == (
        "myreward: head must be a local file or '<org>/<repo>/<file>' on the hub, got 'org/head.pth'"
    )
    text = message("org/repo/other.pth")  # not in the cache, offline: no network access
    assert text.startswith(
        "myreward: cannot load head file 'org/repo/other.pth': not a local file and not in the Hugging Face cache "
        "(HF_HUB_OFFLINE=1 is set; "
    )
    assert text.endswith("or pass head='/path/to/other.pth'")


def test_not_cached_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    err = not_cached_error("myreward", "CLIP model", "org/clip", option="path", example="/path/to/clip", exc=OSError("x\ny"))
    assert isinstance(err, FileNotFoundError)
    assert str(err) == (
        "myreward: cannot load CLIP model 'org/clip': not a local path and not in the Hugging Face cache (OSError); "
        "download it once with network access (cached under ~/.cache/huggingface) or pass path='/path/to/clip'"
    )
    assert "cache; download" in str(not_cached_error("r", "m", "o/m", option="path", example="/x"))  # no reasons
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = not_cached_error("r", "model", "o/m", option="path", example="/x", exc=KeyError(), local="folder")
    assert "not a local folder and not in the Hugging Face cache (HF_HUB_OFFLINE=1 is set; KeyError); " in str(err)


# --------------------------------------------------------------------------- messages


def test_first_line():
    assert first_line(ValueError("bad header\nTraceback (most recent call last):\n  ...")) == "bad header"
    assert first_line(OSError("\n\n   indented first line   \nsecond")) == "indented first line"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError(" \n \n")) == "RuntimeError"
    assert first_line(ValueError("x" * 200)) == "x" * 200  # the default limit is 200, inclusive
    cut = first_line(ValueError("y" * 201 + "\nmore"))
    assert cut == "y" * 197 + "..." and len(cut) == 200
    assert first_line(ValueError("abcdefghijkl"), limit=10) == "abcdefg..."
    assert first_line(ValueError("abcdefghij"), limit=10) == "abcdefghij"


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), (" ON ", True), ("Yes", True),
                                                ("0", False), ("", False), ("false", False), (None, False)])
def test_hub_offline_and_hint(monkeypatch, value, offline):
    if value is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline
    assert offline_hint() == (" (HF_HUB_OFFLINE=1 is set)" if offline else "")


def test_quiet_transformers_silences_and_restores():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.INFO and hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a disabled bar stays disabled, also when the block raises
        with pytest.raises(KeyError), quiet_transformers():
            raise KeyError("boom")
        assert hf_logging.get_verbosity() == hf_logging.INFO and not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before)
        hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------- modules


class Counting(nn.Module):
    """A Linear + tanh layer that counts how often its forward runs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.calls = 0

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(self.linear(x)) * scale


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*(Counting(8) for _ in range(3)), nn.Linear(8, 1))


def _calls(net: nn.Sequential) -> list[int]:
    return [m.calls for m in net if isinstance(m, Counting)]


def test_checkpoint_layers_same_gradients_and_recomputes():
    plain, ckpt = _net(), _net()
    ckpt.load_state_dict(plain.state_dict())
    checkpoint_layers(ckpt[:3])
    x = torch.randn(4, 8)
    x_plain, x_ckpt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)

    out_plain, out_ckpt = plain(x_plain).sum(), ckpt(x_ckpt).sum()
    assert torch.equal(out_plain, out_ckpt)
    assert _calls(plain) == [1, 1, 1] and _calls(ckpt) == [1, 1, 1]
    out_plain.backward()
    out_ckpt.backward()
    assert _calls(plain) == [1, 1, 1]
    assert _calls(ckpt) == [2, 2, 2]  # each layer ran again in the backward pass
    torch.testing.assert_close(x_ckpt.grad, x_plain.grad, rtol=0, atol=0)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=0, msg=name)


def test_checkpoint_layers_on_a_frozen_model_in_eval_mode():
    plain, ckpt = freeze(_net()), freeze(_net())
    checkpoint_layers(ckpt[:3])
    checkpoint_layers(ckpt[:3])  # wrapping twice wraps once
    assert all(getattr(m, "_draftsdk_checkpointed", False) for m in ckpt[:3])

    x_plain = torch.randn(2, 8, requires_grad=True)
    x_ckpt = x_plain.detach().clone().requires_grad_(True)
    plain(x_plain).sum().backward()
    ckpt(x_ckpt).sum().backward()
    assert not ckpt.training and all(p.grad is None for p in ckpt.parameters())
    assert _calls(ckpt) == [2, 2, 2]  # recomputed although no parameter needs a gradient
    torch.testing.assert_close(x_ckpt.grad, x_plain.grad, rtol=0, atol=0)  # the gradient reaches the input

    with torch.no_grad():  # no graph: no checkpoint, one forward per layer
        ckpt(x_ckpt)
    assert _calls(ckpt) == [3, 3, 3]


def test_checkpoint_layers_passes_keyword_arguments():
    layer = Counting(4)
    reference = copy.deepcopy(layer)
    checkpoint_layers([layer])
    x = torch.randn(3, 4, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, ref = layer(x, scale=2.5), reference(x_ref, scale=2.5)
    assert torch.equal(out, ref)
    out.sum().backward()
    ref.sum().backward()
    assert layer.calls == 2 and reference.calls == 1
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    assert layer.forward.__name__ == "forward"  # functools.wraps keeps the name


def test_freeze():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert freeze(net) is net
    assert not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.randn(5, 4)
    assert torch.equal(net(x), net(x))  # dropout off, batch norm uses its running stats
    assert int(net[2].num_batches_tracked) == 0


# --------------------------------------------------------------------------- the module


def test_public_api_is_documented():
    assert sorted(plugin_utils.__all__) == sorted(
        ["resolve_dtype", "resolve_device", "local_path", "looks_like_path", "resolve_source", "hub_file",
         "not_cached_error", "first_line", "hub_offline",
         "offline_hint", "quiet_transformers", "quiet_diffusers", "checkpoint_layers", "freeze", "DeviceFollower",
         "tiny_clip_config", "tiny_open_clip_config"]
    )
    assert "reward-plugin authors" in plugin_utils.__doc__
    for name in plugin_utils.__all__:
        assert getattr(plugin_utils, name).__doc__, name


def test_docstring_examples_run():
    result = doctest.testmod(plugin_utils, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0 and result.attempted >= 10


def test_import_is_cheap():
    code = (
        "import sys, draftsdk.plugin_utils; "
        "print(sorted(m for m in ('torch', 'transformers', 'open_clip', 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- DeviceFollower


def test_device_follower_moves_once_to_the_images_device_or_stays_pinned(monkeypatch):
    from draftsdk.plugin_utils import DeviceFollower

    moves = []
    head = nn.Linear(2, 1)
    monkeypatch.setattr(head, "to", lambda device: moves.append(torch.device(device)) or head)
    place = DeviceFollower([head])
    assert place.pinned is None and place.current == torch.device("cpu") and moves == []  # nothing at construction
    assert place.follow(torch.device("cpu")) == torch.device("cpu") and moves == []  # already there
    assert place.follow(torch.device("meta")) == torch.device("meta") and moves == [torch.device("meta")]
    place.follow(torch.device("meta"))
    assert moves == [torch.device("meta")]  # moved once
    assert place.describe() == "follow images"

    moves.clear()
    pinned = DeviceFollower([head], "meta")
    assert moves == [torch.device("meta")] and pinned.describe() == "meta"
    assert pinned.follow(torch.device("cpu")) == torch.device("meta") and len(moves) == 1  # stays pinned


def test_tiny_model_configs_build_models():
    import open_clip
    from transformers import CLIPModel

    from draftsdk.plugin_utils import tiny_clip_config, tiny_open_clip_config
    from draftsdk.testing import tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    model = CLIPModel(tiny_clip_config(tok, vision_hidden=40, projection_dim=16, hidden_act="gelu", logit_scale=100.0))
    assert model.config.vision_config.hidden_size == 40 and model.config.projection_dim == 16
    assert abs(float(model.logit_scale.detach().exp()) - 100.0) < 1e-3
    assert model.config.text_config.eos_token_id == tok.eos_token_id
    cfg = tiny_open_clip_config(embed_dim=24)
    assert "quick_gelu" not in cfg
    clip = open_clip.CLIP(**cfg)
    assert clip.visual.image_size == (224, 224) and clip.text_projection.shape[-1] == 24
