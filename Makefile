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
	$(BIN)/ruff check airflow_provider_octopods tests example_dags scripts docs benchmarks
	$(BIN)/ruff format --check airflow_provider_octopods tests example_dags scripts docs benchmarks

typecheck: venv
	$(BIN)/mypy

## The end-to-end suite (tests/e2e/README.md): a real Airflow 3 deployment on PostgreSQL (API
## server, scheduler, DAG processor, triggerer) and the connection form in headless Chromium.
## Installs Debian's postgresql and chromium (needs root or sudo) and the `e2e` extra first.
E2E_STAMP := $(VENV)/.installed-e2e
E2E_PYTEST_ARGS ?= -q -ra --durations=5

.PHONY: e2e
e2e: $(E2E_STAMP)
	bash scripts/e2e-setup.sh
	$(BIN)/python -m pytest tests/e2e $(E2E_PYTEST_ARGS)

$(E2E_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,e2e]'
	touch $@

## The documentation, into docs/_build/html; any Sphinx warning fails the build.
docs: venv
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

## The release artefacts: an sdist and a wheel (built from the sdist) in dist/, checked by twine.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) .venv-airflow-* build dist *.egg-info

## The version matrix: the unit and dag.test() suites (not tests/e2e, not benchmarks) on every
## supported Airflow minor (the lowest, 2.11, and the newest patch of each 3.x minor since 3.1), each in
## its own virtualenv (.venv-airflow-<version>) pinned by constraints/airflow-<version>.txt. Every leg
## runs even if one fails; the target fails if any did. One leg: make test-matrix MATRIX=3.1
MATRIX := 2.11 3.1 3.2 3.3
MATRIX_PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
MATRIX_PYTEST_ARGS ?= -q --ignore=tests/e2e --ignore=benchmarks

.PHONY: test-matrix
test-matrix: $(foreach v,$(MATRIX),.venv-airflow-$(v)/.installed)
	@failed=""; for v in $(MATRIX); do \
	  echo "== Airflow $$v leg: $$(.venv-airflow-$$v/bin/python -c 'from importlib.metadata import version as v; print("apache-airflow", v("apache-airflow"), "/ common-compat", v("apache-airflow-providers-common-compat"), "/ http", v("apache-airflow-providers-http"))')"; \
	  .venv-airflow-$$v/bin/python -m pytest $(MATRIX_PYTEST_ARGS) || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-matrix FAILED on Airflow:$$failed"; exit 1; fi; \
	echo "test-matrix passed on Airflow $(MATRIX)"

.venv-airflow-%/.installed: pyproject.toml constraints/airflow-%.txt
	@$(MATRIX_PYTHON) -c 'import sys; sys.exit(None if sys.version_info[:2] == (3, 11) else "make test-matrix needs Python 3.11, which the constraints files pin for: set MATRIX_PYTHON")'
	test -x .venv-airflow-$*/bin/python || $(MATRIX_PYTHON) -m venv .venv-airflow-$*
	.venv-airflow-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-airflow-$*/bin/python -m pip install --quiet -c constraints/airflow-$*.txt -e '.[dev]'
	touch $@

## The benchmarks (benchmarks/README.md; results in benchmarks/RESULTS.md): a few minutes of
## heavy load on both cores, so not part of `make test` (tests/test_benchmarks_smoke.py runs them
## at toy size). Run them on a quiet machine.
.PHONY: bench
bench: venv
	$(BIN)/python -m benchmarks.triggerer_scale
	$(BIN)/python -m benchmarks.batch_wait
	$(BIN)/python -m benchmarks.poll_schedule --verify
	$(BIN)/python -m benchmarks.parse_cost
	$(BIN)/python -m benchmarks.request_budget
	$(BIN)/python -m benchmarks.whatsapp_batch_wait
	$(BIN)/python -m benchmarks.bulk_send
	$(BIN)/python -m benchmarks.bulk_kill_retry
	$(BIN)/python -m benchmarks.wait_objects

## Rerun the fault-injection matrix and rewrite docs/reliability.md from it.
.PHONY: reliability-report
reliability-report: venv
	OCTOPODS_RELIABILITY_REPORT=1 $(BIN)/python -m pytest -q tests/reliability
