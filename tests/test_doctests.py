"""Every module's docstring examples run (draftsdk and the reward plugins shipped in this repo)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import draftsdk

PLUGIN_PACKAGES = ["draftsdk_adversarial", "draftsdk_aesthetic", "draftsdk_clipscore", "draftsdk_hpsv2",
                   "draftsdk_imagereward", "draftsdk_owlvit", "draftsdk_pickscore"]
SKIP = {"draftsdk.__main__"}  # runs the command line when imported


def _modules() -> list[str]:
    names = ["draftsdk"]
    names += [m.name for m in pkgutil.walk_packages(draftsdk.__path__, "draftsdk.") if m.name not in SKIP]
    for package in PLUGIN_PACKAGES:
        module = importlib.import_module(package)
        names += [package] + [m.name for m in pkgutil.walk_packages(module.__path__, f"{package}.")]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
