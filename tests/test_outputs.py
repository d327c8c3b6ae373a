"""Outputs never replace inputs, existing files need --overwrite, the image format follows the
suffix, and atomically written files get ordinary permissions (the umask), like metrics.jsonl."""

from __future__ import annotations

import os
import stat

import pytest

import draftsdk
from draftsdk.testing import save_tiny_pipeline, tiny_pipeline


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")


@pytest.fixture
def adapters(tmp_path):
    paths = []
    for seed in (0, 1):
        pipe = tiny_pipeline(seed=0)
        draftsdk.lora.add_lora(pipe.unet, rank=2)
        paths.append(draftsdk.lora.save_lora(tmp_path / f"a{seed}.safetensors", pipe.unet))
    return paths


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_lora_mix_never_replaces_an_input_and_asks_before_overwriting(cli, adapters, tmp_path):
    a, b = adapters
    before = a.read_bytes()
    out = cli("lora", "mix", f"{a}:0.5", f"{b}:0.5", "-o", str(a))
    assert out.returncode == 2 and a.read_bytes() == before
    assert out.stderr.strip() == f"error: output {str(a)!r} is also an input; write to another file (inputs are never replaced)"
    target = tmp_path / "mixed.safetensors"
    target.write_text("mine")
    out = cli("lora", "mix", f"{a}:0.5", f"{b}:0.5", "-o", str(target))
    assert out.returncode == 2 and "already exists; pass --overwrite" in out.stderr and target.read_text() == "mine"
    assert cli("lora", "mix", f"{a}:0.5", f"{b}:0.5", "-o", str(target), "--overwrite").returncode == 0
    assert draftsdk.lora.read_lora(target).rank == 4
    with pytest.raises(draftsdk.DraftError, match="is also an input"):
        draftsdk.lora.mix_files([(b, 1.0)], b)


def test_sample_writes_the_format_its_suffix_names(cli, sd_path, tmp_path):
    args = ("sample", "--model", str(sd_path), "--prompt", "a cat", "--steps", "2")
    assert cli(*args, "-o", str(tmp_path / "g.jpg")).returncode == 0
    assert (tmp_path / "g.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG data in a .jpg
    out = cli(*args, "-o", str(tmp_path / "g.gif"))
    assert out.returncode == 2 and "use a .png, .jpg or .webp file name" in out.stderr
    (tmp_path / "keep.png").write_bytes(b"user data")
    out = cli(*args, "-o", str(tmp_path / "keep.png"))
    assert out.returncode == 2 and (tmp_path / "keep.png").read_bytes() == b"user data"


def test_atomic_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        pipe = tiny_pipeline()
        draftsdk.lora.add_lora(pipe.unet, rank=2)
        lora_file = draftsdk.lora.save_lora(tmp_path / "a.safetensors", pipe.unet)
        from draftsdk.atomic import write_text_atomic

        text = write_text_atomic(tmp_path / "c.json", "{}")
        from draftsdk.images import make_grid, save_png

        import torch

        png = save_png(make_grid(torch.zeros(1, 3, 8, 8), ncol=1), tmp_path / "g.png")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        assert {_mode(p) for p in (lora_file, text, png)} == {_mode(tmp_path / "plain.txt")} == {0o644}
    finally:
        os.umask(old)
