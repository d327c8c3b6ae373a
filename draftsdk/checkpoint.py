"""Run directories and checkpoints inside a run, written atomically.

A checkpoint is a folder ``checkpoints/step-000100/`` holding ``lora.safetensors`` (a normal
diffusers-format LoRA file), ``state.pt`` (optimizer, LR schedule, RNG states, counters; tensors and
plain containers only, read back with ``torch.load(weights_only=True)``) and ``meta.json``. It is
built under a temporary name and renamed into place, so ``kill -9`` at any moment leaves either the
previous checkpoints or the new one complete, never a half-written one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import write_text_atomic
from .errors import DraftError

__all__ = ["check_run_dir", "prepare_run_dir", "save_checkpoint", "latest_checkpoint", "load_checkpoint_state", "CHECKPOINT_RE"]

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")
MIN_FREE_BYTES = 64 * 2**20


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse a run directory that is a file, or an existing run without ``overwrite``/``resume`` (writes nothing)."""
    if path.exists() and not path.is_dir():
        raise DraftError(f"output_dir {str(path)!r} exists and is a file; choose a folder path")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise DraftError(
            f"run directory {str(path)!r} already exists and is not empty; pass resume=True to continue it, "
            "overwrite=True to write into it, or another output_dir"
        )


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Create the run directory, refusing to clobber an existing run; check it is writable and has space."""
    check_run_dir(path, overwrite=overwrite, resume=resume)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DraftError(f"run directory {str(path)!r} is not writable: {exc.strerror or exc}") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise DraftError(
            f"only {free / 2**20:.0f} MiB free on the disk of {str(path)!r}; checkpoints need at least "
            f"{MIN_FREE_BYTES // 2**20} MiB: free space or choose another output_dir"
        )


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    complete = [(step, p) for step, p in found if (p / "meta.json").is_file()]
    return max(complete)[1] if complete else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    write_lora: Any,
    state: Mapping[str, Any],
    meta: Mapping[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically and prune all but the ``keep`` newest.

    ``write_lora(path)`` writes the adapter file; ``state`` is saved with torch.save.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:06d}-", dir=root))
    try:
        write_lora(tmp / "lora.safetensors")
        with open(tmp / "state.pt", "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        # meta.json last: its presence marks a checkpoint as complete
        write_text_atomic(tmp / "meta.json", json.dumps(dict(meta), indent=2, default=str))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    steps = sorted(
        (int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))
    )
    for _, old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".tmp-step-*"):  # from a run killed mid-write
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def load_checkpoint_state(checkpoint: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``state.pt`` (with ``weights_only=True``) and ``meta.json`` of a checkpoint."""
    try:
        state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
        meta = json.loads((checkpoint / "meta.json").read_text(encoding="utf-8"))
    except (OSError, RuntimeError, json.JSONDecodeError) as exc:
        raise DraftError(f"checkpoint {str(checkpoint)!r} is unreadable: {str(exc).splitlines()[0]}") from None
    return state, meta
