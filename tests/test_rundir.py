"""The run directory is the user's data: overwrite removes only what a run wrote, a mistyped folder is
refused, one run at a time, resume checks the settings that define the run, and runs that learn
nothing say so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import draftsdk
from draftsdk import TrainConfig, Trainer
from draftsdk.checkpoint import LOCK, MARKER, RunLock
from draftsdk.errors import DraftError
from draftsdk.testing import tiny_pipeline


def _cfg(out, **kw):
    base = dict(steps=1, batch_size=1, num_inference_steps=2, learning_rate=1e-2, output_dir=out, progress=False,
                eval_seeds=[0], save_every=1)
    return TrainConfig(**{**base, **kw})


def _fit(out, objective="brightness", **kw):
    return Trainer(tiny_pipeline(), objective, _cfg(out, **kw)).fit(["a cat"])


def test_overwrite_removes_only_what_the_run_wrote(tmp_path):
    out = tmp_path / "run"
    _fit(out)
    (out / "samples" / "important.csv").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    assert (out / MARKER).is_file() and (out / "checkpoints" / "step-000001").is_dir()
    _fit(out, overwrite=True, steps=2, save_every=2)
    assert (out / "samples" / "important.csv").read_text() == "mine" and (out / "notes.txt").read_text() == "mine too"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2]  # eval 0, train 1, train 2, eval 2: nothing left of the first run


@pytest.mark.parametrize("flag", ["overwrite", "resume"])
def test_a_folder_that_is_not_a_run_is_refused(tmp_path, flag):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    with pytest.raises(DraftError, match=rf"{flag}=True but .* is not a draftsdk run directory"):
        Trainer(tiny_pipeline(), "brightness", _cfg(out, **{flag: True}))
    assert (out / "config.json").read_text() == '{"mine": true}'


def test_one_run_at_a_time_and_stale_locks_are_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(str(parent.pid))
        with pytest.raises(DraftError, match=rf"is in use by process {parent.pid}; wait for that run to end"):
            RunLock(out).acquire()
    finally:
        parent.kill()
        parent.wait()
    lock = RunLock(out).acquire()  # that process is gone: its lock is stale
    assert (out / LOCK).read_text() == str(__import__("os").getpid())
    lock.release()
    assert not (out / LOCK).exists()


def test_resume_checks_the_settings_that_define_the_run(tmp_path):
    out = tmp_path / "run"
    objective = {"target-color": {"weight": 1.0, "options": {"color": (1.0, 0.0, 0.0)}}}  # a tuple option
    _fit(out, objective)
    with pytest.raises(DraftError) as err:
        _fit(out, objective, resume=True, steps=2, lora_rank=4)
    message = str(err.value)
    assert "\n" not in message and "lora_rank: 8 there, 4 here" in message
    result = _fit(out, objective, resume=True, steps=2)  # the same objective (tuple and JSON list alike)
    assert result.steps_done == 2


def test_resume_in_a_missing_folder_starts_fresh_and_says_so(tmp_path, capsys):
    result = _fit(tmp_path / "new", resume=True)
    assert result.steps_done == 1
    assert "no checkpoint in" in capsys.readouterr().err


def test_runs_that_learn_nothing_are_reported(tmp_path):
    class Constant:
        name, differentiable = "constant", True

        def __call__(self, images, prompts):
            return images.sum(dim=(1, 2, 3)) * 0.0 + 1.0

    with pytest.warns(RuntimeWarning, match="the LoRA gradient was exactly zero in the first 3 updates"):
        _fit(tmp_path / "a", Constant(), steps=3)

    class NaN:
        """Finite at the first call (the step-0 evaluation, where the reward contract is checked), then NaN."""

        name, differentiable = "nan", True
        calls = 0

        def __call__(self, images, prompts):
            NaN.calls += 1
            return images.mean(dim=(1, 2, 3)) * (1.0 if NaN.calls == 1 else float("nan"))

    with pytest.raises(DraftError, match=r"no update was applied in 2 steps"):
        _fit(tmp_path / "b", NaN(), steps=2, max_nonfinite_steps=5)
