"""
DAG-parse cost: what importing the sensor adds to parsing a DAG file.

Each sample is a fresh Python process run with ``-X importtime`` that first imports a baseline
(``import airflow.sdk``, what every DAG file pays; or that plus the DAG processor's own modules,
what is already loaded when the DAG processor runs a DAG file), then the sensor:

- ``from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor``
- ``from airflow.providers.http.sensors.http import HttpSensor``

Reported, median over ``--runs`` samples (taken interleaved, so contention hits both alike): the
import time of the sensor's import statement (sum of ``-X importtime``'s top-level cumulative
times) and its wall time, the number of new modules, and whether an HTTP client or the hook was
imported (they must not be: heavy imports belong where they are used).

Run from the repository root::

    .venv/bin/python -m benchmarks.parse_cost
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from benchmarks._common import ROOT, Machine, ratio

TARGETS = {
    "octopods": "from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor",
    "http": "from airflow.providers.http.sensors.http import HttpSensor",
}
_SDK = "try:\n    import airflow.sdk\nexcept ImportError:  # Airflow 2\n    import airflow.models.dag"
BASELINES = {"sdk": _SDK, "dag-processor": _SDK + "\nimport airflow.dag_processing.processor"}
#: How the report names the baselines (on Airflow 2, ``airflow.models.dag`` stands for the SDK).
LABELS = {
    "sdk": "import airflow.sdk",
    "dag-processor": "import airflow.sdk, airflow.dag_processing.processor",
}
#: Modules a sensor's import must not pull in (DAG files are parsed every few seconds).
HEAVY = (
    "aiohttp",
    "requests",
    "airflow_provider_octopods.hooks.octopods",
    "airflow.providers.http.hooks.http",
    "phonenumbers",  # libphonenumber: imported at send time only
)
_START, _END = "--- octopods-bench: target ---", "--- octopods-bench: done ---"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")

_PROGRAM = """
import json, sys, time
{baseline}
before = set(sys.modules)
sys.stderr.write({start!r} + "\\n"); sys.stderr.flush()
started = time.perf_counter()
{target}
wall = time.perf_counter() - started
sys.stderr.write({end!r} + "\\n"); sys.stderr.flush()
new = set(sys.modules) - before
print(json.dumps({{"wall_ms": wall * 1000, "modules": len(new), "heavy": sorted(m for m in {heavy!r} if m in new)}}))
"""


def sample(baseline: str, target: str) -> dict[str, Any]:
    """
    Import ``baseline`` then ``target`` in a fresh process; return the target's cost.

    :param baseline: a key of :data:`BASELINES`.
    :param target: a key of :data:`TARGETS`.
    """
    program = _PROGRAM.format(
        baseline=BASELINES[baseline], target=TARGETS[target], start=_START, end=_END, heavy=HEAVY
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Importing {target} failed:\n{done.stderr[-3000:]}")
    inside, importtime_us = False, 0
    for line in done.stderr.splitlines():
        if line == _START:
            inside = True
        elif line == _END:
            break
        elif inside and (match := _LINE.match(line)) and not match.group(3):
            importtime_us += int(match.group(2))
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["importtime_ms"] = importtime_us / 1000
    return result


def measure(runs: int, baselines: list[str], targets: list[str]) -> dict[str, dict[str, Any]]:
    """Return, per ``baseline/target``, the medians (and spreads) over ``runs`` samples."""
    samples: dict[str, list[dict[str, Any]]] = {}
    for _ in range(runs):
        for baseline in baselines:
            for target in targets:
                samples.setdefault(f"{baseline}/{target}", []).append(sample(baseline, target))
    out: dict[str, dict[str, Any]] = {}
    for key, values in samples.items():
        importtimes = [v["importtime_ms"] for v in values]
        walls = [v["wall_ms"] for v in values]
        out[key] = {
            "importtime_ms": statistics.median(importtimes),
            "importtime_min_ms": min(importtimes),
            "importtime_max_ms": max(importtimes),
            "wall_ms": statistics.median(walls),
            "modules": statistics.median(v["modules"] for v in values),
            "heavy": sorted({m for v in values for m in v["heavy"]}),
            "samples": len(values),
        }
    return out


def table(results: dict[str, dict[str, Any]], baselines: list[str], targets: list[str]) -> str:
    """Return the Markdown table."""
    lines = [
        "| after | sensor | import time, median (min-max) | wall, median | new modules | heavy imports |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for baseline in baselines:
        for target in targets:
            r = results[f"{baseline}/{target}"]
            lines.append(
                f"| `{LABELS[baseline]}` | {target} | "
                f"{r['importtime_ms']:.1f} ms ({r['importtime_min_ms']:.1f}-{r['importtime_max_ms']:.1f}) | "
                f"{r['wall_ms']:.1f} ms | {r['modules']:.0f} | {', '.join(r['heavy']) or 'none'} |"
            )
    return "\n".join(lines)


def summary(results: dict[str, dict[str, Any]], runs: int) -> str:
    """Return the one-line summary (after ``import airflow.sdk``)."""
    octo, http = results["sdk/octopods"], results.get("sdk/http")
    if http is None:
        return (
            f"DAG-parse import cost after airflow.sdk (median of {runs}): octopods sensor "
            f"{octo['importtime_ms']:.0f} ms, {octo['modules']:.0f} new modules, "
            f"heavy imports: {', '.join(octo['heavy']) or 'none'}"
        )
    return (
        f"DAG-parse import cost after airflow.sdk (median of {runs}): octopods sensor "
        f"{octo['importtime_ms']:.0f} ms vs HttpSensor {http['importtime_ms']:.0f} ms "
        f"({ratio(http['importtime_ms'], octo['importtime_ms']):.1f}x cheaper), "
        f"{octo['modules']:.0f} vs {http['modules']:.0f} new modules, "
        f"heavy imports: {', '.join(octo['heavy']) or 'none'}"
    )


def main(argv: list[str] | None = None) -> int:
    """
    Measure and print the table, the target check and the summary line.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parse_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="samples per sensor and baseline")
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=list(BASELINES),
        default=list(BASELINES),
        help="what is imported first",
    )
    parser.add_argument(
        "--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS), help="sensors to import"
    )
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    machine = Machine.here()
    print(machine.describe())
    print(f"command: python -m benchmarks.parse_cost {' '.join(argv if argv is not None else sys.argv[1:])}")
    baselines = list(dict.fromkeys(["sdk", *args.baselines]))
    targets = list(dict.fromkeys(["octopods", *args.targets]))
    results = measure(args.runs, baselines, targets)
    print()
    print(table(results, baselines, targets))
    octo, http = results["sdk/octopods"], results.get("sdk/http")
    if http is not None:
        ok = octo["importtime_ms"] <= http["importtime_ms"] and not octo["heavy"]
        print(f"\nTarget (no more than the http provider's, no heavy import): {'PASS' if ok else 'MISS'}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": asdict(machine), "args": vars(args), "results": results}, out, indent=2)
    print()
    print(summary(results, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
