# Understudy. `make help` lists the targets; CI runs `make test` from .ci/run.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# Test processes (pytest-xdist): each starts its own Postgres, Redis, sandbox and browsers.
TEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install browsers run test test-fast lint bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/understudy: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e '.[dev]'
	touch $@

install: $(BIN)/understudy ## create .venv and install the project with its dev tools

browsers: ## install Debian's chromium and chromium-driver if missing
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver

run: install browsers ## start the whole stack in the foreground (Ctrl-C stops it)
	$(BIN)/understudy run

lint: install ## ruff, mypy, and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared worker api dispatcher scheduler cli clients/python/understudy_client
	$(BIN)/lint-imports

test: lint browsers ## lint, then the test suite against real Postgres, Redis and Chromium
	$(BIN)/pytest -n $(TEST_WORKERS)

test-fast: install browsers ## the quick tier for iterating: no e2e, faults or fuzz tests
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not e2e and not faults and not fuzz"

screenshots: install browsers ## retake the docs' screenshots (docs/api-docs.png, docs/console/)
	UNDERSTUDY_DOC_SHOTS=1 $(BIN)/pytest -n $(TEST_WORKERS) tests/api/test_docs_browser.py tests/e2e/test_console.py

bench: install browsers ## run the benchmarks (not part of the tests)
	$(BIN)/python bench/api.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/task_types.py
	$(BIN)/python bench/versions.py
	$(BIN)/python bench/locators.py
	$(BIN)/python bench/agent.py

clean: ## remove the virtualenv and the embedded servers' data
	rm -rf $(VENV) .run
