# The whole set-up on a fresh machine is `make demo` and `make test`; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.txt
STAMP := $(VENV)/.installed

.PHONY: venv demo test unit lint typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

## Run the example DAG end to end against the bundled Octopods simulator.
demo: venv
	$(BIN)/python scripts/demo.py

## Every test, then the linters and the type checker.
test: venv
	$(BIN)/python -m pytest -q
	$(MAKE) lint typecheck

lint: venv
	$(BIN)/ruff check airflow_provider_octopods tests example_dags scripts
	$(BIN)/ruff format --check airflow_provider_octopods tests example_dags scripts

typecheck: venv
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info
