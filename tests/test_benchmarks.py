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


def _run_quick(script: str, tmp_path: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", "--no-save"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "wrote" not in out.stdout
    return out.stdout


def test_step_cost_quick(tmp_path):
    stdout = _run_quick("step_cost.py", tmp_path)
    tables = [line for line in stdout.splitlines() if line.startswith("|")]
    timing = [[c.strip() for c in line.strip("|").split("|")] for line in tables if line.count("|") == 6][2:]
    names = [row[0] for row in timing]
    assert "sampling, draftsdk (no grad)" in names and "DRaFT-1" in names and any(n.startswith("DRaFT-LV") for n in names)
    base = next(row for row in timing if row[0] == "sampling, draftsdk (no grad)")
    assert base[2] == "1.00x"  # ratios are relative to this row
    for row in timing:
        assert float(row[1]) > 0 and float(row[4]) > 0, row
    memory = [[c.strip() for c in line.strip("|").split("|")] for line in tables if line.count("|") == 4][2:]
    assert [(r[0], r[1]) for r in memory] == [("1", "always"), ("1", "never"), ("4", "always"), ("4", "never")]
    assert "Full DRaFT / DRaFT-1 peak memory" in stdout


def test_sample_efficiency_quick(tmp_path):
    stdout = _run_quick("sample_efficiency.py", tmp_path)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in stdout.splitlines() if line.startswith("|")]
    main = [r for r in rows if len(r) == 10 and r[0] != "method" and not set(r[0]) <= {"-"}]
    assert [r[0] for r in main] == ["DRaFT-1", "DRaFT-LV (n=2)", "DDPO"]
    # queries run: 2 updates of 4 images for DRaFT-1, 3x that for LV (sample + 2 re-noised copies), 2 x 4 for DDPO
    assert [int(r[8]) for r in main] == [8, 24, 8]
    for r in main:
        assert 0.0 <= float(r[7]) <= 1.0
    assert "Learning-rate sweep" in stdout
