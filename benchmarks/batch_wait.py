"""
Batch wait: ONE Octopods trigger on N message ids versus N single-message triggers.

Both sides wait on N messages of the simulator (a separate process) delivered after a random
2-20 s, polling every ``--poll-interval`` seconds (fixed schedule on both sides); the single
triggers start spread over the first interval. Each side runs in a fresh Python process
(:mod:`benchmarks._phase`). Reported: requests, TCP connections, client CPU (total, per message
and per request), memory growth (total and per message), event-loop lag, the time from the last
delivery to the last event, and the size of the trigger event (it is stored in the metadata DB).

Run from the repository root::

    .venv/bin/python -m benchmarks.batch_wait                     # N = 1000
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from benchmarks._common import Machine, SimulatorProcess, add_workload_arguments, ratio, run_phase

SIDES = {"octopods-batch": "1 trigger, N ids", "octopods": "N triggers, 1 id each"}


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """Return the reported figures of one side's phase result."""
    n, requests = max(result["n"], 1), max(result["polls"], 1)
    return {
        "triggers": result["waits"],
        "requests": result["polls"],
        "requests_per_message": result["polls"] / n,
        "connections": result["connections"],
        "cpu_s": result["client_cpu_s"],
        "net_cpu_s": result["client_cpu_net_s"],
        "cpu_per_message_us": result["client_cpu_s"] / n * 1e6,
        "cpu_per_request_us": result["client_cpu_s"] / requests * 1e6,
        "rss_growth_kb": result["rss_growth_bytes"] / 1024,
        "kb_per_message": result["rss_per_message_bytes"] / 1024,
        "lag_p99_ms": result["lag_p99_ms"],
        "lag_max_ms": result["lag_max_ms"],
        "last_event_after_last_delivery_s": result["last_event_after_last_delivery_s"],
        "event_kb_max": result["event_bytes_max"] / 1024,
        "failed_waits": result["failed_waits"],
    }


def table(n: int, figs: dict[str, dict[str, Any]], workload: str) -> str:
    """
    Return the Markdown table of the run.

    :param n: the number of messages.
    :param figs: :func:`figures` of each side.
    :param workload: how the waits were set up, for the heading.
    """
    sides = list(figs)
    rows: list[tuple[str, str, str]] = [
        ("triggers", "triggers", "{:.0f}"),
        ("requests", "requests", "{:.0f}"),
        ("requests per message", "requests_per_message", "{:.2f}"),
        ("TCP connections opened", "connections", "{:.0f}"),
        ("client CPU total (s)", "cpu_s", "{:.2f}"),
        ("  net of the harness (s)", "net_cpu_s", "{:.2f}"),
        ("client CPU per message (µs)", "cpu_per_message_us", "{:.0f}"),
        ("client CPU per request (µs)", "cpu_per_request_us", "{:.0f}"),
        ("peak RSS growth (KB)", "rss_growth_kb", "{:.0f}"),
        ("peak RSS growth per message (KB)", "kb_per_message", "{:.2f}"),
        ("event-loop lag p99 (ms)", "lag_p99_ms", "{:.1f}"),
        ("event-loop lag max (ms)", "lag_max_ms", "{:.1f}"),
        ("last delivery to last event (s)", "last_event_after_last_delivery_s", "{:.2f}"),
        ("largest trigger event (KB of JSON)", "event_kb_max", "{:.1f}"),
        ("failed waits", "failed_waits", "{:.0f}"),
    ]
    lines = [
        f"N = {n} messages ({workload})",
        "",
        "| | " + " | ".join(SIDES.get(s, s) for s in sides) + " |",
        "| --- | " + " | ".join("---:" for _ in sides) + " |",
    ]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(figs[s][key]) for s in sides) + " |")
    return "\n".join(lines)


def summary(n: int, batch: dict[str, Any], single: dict[str, Any]) -> str:
    """Return the one-line ratio summary."""
    return (
        f"1 trigger on {n} ids vs {n} single triggers: "
        f"{ratio(single['requests'], batch['requests']):.2f}x fewer requests, "
        f"{ratio(single['cpu_s'], batch['cpu_s']):.1f}x less CPU, "
        f"{ratio(single['rss_growth_kb'], batch['rss_growth_kb']):.1f}x less memory "
        f"({batch['rss_growth_kb']:.0f} KB vs {single['rss_growth_kb']:.0f} KB), "
        f"lag p99 {batch['lag_p99_ms']:.0f} ms vs {single['lag_p99_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print the table and the summary line.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_wait", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="number of messages")
    add_workload_arguments(parser)
    args = parser.parse_args(argv)

    machine = Machine.here()
    print(machine.describe())
    print(f"command: python -m benchmarks.batch_wait {' '.join(argv if argv is not None else sys.argv[1:])}")
    workload = (
        f"poll every {args.poll_interval:g} s on both sides, delivery after "
        f"U({args.min_delivery:g}, {args.max_delivery:g}) s"
    )
    spec = {
        "n": args.n,
        "poll_interval": args.poll_interval,
        "seed": args.seed,
        "min_delivery": args.min_delivery,
        "max_delivery": args.max_delivery,
        "spread": args.poll_interval,
        "timeout": args.timeout,
        "calibrate": args.calibrate,
    }
    raw: dict[str, Any] = {}
    with SimulatorProcess() as sim:
        for side in SIDES:
            raw[side] = run_phase(dict(spec, side=side), sim.url, in_process=args.in_process)
    figs = {side: figures(raw[side]) for side in SIDES}
    print()
    print(table(args.n, figs, workload))
    print(f"\n(load average at the end: {Machine.here().load})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"machine": asdict(machine), "args": vars(args), "raw": raw, "figures": figs}, out, indent=2
            )
    print()
    print(summary(args.n, figs["octopods-batch"], figs["octopods"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
