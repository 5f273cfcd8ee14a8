# Two entry points: `make demo` runs the whole path locally (sync → bucket → edge → redirector); `make test` the suite.
PYTHON ?= python3.11
VENV := .venv
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8

.PHONY: venv demo test lint typecheck clean

$(VENV)/.installed: requirements/dev.txt requirements/runtime.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(PY) --compile-bytecode requirements/dev.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m devstack stack

test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pyright
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: venv
	$(PY) -m pyright

clean:
	rm -rf $(VENV) build .pytest_cache
