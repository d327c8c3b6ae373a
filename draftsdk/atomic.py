"""Atomic file writes: a temporary file in the target's folder, fsync, then one rename.

A crash at any moment leaves either the old file or the new one, never half of one. The new file
gets the permissions an ordinary ``open(path, "w")`` would give (``0o666`` minus the umask), not the
``0o600`` of the temporary file.

Examples:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_text_atomic(path, "hello").read_text()
    'hello'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DraftError

__all__ = ["atomic_write", "write_text_atomic", "check_output_path"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file (its return value is ignored), then move it to ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_output_path(output: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]] = (), *, overwrite: bool = False) -> Path:
    """Refuse an output that is one of the inputs, or an existing file without ``overwrite``.

    Raises:
        DraftError: one line naming the file and the fix.
    """
    out = Path(output)
    for given in inputs:
        source = Path(given)
        same = out.exists() and source.exists() and os.path.samefile(out, source)
        if same or out.resolve() == source.resolve():
            raise DraftError(f"output {str(out)!r} is also an input; write to another file (inputs are never replaced)")
    if out.is_dir():
        raise DraftError(f"output {str(out)!r} is a folder; give a file name")
    if out.exists() and not overwrite:
        raise DraftError(f"output {str(out)!r} already exists; pass --overwrite to replace it, or choose another name")
    return out
