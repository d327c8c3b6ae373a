# Two commands for a new user (see README.md):
#   make demo   fine-tune the embedded digits model with DRaFT on the CPU and write pictures
#   make test   run the whole test suite
# Both create .venv/ on first use (about 3 minutes, ~6 GB: torch 2.14.1 from the wheels on disk)
# and reuse it afterwards; the install re-runs only when a pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.draftsdk-installed
PLUGINS := $(sort $(wildcard plugins/draftsdk-*))
export HF_HUB_OFFLINE := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test typecheck install docs clean-venv

$(STAMP): pyproject.toml $(wildcard plugins/draftsdk-*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23" "setuptools>=64" wheel
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --no-build-isolation -e ".[dev]" $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/draftsdk demo

test: $(STAMP)
	$(PY) -m pytest -q

typecheck: $(STAMP)
	$(PY) -m mypy

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

clean-venv:
	rm -rf $(VENV)
