# Two commands on a fresh machine: `make serve` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := schemas sync server tests $(wildcard benchmarks)

.PHONY: serve test lint js-test bench demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gridsync needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
		$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# On an empty database, serve loads the demo district first (docs/domain.md).
serve: $(STAMP)
	$(BIN)/gridsync demo --if-empty
	$(BIN)/gridsync serve

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: lint js-test
	$(BIN)/pytest -q

# The JS SDK's tests (tsc, node's test runner); its npm test installs its dev packages first.
js-test:
	npm --prefix clients/js test

# The benchmark's own extras (matplotlib, profilers) go into the same .venv; its npm peer is
# installed by the benchmark itself into benchmarks/peer/. make test needs neither.
$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
