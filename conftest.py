"""Settings for every test in this repository (core, plugins, docs): offline, and one CPU thread.

The models in the tests are tiny: on a 2-core machine, two OpenMP threads per op mostly wait on each
other (a tiny op measured 0.95 ms with 2 threads against 0.09 ms with 1). The variable is set before
torch is imported by the tests, so the subprocesses they start (CLI runs, torchrun) run the same way.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
