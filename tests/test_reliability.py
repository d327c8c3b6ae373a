"""Several processes (gloo), kill -9 during a checkpoint write, network-free import, resource errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import draftsdk
from draftsdk.checkpoint import latest_checkpoint, load_checkpoint_state
from draftsdk.errors import DraftError
from draftsdk.trainer import rank_streams

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory):
    from draftsdk.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")


def _write_config(path: Path, sd_path: Path, out: Path, **extra) -> Path:
    settings = {
        "model": str(sd_path), "variant": "draft-k", "k": 2, "steps": 1, "batch_size": 2, "num_inference_steps": 3,
        "learning_rate": 0.05, "prompts": ["a cat", "a dog", "a fox", "a cow"], "output_dir": str(out),
        "progress": False, "eval_every": 1000, "eval_seeds": [0], "tensorboard": False,
        "rewards": {"brightness": 1.0},
    }
    settings.update(extra)
    path.write_text(json.dumps(settings))
    return path


def test_two_processes_equal_one_process_on_the_union_of_their_batches(sd_path, tmp_path):
    # A large Adam eps makes the first update proportional to the gradient instead of its sign, so float-level
    # differences in near-zero gradient entries are not amplified to ±lr; the reward weight makes it visible.
    config = _write_config(tmp_path / "ddp.json", sd_path, tmp_path / "ddp-run", adam_eps=1.0, learning_rate=1.0,
                           max_grad_norm=None, rewards={"brightness": 1000.0})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "ddp_worker.py"), str(config), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    cfg = draftsdk.TrainConfig.from_file(config, [f"output_dir={tmp_path / 'single'}", "batch_size=2"])
    trainer = draftsdk.Trainer(str(sd_path), cfg.rewards, cfg)
    streams = [rank_streams(cfg.seed, r) for r in (0, 1)]
    noises = []

    def union(prompts):
        batches = [(rng.choices(list(prompts), k=2), trainer.sampler.initial_noise(2, gen)) for rng, gen in streams]
        noises.extend(n for _, n in batches)
        return batches[0][0] + batches[1][0], torch.cat([batches[0][1], batches[1][1]])

    trainer.draw_batch = union
    trainer.fit()
    assert not torch.allclose(noises[0], noises[1])  # each rank draws its own noise
    from peft.utils import get_peft_model_state_dict

    single = get_peft_model_state_dict(trainer.denoiser, adapter_name="draftsdk")
    for key, value in rank0.items():
        assert torch.allclose(single[key], value, atol=1e-5), key
    moved = max(float(v.abs().max()) for k, v in rank0.items() if "lora_B" in k)  # B starts at 0
    assert moved > 1e-3


def test_two_processes_resume_where_they_stopped(sd_path, tmp_path):
    """``torchrun -m draftsdk train``: 1 step + resume to 2 equals 2 steps straight, on every rank's streams."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}

    def torchrun(config: Path, *overrides: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "draftsdk", "train", str(config), *[a for o in overrides for a in ("--set", o)]],
            capture_output=True, text=True, env=env, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]

    straight = _write_config(tmp_path / "straight.json", sd_path, tmp_path / "straight", steps=2, save_every=1)
    torchrun(straight)
    stopped = _write_config(tmp_path / "stopped.json", sd_path, tmp_path / "stopped", steps=1, save_every=1)
    torchrun(stopped)
    state, _ = load_checkpoint_state(latest_checkpoint(tmp_path / "stopped"))
    assert len(state["random_states"]) == 2  # rank 0 stored both ranks' streams
    assert not torch.equal(state["random_states"][0]["noise"], state["random_states"][1]["noise"])
    torchrun(stopped, "resume=true", "steps=2")

    a = draftsdk.lora.read_lora(tmp_path / "stopped" / "lora.safetensors").state_dict
    b = draftsdk.lora.read_lora(tmp_path / "straight" / "lora.safetensors").state_dict
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    lines = [json.loads(x) for x in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert [x["step"] for x in lines] == [1, 2] and lines[-1]["queries"] == 2 * 2 * 2  # 2 steps x 2 ranks x batch 2


def test_kill_during_checkpoint_write_then_resume(sd_path, tmp_path):
    run = tmp_path / "run"
    config = _write_config(tmp_path / "kill.json", sd_path, run, steps=4, save_every=1)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    killed = subprocess.run([sys.executable, str(HERE / "kill_worker.py"), str(config)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = list((run / "checkpoints").glob(".tmp-step-000002-*"))
    assert leftovers and (leftovers[0] / "lora.safetensors").exists()  # killed mid-write
    last = latest_checkpoint(run)
    assert last.name == "step-000001"
    state, meta = load_checkpoint_state(last)
    assert state["step"] == meta["step"] == 1
    assert draftsdk.lora.read_lora(last / "lora.safetensors").rank == 8

    resumed = subprocess.run([sys.executable, "-m", "draftsdk", "train", str(config), "--set", "resume=true"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "done: 4 steps" in resumed.stdout
    assert not list((run / "checkpoints").glob(".tmp-step-*"))
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert steps == [1, 2, 3, 4]

    straight = tmp_path / "straight"
    config2 = _write_config(tmp_path / "straight.json", sd_path, straight, steps=4, save_every=1)
    subprocess.run([sys.executable, "-m", "draftsdk", "train", str(config2)], check=True, capture_output=True, env=env, timeout=300)
    a = draftsdk.lora.read_lora(run / "lora.safetensors").state_dict
    b = draftsdk.lora.read_lora(straight / "lora.safetensors").state_dict
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_import_and_listing_open_no_network_connection():
    code = """
import socket
def refuse(*args, **kwargs):
    raise AssertionError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import draftsdk
draftsdk.list_rewards()
draftsdk.plugins.list_plugins()
draftsdk.get_reward("brightness")
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_out_of_memory_names_the_knobs(sd_path, tmp_path):
    class Oom:
        name, differentiable = "oom", True

        def __call__(self, images, prompts):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cfg = draftsdk.TrainConfig(steps=1, batch_size=2, num_inference_steps=3, output_dir=tmp_path / "r", progress=False,
                               variant="draft-k", k=2)
    trainer = draftsdk.Trainer(str(sd_path), Oom(), cfg)
    trainer._run_eval = lambda step, prompts: {"kind": "eval", "step": step}
    with pytest.raises(DraftError) as err:
        trainer.fit(["a"])
    assert str(err.value) == (
        "CUDA out of memory. Knobs that reduce memory, with their current values: batch_size=2 (lower it and raise "
        "grad_accum_steps=1), gradient steps K=2 (variant=draft-k; draft-lv/draft-k with small k need least), "
        "checkpointing='auto' ('always' checkpoints every denoiser call), checkpoint_vae=True, checkpoint_blocks=False "
        "(True checkpoints each block inside the denoiser), offload_text_encoders=False, resolution=the model's "
        "default, mixed_precision='no' ('bf16' halves the frozen weights)"
    )


def test_full_disk_and_unwritable_run_dir_are_detected_at_start(sd_path, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = draftsdk.TrainConfig(steps=1, batch_size=1, num_inference_steps=2, output_dir=blocker / "run", progress=False)
    with pytest.raises(DraftError, match=r"run directory '.*/file/run' is not writable: Not a directory"):
        draftsdk.Trainer(str(sd_path), "brightness", cfg).fit(["a"])

    Usage = type(shutil.disk_usage(tmp_path))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 10**6, 10**6))
    cfg = draftsdk.TrainConfig(steps=1, batch_size=1, num_inference_steps=2, output_dir=tmp_path / "full", progress=False)
    with pytest.raises(DraftError, match=r"only 1 MiB free on the disk of '.*full'; checkpoints need at least 64 MiB"):
        draftsdk.Trainer(str(sd_path), "brightness", cfg).fit(["a"])
