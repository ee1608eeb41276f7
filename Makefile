# `make run` starts a server, `make test` runs the checks; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test lint format bench clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project metadata changes; the install is editable, so
# source edits need nothing.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	-$(BIN)/python -m pip install --quiet -e '.[fast]'
	-$(BIN)/python -m pip install --quiet -e '.[cluster]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/python -m chatserver --host 127.0.0.1 --port 5500 $(ARGS)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(ARGS)
	# The server suite again on the durable SQLite history, with the client
	# tests that resume across restarts and servers (the rest test drawing).
	CHATSERVER_TEST_HISTORY=sqlite $(BIN)/python -m pytest -q tests/server tests/test_smoke.py \
		tests/client/test_reconnect.py tests/client/test_servers.py tests/client/test_tui_app.py $(ARGS)
	# And the server suite on a one-process cluster: the same contract through
	# Redis (skipped, in one line, without redis-server; CI requires it).
	CHATSERVER_TEST_CLUSTER=1 $(BIN)/python -m pytest -q tests/server tests/test_smoke.py $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Optional coverage-guided fuzzing (atheris builds only on some platforms).
FUZZ_SECONDS ?= 120
fuzz: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python tests/security/fuzz_atheris.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
