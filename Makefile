# The two commands of the README. Each one does all the set-up it needs, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
DEPS   := $(VENV)/.deps-installed
BUILT  := $(VENV)/.resx-installed

.PHONY: demo test lint install clean

demo: $(BUILT)
	$(VENV)/bin/resx env
	$(VENV)/bin/resx bench --quick -o resx-bench

test: lint
	$(PY) -m pytest -q --durations=15  # the slowest tests named: the suite must stay near 10 minutes

# ruff (lint and format) for Python, clang-format for C++: the code as committed, unchanged.
lint: $(BUILT)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror resnet_cpp/*.cpp resnet_cpp/*.h

install: $(BUILT)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is a ~5.5 GB CUDA wheel: this step takes about 2 minutes here, once.
$(DEPS): requirements.txt | $(PY)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt -c requirements.txt
	touch $@

# Editable and without build isolation: the extension must build against the torch it runs with.
# Later edits to C++ sources are rebuilt on import (meson-python's editable loader).
$(BUILT): $(DEPS) pyproject.toml meson.build
	$(PIP) install --disable-pip-version-check -q --no-build-isolation --no-deps \
		-Cbuild-dir=build/editable -e .
	touch $@

clean:
	rm -rf build $(VENV)
