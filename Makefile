# `make test` and `make demo` set up .venv themselves when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is installed first, pinned to a range that admits the release on local disk,
# so that the resolver never reaches for a multi-gigabyte download.
TORCH  ?= torch>=2.1,<=2.14.1 torchvision>=0.16,<=0.29.1

.PHONY: test test-fast bench demo demo-check clean

$(VENV)/.dev-installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(word 1,$(TORCH))" "$(word 2,$(TORCH))"
	$(PY) -m pip install -e '.[dev]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.dev-installed
	$(PY) -m pip install -e '.[dev,bench]'
	touch $@

test: $(VENV)/.dev-installed
	$(PY) -m pytest

test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not slow"

demo: $(VENV)/.dev-installed
	$(PY) -m kagglekit.cli demo

# Every demo at full size, asserting the claims the README makes of its table (tests marked `demo`,
# which `make test` deselects). Run it whenever kagglekit/demo/ or notebooks/ change.
demo-check: $(VENV)/.dev-installed
	$(PY) -m pytest --demo-check

bench: $(VENV)/.bench-installed
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info
