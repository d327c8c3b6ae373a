"""NaN/inf is caught where it appears: in the sampled images (a diverged adapter), in a reward (even on
the first call after a resume), in a saved adapter (refused when loaded); fp16 loss-scaler overflows
are not counted as faults."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import draftsdk
from draftsdk import TrainConfig, Trainer
from draftsdk.errors import DraftError
from draftsdk.lora import LoraError
from draftsdk.testing import tiny_pipeline


def _cfg(out, **kw):
    base = dict(steps=1, batch_size=1, num_inference_steps=2, learning_rate=1e-2, output_dir=out, progress=False,
                eval_seeds=[0], eval_every=1000, save_every=1)
    return TrainConfig(**{**base, **kw})


def _train_records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]


def test_a_diverged_adapter_is_skipped_and_named_not_passed_to_the_reward(tmp_path):
    seen = []

    class Watch:
        name, differentiable = "watch", True

        def __call__(self, images, prompts):
            seen.append(bool(torch.isfinite(images).all()))
            return images.mean(dim=(1, 2, 3))

    trainer = Trainer(tiny_pipeline(), Watch(), _cfg(tmp_path / "run", steps=5, max_nonfinite_steps=2))

    def diverge(record):
        if record["step"] == 1:
            with torch.no_grad():
                trainer.params[0].fill_(float("nan"))

    with pytest.raises(DraftError) as info:
        trainer.fit(["a cat"], on_step=diverge)
    assert str(info.value).startswith(
        "stopped at step 3: 2 updates in a row were skipped for NaN/inf, the last because the sampled images were "
        "NaN/inf (the adapter or the sampler diverged); last good checkpoint: "
    )
    assert str(info.value).split("last good checkpoint: ")[1].startswith(str(tmp_path / "run" / "checkpoints" / "step-000001"))
    assert all(seen)  # the reward never saw the NaN images (it would have refused them as out of [0, 1])
    records = _train_records(tmp_path / "run")
    assert [(r["skipped"], r["nonfinite"]) for r in records] == [(False, False), (True, True), (True, True)]
    assert records[-1]["fault"].startswith("the sampled images were NaN/inf")


def test_a_nan_reward_on_the_first_call_after_a_resume_is_skipped(tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_pipeline(), "brightness", _cfg(out)).fit(["a cat"])

    class NaNOnce:
        name, differentiable = "brightness", True  # the same objective spec as the first run

        def __init__(self):
            self.calls = 0

        def __call__(self, images, prompts):
            self.calls += 1
            value = images.mean(dim=(1, 2, 3))
            return value * float("nan") if self.calls == 1 else value

    objective = draftsdk.combine({"brightness": 1.0})
    objective.terms[0].reward = NaNOnce()
    result = Trainer(tiny_pipeline(), objective, _cfg(out, resume=True, steps=3)).fit(["a cat"])
    assert result.steps_done == 3
    assert [r["skipped"] for r in _train_records(out)] == [False, True, False]


def test_a_nan_adapter_is_refused_when_loaded(tmp_path, cli):
    out = tmp_path / "run"
    Trainer(tiny_pipeline(), "brightness", _cfg(out)).fit(["a cat"])
    good = out / "lora.safetensors"
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(good))
    key = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[key][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(LoraError, match=rf"holds NaN/inf weights \({key}\): the training that wrote it diverged"):
        draftsdk.lora.read_lora(bad)
    model = tmp_path / "model"
    draftsdk.testing.save_tiny_pipeline(model)
    proc = cli("sample", "--model", str(model), "--lora", str(bad), "--prompt", "a cat", "-o", str(tmp_path / "g.png"),
               "--steps", "2")
    assert proc.returncode == 2 and "holds NaN/inf weights" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()


def test_fp16_loss_scaler_overflows_are_not_counted_as_faults(tmp_path, monkeypatch):
    # On a GPU the fp16 GradScaler starts at 2**16 and halves after each overflow; here a CPU scaler whose
    # first scale (inf) overflows every gradient, then calibrates to 1, stands in for it.
    # max_nonfinite_steps=1 would stop the run at the first overflow if it were counted.
    class Calibrating(torch.amp.GradScaler):
        def update(self, new_scale=None):
            super().update(None if bool(torch.isfinite(self._scale)) else 1.0)

    def scaler(device="cuda", **kw):
        return Calibrating("cpu", init_scale=float("inf"), enabled=True)

    monkeypatch.setattr(torch.amp, "GradScaler", scaler)
    out = tmp_path / "run"
    result = Trainer(tiny_pipeline(), "brightness", _cfg(out, steps=3, max_nonfinite_steps=1)).fit(["a cat"])
    records = _train_records(out)
    assert [(r["skipped"], r["scaler_skipped"], r["nonfinite"]) for r in records] == [
        (True, True, False), (False, False, False), (False, False, False)]
    assert result.steps_done == 3 and result.skipped_steps == 1
