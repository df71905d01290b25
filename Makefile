# The two commands of the README. Each one does all the set-up it needs, once.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
DEPS   := $(VENV)/.deps-installed
BUILT  := $(VENV)/.resx-installed
# LoadGen's C++ sources, from the sdist of the version requirements.txt pins (its wheel has only the
# Python binding); meson.build compiles them into the C++ runtime.
LOADGEN_VERSION := $(shell sed -n 's/^mlcommons-loadgen==//p' requirements.txt)
LOADGEN := $(VENV)/src/mlcommons_loadgen-$(LOADGEN_VERSION)/loadgen.h

.PHONY: demo test lint install clean

demo: $(BUILT)
	$(VENV)/bin/resx env
	$(VENV)/bin/resx bench --quick -o resx-bench

# Two workers (pytest-xdist), the modules that share an expensive run on one of them (tests/conftest.py);
# the slowest tests named: the suite must stay within 10 minutes.
test: lint
	$(PY) -m pytest -q -n 2 --durations=15

# ruff (lint and format) for Python, clang-format for C++: the code as committed, unchanged.
lint: $(BUILT)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror resnet_cpp/*.cpp resnet_cpp/*.h

install: $(BUILT)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is a ~5.5 GB CUDA wheel: this step takes about 2 minutes here, once.
# ExecuTorch without its Requires-Dist (pandas, scikit-learn, coremltools, ... that resx does not use):
# requirements-nodeps.txt, whose own needs are in requirements.txt.
$(DEPS): requirements.txt requirements-nodeps.txt | $(PY)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt -c requirements.txt
	$(PIP) install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	touch $@

# Editable and without build isolation: the extension must build against the torch it runs with.
# Later edits to C++ sources are rebuilt on import (meson-python's editable loader).
$(LOADGEN): requirements.txt | $(DEPS)
	$(PIP) download --disable-pip-version-check -q --no-deps --no-binary :all: -d $(VENV)/src \
		mlcommons-loadgen==$(LOADGEN_VERSION)
	tar xzf $(VENV)/src/mlcommons_loadgen-$(LOADGEN_VERSION).tar.gz -C $(VENV)/src
	touch $@

$(BUILT): $(DEPS) $(LOADGEN) pyproject.toml meson.build
	$(PIP) install --disable-pip-version-check -q --no-build-isolation --no-deps \
		-Cbuild-dir=build/editable -e .
	touch $@

clean:
	rm -rf build $(VENV)
