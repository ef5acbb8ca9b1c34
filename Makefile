# Two set-up commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline raw datasets (MNIST, Fashion-MNIST, CIFAR-10 JPEG) when this checkout sits beside them.
ifneq ($(wildcard ../shared/datasets),)
export MARGIN_JAX_DATA ?= $(abspath ../shared/datasets)
endif

.PHONY: demo test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.demo

test: $(STAMP)
	$(PY) -m pytest -q tests
