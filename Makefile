# Two commands on a fresh machine: `make serve` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := schemas sync server tests $(wildcard benchmarks)

.PHONY: serve test test-deps lint js-test bench demo clean

# The browser tests (tests/browser/) drive Debian's Chromium with a CJK font for the Chinese
# labels; never `playwright install` (browsers are not downloaded here).
CHROMIUM := /usr/bin/chromium
BROWSER_PACKAGES := chromium fonts-wqy-microhei
# Clients with tests of their own (clients/<language>/): a Makefile's `test`, else npm's.
CLIENTS := $(sort $(patsubst %/,%,$(dir $(wildcard clients/*/Makefile clients/*/package.json))))

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

# What the tests need beyond .venv: the browser packages through apt-get (as root; otherwise a
# message, and the browser tests fail rather than skip) and each npm client's packages.
# PostgreSQL is found by tests/conftest.py on its default URL.
test-deps:
	@if [ -x $(CHROMIUM) ] && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make test: installing $(BROWSER_PACKAGES) for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; \
	else \
		echo "make test: the browser tests need Debian's Chromium and a CJK font, and will fail" \
			"without them: run make test as root, or 'sudo apt-get install -y $(BROWSER_PACKAGES)'" >&2; \
	fi
	@for client in $(CLIENTS); do \
		if [ ! -f $$client/Makefile ] && [ ! -d $$client/node_modules ]; then \
			(cd $$client && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; \
				else npm install --no-audit --no-fund; fi) || exit 1; \
		fi; \
	done

test: lint test-deps js-test
	$(BIN)/pytest -q

# Every client's own tests: the JS SDK's (clients/js: tsc, node's test runner) and any other
# client's under clients/<language>/, by its Makefile's `test`, else by `npm test`.
js-test:
	@for client in $(CLIENTS); do \
		if [ -f $$client/Makefile ]; then $(MAKE) -C $$client test || exit 1; \
		else npm --prefix $$client test || exit 1; fi; \
	done

# The benchmark's own extras (matplotlib, profilers) go into the same .venv; its npm peer is
# installed by the benchmark itself into benchmarks/peer/. make test needs neither.
$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
