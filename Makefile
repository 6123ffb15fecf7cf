# The two commands: `make demo` runs the platform, `make test` runs every check.
SHELL := /bin/bash
BIN := .venv/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup setup-services demo test lint typecheck pytest docs clean lock check-newest

setup:  ## install system packages, TimescaleDB, .venv; start and migrate local services
	@bash scripts/install-system.sh
	@$(BIN)/villagetwin setup

# The demo sets up the database itself and takes the MQTT port only while it runs: a broker it
# stopped for it is started again at Ctrl-C (`make setup` would leave the project's in its place).
demo:  ## services + sample village + simulated devices + ingester + dashboard
	@bash scripts/install-system.sh
	@$(BIN)/villagetwin demo

test: setup-services lint typecheck pytest  ## everything CI runs

# The tests start private brokers, so they need no project broker on 1883.
setup-services:
	@bash scripts/install-system.sh
	@$(BIN)/villagetwin setup --no-broker

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

lock:  ## after changing dependencies in pyproject.toml: re-resolve uv.lock
	uv lock

# The newest versions pyproject.toml allows, in their own venv (uv.lock untouched), through
# lint, types and the tests (PYTEST_ARGS to pick some): run it weekly, or before `uv lock
# --upgrade`, to learn early what a new release breaks.
check-newest:
	uv venv -q --allow-existing .venv-newest
	uv pip install -q --python .venv-newest/bin/python --upgrade --resolution highest -e '.[dev]'
	uv lock --upgrade --dry-run  # what would change in uv.lock
	.venv-newest/bin/ruff check . && .venv-newest/bin/ruff format --check .
	.venv-newest/bin/mypy
	.venv-newest/bin/pytest $(PYTEST_ARGS)

clean:
	-$(BIN)/villagetwin broker stop
	rm -rf .state test-artifacts .pytest_cache .mypy_cache .ruff_cache .venv-newest
