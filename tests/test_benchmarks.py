"""The benchmark scripts under benchmarks/ stay runnable: each one's ``--quick`` mode, printed only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _table_rows(stdout: str) -> list[list[str]]:
    """The data rows of the Markdown table a benchmark prints, as lists of cells."""
    rows = [line for line in stdout.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows[2:]]


@pytest.mark.parametrize(("reward", "size"), [("aesthetic", "tiny"), ("adversarial", "full (ResNet-50)")])
def test_reward_cost_quick(reward, size, tmp_path):
    pytest.importorskip(f"draftsdk_{reward}")
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "reward_cost.py"), "--reward", reward, "--quick", "--no-save",
         "--cache", str(cache)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "wrote" not in out.stdout
    rows = _table_rows(out.stdout)
    # size | params (M) | input | batch | mode | s/image best | s/image median | model MB | peak extra MB | per image | load s
    assert [(r[0], r[3], r[4]) for r in rows] == [(size, "1", "forward (no_grad)"), (size, "1", "forward+backward")], out.stdout
    for row in rows:
        assert len(row) == 11, row
        assert float(row[1]) > 0 and float(row[5]) > 0 and float(row[6]) >= float(row[5])
    assert (cache / f"{reward}-{'tiny' if size == 'tiny' else 'full'}" / "options.json").is_file()
    shutil.rmtree(cache)  # the random ResNet-50 is 100 MB
