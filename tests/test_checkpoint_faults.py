"""A damaged newest checkpoint: the resume says which file is bad, falls back to the previous good
checkpoint and ends where an uninterrupted run ends; planted pickles are refused in one line."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import pytest
import torch

from draftsdk import TrainConfig, Trainer
from draftsdk.checkpoint import load_checkpoint_state, resume_checkpoint
from draftsdk.errors import DraftError
from draftsdk.lora import read_lora
from draftsdk.testing import tiny_pipeline


def _cfg(out, **kw):
    base = dict(steps=2, batch_size=1, num_inference_steps=2, learning_rate=1e-2, output_dir=out, progress=False,
                eval_seeds=[0], eval_every=1000, save_every=1, keep_checkpoints=3)
    return TrainConfig(**{**base, **kw})


def _fit(out, **kw):
    return Trainer(tiny_pipeline(), "brightness", _cfg(out, **kw)).fit(["a cat"])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished 2-step run with checkpoints at steps 1 and 2, and the adapter it ends with."""
    out = tmp_path_factory.mktemp("faults") / "run"
    _fit(out)
    return out, read_lora(out / "lora.safetensors").state_dict


class _Planted:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def _flip_tensor_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the end of the tensor data, past the header
    path.write_bytes(bytes(data))


def _plant_pickle(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        contents = {n: z.read(n) for n in names}
    data_pkl = next(n for n in names if n.endswith("data.pkl"))
    contents[data_pkl] = pickle.dumps(_Planted(), protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, contents[n])


CORRUPTIONS = {
    "flipped tensor byte in the adapter": ("lora.safetensors", _flip_tensor_byte, "SHA-256 does not match"),
    "empty state": ("state.pt", lambda p: p.write_bytes(b""), "SHA-256 does not match"),
    "truncated meta.json": ("meta.json", lambda p: p.write_text(p.read_text()[:40]), "meta.json' is unreadable"),
    "meta.json not an object": ("meta.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    "adapter deleted": ("lora.safetensors", lambda p: p.unlink(), "lora.safetensors' is unreadable"),
}


@pytest.mark.parametrize("fault", list(CORRUPTIONS))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(template, tmp_path, fault):
    src, straight = template
    run = tmp_path / "run"
    shutil.copytree(src, run)
    name, damage, message = CORRUPTIONS[fault]
    damage(run / "checkpoints" / "step-000002" / name)
    with pytest.warns(RuntimeWarning, match=rf"step-000002.*{message}.*resuming from the previous good checkpoint .*step-000001"):
        result = _fit(run, resume=True)
    assert result.steps_done == 2
    resumed = read_lora(run / "lora.safetensors").state_dict
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)  # step 2 redone from step 1: bit for bit
    train_steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert train_steps == [1, 2]


def test_without_any_intact_checkpoint_the_resume_lists_the_faults(template, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(template[0], run)
    for step in ("step-000001", "step-000002"):
        (run / "checkpoints" / step / "state.pt").write_bytes(b"garbage")
    with pytest.raises(DraftError, match=r"no intact checkpoint to resume in .*step-000002.*state.pt.*step-000001.*state.pt"):
        resume_checkpoint(run)


def test_a_planted_pickle_is_refused_in_one_line_and_never_run(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "step-000002"
    shutil.copytree(template[0] / "checkpoints" / "step-000002", checkpoint)
    meta = json.loads((checkpoint / "meta.json").read_text())
    _plant_pickle(checkpoint / "state.pt")
    meta.pop("sha256")  # as if written before checksums: the unpickler itself must refuse it
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DraftError) as info:
        load_checkpoint_state(checkpoint)
    assert "state.pt' is unreadable" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_state_that_is_not_a_training_state_is_named(template, tmp_path):
    checkpoint = tmp_path / "step-000002"
    shutil.copytree(template[0] / "checkpoints" / "step-000002", checkpoint)
    torch.save({"weights": torch.zeros(2)}, checkpoint / "state.pt")
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta.pop("sha256")
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DraftError, match=r"state.pt' is not a draftsdk training state"):
        load_checkpoint_state(checkpoint)
