"""A stopped rank fails the others after collective_timeout_s, with a one-line message, instead of hanging them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_a_stopped_rank_fails_the_other_within_the_timeout():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "stall_worker.py"), "3", "40"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    line = next((x for x in proc.stdout.splitlines() if "collective_timeout_s" in x), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    waited, message = line.split(" ", 1)
    assert float(waited) < 20  # bounded by the 3 s timeout (plus gloo's own slack), not by rank 1's 40 s
    assert message.startswith("rank 0: agreeing on skipping the update across 2 processes failed (")
    assert message.endswith("another process stopped, died or fell more than collective_timeout_s=3 s behind; "
                            "resume from the last checkpoint")


def test_the_timeout_is_a_validated_setting():
    from draftsdk import TrainConfig
    from draftsdk.config import ConfigError

    assert TrainConfig().collective_timeout_s == 600
    with pytest.raises(ConfigError, match="collective_timeout_s: Input should be greater than 0"):
        TrainConfig(collective_timeout_s=0)
