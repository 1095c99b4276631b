# Each target sets itself up: a venv in .venv, the pip packages pinned in requirements.lock
# (what CI tested), and unixODBC + FreeTDS (the drivers) and Chromium (the browser test) from
# Debian when they are missing (root or sudo).
# `make lock` re-pins after a change to pyproject.toml's dependencies.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dtaas-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test test-fast lint dev bench bench-snowflake lock clean

setup: system-packages $(STAMP)

# Checked at every make (a few file lookups), so a machine that lost one gets it back.
system-packages:
	@need=0; ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2' || need=1; \
	ls /usr/lib/*/odbc/libtdsodbc.so >/dev/null 2>&1 || need=1; \
	command -v chromium >/dev/null 2>&1 || need=1; \
	if [ $$need = 1 ]; then \
		echo "installing unixodbc, tdsodbc (FreeTDS) and chromium with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq unixodbc tdsodbc chromium >/dev/null; \
	fi

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "installing python3-venv with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null && \
		$(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(PY) -m dtaas_dagster.cli demo

# Lint and types first (seconds), then the suite on 3 workers: most tests wait on servers and
# subprocesses, so 3 workers keep 2 cores busy (`-n 0` runs it in one process).
PYTEST_WORKERS ?= 3

test: setup lint
	$(PY) -m pytest -n $(PYTEST_WORKERS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-fast: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow"

dev: setup
	$(PY) -m dtaas_dagster.cli dev

bench: setup
	$(PY) bench/full_load.py

bench-snowflake: setup
	$(PY) bench/snowflake.py

lock:
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements.lock

clean:
	rm -rf .dtaas
