"""pytest fixtures for reward-plugin authors, registered through the ``pytest11`` entry point.

- ``check_reward``: the [check_reward][draftsdk.testing.check_reward] function.
- ``tiny_sd_path``: a session-wide folder holding a saved tiny random-weight Stable Diffusion
  pipeline, loadable with ``StableDiffusionPipeline.from_pretrained``.
- ``tiny_sdxl_path``: the same for a tiny Stable Diffusion XL pipeline.
- ``smooth_image``: the [smooth_image][draftsdk.testing.smooth_image] function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .testing import check_reward, save_tiny_pipeline, smooth_image


@pytest.fixture(name="check_reward")
def _check_reward_fixture() -> Any:
    """The [check_reward][draftsdk.testing.check_reward] function, as a fixture."""
    return check_reward


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a saved tiny random-weight Stable Diffusion pipeline (built once per session)."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a saved tiny random-weight Stable Diffusion XL pipeline (built once per session)."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "pipeline", family="sdxl")


@pytest.fixture(name="smooth_image")
def _smooth_image_fixture() -> Any:
    """The [smooth_image][draftsdk.testing.smooth_image] function, as a fixture."""
    return smooth_image
