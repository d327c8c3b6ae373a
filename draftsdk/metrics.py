"""The run's metrics log: ``metrics.jsonl`` (one JSON object per line) and optional TensorBoard scalars."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic

__all__ = ["MetricsLog", "merge_metrics"]


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` (and TensorBoard when enabled and installed).

    Only the main process writes (``enabled=False`` on the others).
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "kind"):
                    self.tb.add_scalar(key if "/" in key else f"train/{key}", value, record["step"])

    def trim(self, step: int) -> None:
        """Drop records after ``step`` (written by a run that was interrupted after its last checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def merge_metrics(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Average the metrics of the accumulated rollouts of one update (None values are left out)."""
    merged: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts if p.get(key) is not None]
        merged[key] = sum(values) / len(values) if values else None
    return {k: v for k, v in merged.items() if v is not None}
