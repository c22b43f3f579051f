"""
Benchmarks of airflow-provider-octopods (not tests: run them with ``make bench``).

Each module runs with one command from the repository root, e.g.
``.venv/bin/python -m benchmarks.triggerer_scale``; ``benchmarks/README.md`` lists them and
``benchmarks/RESULTS.md`` holds the numbers measured here.
"""
