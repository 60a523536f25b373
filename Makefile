# The two front doors: `make run` and `make test`. Both install everything from the lock file
# first (uv, into .venv), so a fresh machine needs only Python 3.11+ and network access to PyPI.

PYTHON ?= python3
VENV := .venv
UV := .uv/bin/uv
UV_VERSION := 0.13.8
HOST ?= 127.0.0.1
PORT ?= 8000
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run serve test test-fast deploy-check bench soak lock clean

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

## Migrate the embedded SQLite database, load the catalogue and demo data, serve on :8000.
run: install
	$(VENV)/bin/facility-share db upgrade
	$(VENV)/bin/facility-share demo load --host $(HOST) --port $(PORT)
	$(VENV)/bin/facility-share serve --host $(HOST) --port $(PORT)

## Serve without reloading data.
serve: install
	$(VENV)/bin/facility-share serve --host $(HOST) --port $(PORT)

## The whole suite: SQLite and PostgreSQL (when reachable; required in CI), browser tests when Chromium is there.
test: install
	$(VENV)/bin/python -m pytest

## Only the tests that need no server process or browser.
test-fast: install
	$(VENV)/bin/python -m pytest -m "not browser and not slow"

## The deployment's checks: image steps in a fresh environment, Compose, Kubernetes, backup/restore.
deploy-check: install
	$(VENV)/bin/python -m pytest tests/test_deploy.py

## Benchmarks (print figures and ratios; not part of the test suite).
bench: install
	$(VENV)/bin/python bench/catalog_import.py

## Ten minutes of mixed load on PostgreSQL (serve --workers 2): throughput, p50/p99, memory growth.
soak: install
	$(VENV)/bin/python bench/soak.py

## Re-resolve the lock file after changing dependencies in pyproject.toml.
lock: | $(UV)
	$(UV) lock

clean:
	rm -rf $(VENV) .uv var .pytest_cache .hypothesis
