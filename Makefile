# Two commands on a fresh machine: `make serve` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := schemas sync server tests $(wildcard benchmarks)

.PHONY: serve test lint bench demo clean

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

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
