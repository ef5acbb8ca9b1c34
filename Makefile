# Two set-up commands on a fresh clone: `make demo` and `make test`; `make docs`
# builds the documentation site (docs/_build/html/index.html), offline.
# JAX_EXTRA=cuda13 (or cuda12) installs JAX for NVIDIA GPUs: `make demo JAX_EXTRA=cuda13`.
PYTHON ?= python3
JAX_EXTRA ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed$(JAX_EXTRA:%=-%)

# Offline raw datasets (MNIST, Fashion-MNIST, CIFAR-10 JPEG) when this checkout sits beside them.
ifneq ($(wildcard ../shared/datasets),)
export MARGIN_JAX_DATA ?= $(abspath ../shared/datasets)
endif

.PHONY: demo test docs notebooks

# One stamp per JAX_EXTRA, the others removed: another choice installs again.
$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test$(JAX_EXTRA:%=,%)]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.demo

# Two workers (this project's machines have 2 cores), a test file to each in turn;
# the two longest files (8 devices in a subprocess; a training run per loss) first,
# one to each worker, so the other files share the rest: tests/conftest.py orders
# them, and --no-loadscope-reorder keeps that order (xdist would start the files
# with most tests first, and the one-test 8-device file last).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

# Warnings are errors; then every public name must have an entry.
docs: $(STAMP)
	rm -rf docs/_build
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	$(PY) docs/check_pages.py docs/_build/html

# Executes the notebooks in place, storing the outputs the site renders.
notebooks: $(STAMP)
	MPLBACKEND=module://matplotlib_inline.backend_inline $(PY) docs/execute_notebooks.py
