# Two commands for a newcomer: `make run` and `make test`. Both go through `make setup`,
# which is idempotent: a second run reuses the venv, the cached llama-server and the models.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup run test test-unit test-integration lint bench clean-venv build-deps browser-deps

setup: $(STAMP) build-deps
	$(BIN)/inference-service runtime install
	$(BIN)/inference-service models pull

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	rm -f $(VENV)/.installed-* && touch $@

# llama-server is built from source when none is installed: make sure a compiler and cmake exist.
build-deps:
	@command -v cmake >/dev/null && command -v c++ >/dev/null || { \
	  echo "installing build tools (cmake, g++, ninja) with apt-get"; \
	  apt-get update -qq && apt-get install -y -qq cmake g++ ninja-build >/dev/null; }

# The dashboard's browser tests drive Debian's chromium through Playwright (whose own browser download
# is unreachable here); CHROMIUM=/path/to/chromium points them at another one.
browser-deps:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium with apt-get (for the dashboard's browser tests)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

run: setup
	$(BIN)/inference-service serve

# The maintainer's gates, each a red CI when it fails: lint, format, types, the layer contracts.
lint: $(STAMP)
	$(BIN)/ruff check inference_service tests bench
	$(BIN)/ruff format --check inference_service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup browser-deps lint
	$(BIN)/python -m tests.stack

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

bench: setup
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
