# One command each: `make run` sets up .venv and runs the default simulation; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint setup flwr-run deploy-local bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/fl-sim run $(ARGS)

flwr-run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/fl-sim flwr-run --run-config "$(RUN_CONFIG)" -- --federation-config "num-supernodes=10"

deploy-local: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/local_deployment.sh $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/default_run.py

clean:
	rm -rf $(VENV) results
