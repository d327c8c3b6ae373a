"""Run directories and checkpoints inside a run, written atomically.

A checkpoint is a folder ``checkpoints/step-000100/`` holding ``lora.safetensors`` (a normal
diffusers-format LoRA file), ``state.pt`` (optimizer, LR schedule, RNG states, counters; tensors and
plain containers only, read back with ``torch.load(weights_only=True)``) and ``meta.json``. It is
built under a temporary name and renamed into place, so ``kill -9`` at any moment leaves either the
previous checkpoints or the new one complete, never a half-written one. ``meta.json`` records the
SHA-256 of the other two files; a resume verifies them and falls back to the newest checkpoint that
is intact (a disk fault or a stray edit), warning about each one it passes over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import write_text_atomic
from .errors import DraftError

__all__ = [
    "CHECKPOINT_RE",
    "RunLock",
    "check_run_dir",
    "clear_run",
    "is_run_dir",
    "latest_checkpoint",
    "load_checkpoint_state",
    "resume_checkpoint",
    "prepare_run_dir",
    "save_checkpoint",
]

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")
MIN_FREE_BYTES = 64 * 2**20
CHECKPOINT_FILES = ("lora.safetensors", "state.pt")


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


MARKER = ".draftsdk-run"
LOCK = ".draftsdk-run.lock"
# What a run writes into its folder, relative to it; overwrite removes exactly these and nothing else.
RUN_FILES = ("metrics.jsonl", "config.json", "lora.safetensors", ".lora.safetensors.*.tmp", ".config.json.*.tmp",
             ".metrics.jsonl.*.tmp", "samples/step-*.png", "samples/.step-*.png.*.tmp", "tensorboard/events.out.tfevents.*")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run that draftsdk started (its marker file)."""
    return (path / MARKER).is_file()


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(p.name != LOCK for p in path.iterdir())


def check_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse what would lose data, before anything is loaded or written.

    A file as output_dir, a non-empty folder without ``resume``/``overwrite``, and (with either) a
    non-empty folder that is not a draftsdk run directory (a mistyped path) are refused.
    """
    if path.exists() and not path.is_dir():
        raise DraftError(f"output_dir {str(path)!r} exists and is a file; choose a folder path")
    if not _non_empty(path):
        return
    if not (overwrite or resume):
        raise DraftError(
            f"run directory {str(path)!r} already exists and is not empty; pass resume=True to continue it, "
            "overwrite=True to replace its run, or another output_dir"
        )
    if not is_run_dir(path):
        what = "resume" if resume else "overwrite"
        raise DraftError(
            f"{what}=True but {str(path)!r} is not a draftsdk run directory (it has files but no {MARKER}); "
            "check output_dir, or choose an empty folder"
        )


def clear_run(path: Path) -> list[Path]:
    """Remove the files a previous run wrote into ``path`` (and its checkpoints); nothing else. Returns them."""
    removed: list[Path] = []
    root = path / "checkpoints"
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and (CHECKPOINT_RE.match(child.name) or child.name.startswith(".tmp-step-")):
                shutil.rmtree(child)
                removed.append(child)
    for pattern in RUN_FILES:
        for file in path.glob(pattern):
            file.unlink()
            removed.append(file)
    for folder in (root, path / "samples", path / "tensorboard"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


class RunLock:
    """An exclusive lock on a run directory: a lock file holding the owner's PID.

    A lock whose process is gone (killed) is taken over; a live one is refused with its PID.
    """

    def __init__(self, path: Path) -> None:
        self.file = path / LOCK
        self.held = False

    def acquire(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise DraftError(
                        f"run directory {str(self.file.parent)!r} is in use by process {pid}; wait for that run to end, "
                        "or choose another output_dir"
                    ) from None
                self.file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise DraftError(f"cannot lock run directory {str(self.file.parent)!r}; remove {str(self.file)!r} if no run is using it")

    def _owner(self) -> int | None:
        try:
            return int(self.file.read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held and self._owner() == os.getpid():
            self.file.unlink(missing_ok=True)
        self.held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Create the run directory, refusing to clobber an existing run; check it is writable and has space."""
    check_run_dir(path, overwrite=overwrite, resume=resume)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not is_run_dir(path):
            write_text_atomic(path / MARKER, "a draftsdk run directory: overwrite=True removes only the files draftsdk wrote\n")
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


def _complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (``meta.json`` present), newest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True) if (p / "meta.json").is_file()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    complete = _complete_checkpoints(run_dir)
    return complete[0] if complete else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        files = {name: _sha256(tmp / name) for name in CHECKPOINT_FILES}
        # meta.json last: its presence marks a checkpoint as complete
        write_text_atomic(tmp / "meta.json", json.dumps({**meta, "sha256": files}, indent=2, default=str))
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
    """Read and verify a checkpoint: ``meta.json``, the SHA-256 of its files, then ``state.pt``
    (with ``weights_only=True``). Any fault is a one-line DraftError naming the file."""
    meta_file = checkpoint / "meta.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DraftError(f"checkpoint file {str(meta_file)!r} is unreadable: {str(exc).splitlines()[0]}") from None
    for name, expected in (meta.get("sha256") or {}).items():
        file = checkpoint / name
        try:
            actual = _sha256(file)
        except OSError as exc:
            raise DraftError(f"checkpoint file {str(file)!r} is unreadable: {exc.strerror or exc}") from None
        if actual != expected:
            raise DraftError(f"checkpoint file {str(file)!r} is damaged: its SHA-256 does not match the one in meta.json")
    state_file = checkpoint / "state.pt"
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickler, zip and EOF errors alike: the file is not a state this library wrote
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DraftError(f"checkpoint file {str(state_file)!r} is unreadable: {text}") from None
    if not isinstance(state, dict) or not {"step", "optimizer", "counters"} <= state.keys():
        raise DraftError(f"checkpoint file {str(state_file)!r} is not a draftsdk training state")
    return state, meta


def resume_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that reads back intact, as ``(path, state, meta)``; None when there is none.

    A damaged checkpoint is passed over with a warning naming it and the fault; when every one is
    damaged, a DraftError lists them.
    """
    bad: list[str] = []
    for checkpoint in _complete_checkpoints(run_dir):
        try:
            state, meta = load_checkpoint_state(checkpoint)
        except DraftError as exc:
            bad.append(str(exc))
            continue
        for fault in bad:
            warnings.warn(f"{fault}; resuming from the previous good checkpoint {str(checkpoint)!r}", RuntimeWarning, stacklevel=2)
        return checkpoint, state, meta
    if bad:
        raise DraftError(f"no intact checkpoint to resume in {str(run_dir)!r}: " + "; ".join(bad))
    return None
