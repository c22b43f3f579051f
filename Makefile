# The whole set-up on a fresh machine is `make demo` and `make test`; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.txt
STAMP := $(VENV)/.installed

.PHONY: venv demo test unit lint typecheck docs dist clean

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
	$(BIN)/ruff check airflow_provider_octopods tests example_dags scripts docs
	$(BIN)/ruff format --check airflow_provider_octopods tests example_dags scripts docs

typecheck: venv
	$(BIN)/mypy

## The documentation, into docs/_build/html; any Sphinx warning fails the build.
docs: venv
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

## The release artefacts: an sdist and a wheel (built from the sdist) in dist/, checked by twine.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info
