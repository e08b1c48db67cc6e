# flowdsl developer commands. Every install step lives here, so a fresh clone
# needs nothing but Python >= 3.11 and make.
#
# The development environment (.venv) is installed from the committed uv.lock,
# so every machine and CI get the same versions. uv itself is installed from
# PyPI into .venv, pinned here. `make lock` updates uv.lock after a change to
# pyproject.toml; `make lock-upgrade` moves every package to its newest release.
# `make test-latest` runs the tests against the newest releases, without the lock.
PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
UV_VERSION := 0.13.9
UV         := $(BIN)/uv
UV_STAMP   := $(VENV)/.uv-$(UV_VERSION)
STAMP      := $(VENV)/.installed
EXTRAS     := test dev process dask docs postgres fast otel ui browser
LATEST     := .venv-latest

# uv runs on the venv's Python and never downloads an interpreter of its own.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: install lock lock-upgrade test test-latest lint typecheck system-deps pytest docs \
        demo bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV_STAMP): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

# --locked: install exactly uv.lock, and stop if it no longer matches pyproject.toml.
# The project itself is installed editable.
$(STAMP): uv.lock pyproject.toml hatch_build.py flowdsl/_engine/_cfreeze.c $(UV_STAMP)
	$(UV) sync --locked --python $(BIN)/python $(addprefix --extra ,$(EXTRAS))
	touch $@

install: $(STAMP)

lock: $(UV_STAMP)
	$(UV) lock --python $(BIN)/python

lock-upgrade: $(UV_STAMP)
	$(UV) lock --upgrade --python $(BIN)/python

lint: $(STAMP)
	$(BIN)/ruff check flowdsl tests examples benchmarks hatch_build.py
	$(BIN)/ruff format --check flowdsl tests examples benchmarks hatch_build.py

typecheck: $(STAMP)
	$(BIN)/mypy

# coverage starts before pytest, so the flowdsl pytest plugin (imported at
# pytest start-up through its entry point) does not hide import-time lines.
pytest: $(STAMP)
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report

# The guides and the API reference (built from the docstrings) into site/;
# --strict turns a broken link, a bad anchor or a page missing from the nav
# into a failure (not with --quiet, which hides the warnings from --strict
# too). NO_MKDOCS_2_WARNING silences Material's notice about its
# end of life, printed on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The quick benchmark runs in CI: it checks every implementation's results and
# reports timings; it never fails the build on a timing.
test: lint typecheck docs system-deps pytest bench-quick

# The test suite against the newest release of every dependency, in a venv of
# its own and without the lock: upstream breakage shows here first, on purpose.
# It prints the versions it tested.
$(LATEST)/bin/python: | $(UV_STAMP)
	$(UV) venv --quiet --python $(BIN)/python $(LATEST)

test-latest: $(UV_STAMP) system-deps | $(LATEST)/bin/python
	$(UV) pip install --quiet --python $(LATEST)/bin/python --upgrade -e '.[test,process,dask,postgres,fast,otel,ui,browser]'
	$(UV) pip list --python $(LATEST)/bin/python --format freeze \
	  | grep -iE '^(attrs|click|cloudpickle|croniter|dask|distributed|hypothesis|opentelemetry-api|opentelemetry-sdk|orjson|playwright|psycopg|psycopg-pool|pytest|rich|starlette|structlog|uvicorn)=='
	$(LATEST)/bin/python -m pytest $(PYTEST_ARGS)

# The PostgreSQL store tests use a server on 127.0.0.1:5432, or else a private
# cluster of their own made with the system's binaries (tests/pgserver.py):
# Debian's package is installed when neither exists, without starting its
# service (a policy-rc.d refuses it while apt-get runs, unless one is there).
PG_INSTALL = apt-get update -qq \
  && { [ -e /usr/sbin/policy-rc.d ] || { printf '\043!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
       && chmod +x /usr/sbin/policy-rc.d && trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }; } \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null

# Graphviz renders the DOT export in the tests, and Chromium (driven by Playwright)
# runs the dashboard's browser tests; both are installed here when missing and we
# may (CI runs as root), so those tests run rather than skip.
system-deps:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	  else echo "note: Graphviz 'dot' is missing; install graphviz to run the DOT render test"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: Chromium is missing; install Debian's chromium to run the browser tests"; fi; }
	@$(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null \
	  || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    $(PG_INSTALL); \
	  else echo "note: PostgreSQL is missing; install it (or set FLOWDSL_TEST_POSTGRES) to run the store tests on it"; fi; }

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out docs/benchmark-report.md
	$(BIN)/python benchmarks/bench_codec.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick
	$(BIN)/python benchmarks/bench_codec.py --quick

clean:
	rm -rf $(VENV) $(LATEST) site .pytest_cache .mypy_cache .ruff_cache .coverage
