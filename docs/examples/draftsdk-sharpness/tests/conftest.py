"""Test set-up of draftsdk-sharpness.

Installed (``pip install -e ".[test]"``), draftsdk finds the plugin through its entry point. When the
tests run from a checkout where it is not installed (draftsdk's own test suite runs them), the source
folder goes on ``sys.path`` and the ``registered`` fixture registers the module in-process instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SRC = Path(__file__).resolve().parents[1] / "src"
if importlib.util.find_spec("draftsdk_sharpness") is None:
    sys.path.insert(0, str(SRC))


# --8<-- [start:fixture]
@pytest.fixture
def registered():
    """draftsdk with this plugin loaded: through its entry point when installed,
    otherwise registered in-process."""
    import draftsdk
    import draftsdk_sharpness
    from draftsdk import plugins

    if "sharpness" in [info.name for info in draftsdk.list_rewards()]:
        yield draftsdk_sharpness
        return
    plugins.register_plugin(
        draftsdk_sharpness,
        name="sharpness",
        distribution="draftsdk-sharpness",
        version=draftsdk_sharpness.__version__,
    )
    try:
        yield draftsdk_sharpness
    finally:
        plugins.unregister_plugin("sharpness")
# --8<-- [end:fixture]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test models are tiny: one thread is fastest, and on a small shared CI machine several
    threads per process mostly wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
