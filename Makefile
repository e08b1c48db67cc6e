# flowdsl developer commands. Every install step lives here, so a fresh clone
# needs nothing but Python >= 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck system-deps pytest demo bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,cli,process,dask]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check flowdsl tests examples benchmarks
	$(BIN)/ruff format --check flowdsl tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# coverage starts before pytest, so the flowdsl pytest plugin (imported at
# pytest start-up through its entry point) does not hide import-time lines.
pytest: $(STAMP)
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report

# The quick benchmark runs in CI: it checks every implementation's results and
# reports timings; it never fails the build on a timing.
test: lint typecheck system-deps pytest bench-quick

# Graphviz renders the DOT export in the tests; installed here when missing and
# we may (CI runs as root), so that test runs rather than skips.
system-deps:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	  else echo "note: Graphviz 'dot' is missing; install graphviz to run the DOT render test"; fi; }

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out docs/benchmark-report.md

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
