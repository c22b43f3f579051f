"""
Triggerer scale: N Octopods triggers versus N ``HttpSensorTrigger`` in one event loop.

For each N, each side waits on N messages of the simulator (a separate process) that are
delivered after a random 2-20 s, polling every ``--poll-interval`` seconds (the same on both
sides), with the trigger starts spread over the first interval. Each side runs in a fresh
Python process (:mod:`benchmarks._phase`). Reported per side: polls, TCP connections opened,
client CPU per poll, simulator CPU per poll, peak resident memory per waiting trigger, event-loop
lag (max, p99) and the time from delivery to trigger event.

A lifecycle probe (on by default) also runs N waits on already-delivered messages (one poll
each), to split the CPU into a fixed cost per trigger (start, read the connection, one poll,
finish) and the marginal cost of one more poll.

Run from the repository root::

    .venv/bin/python -m benchmarks.triggerer_scale                # N = 100, 1000, 5000
    .venv/bin/python -m benchmarks.triggerer_scale --n 1000 --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks._common import Machine, SimulatorProcess, add_workload_arguments, ratio, run_phase

SIDES = {
    "octopods": "OctopodsSmsDeliveryTrigger",
    "http": "HttpSensorTrigger (+ status check)",
    "floor": "floor: bare aiohttp GET",
}

#: The issue's targets, checked (and printed) at the end of a run.
TARGET_CONNECTIONS_RATIO = 5.0
TARGET_CPU_RATIO = 2.0
TARGET_LAG_P99_MS = 50.0
TARGET_KB_PER_TRIGGER = 50.0
TARGET_CPU_SHARE_N1000 = 0.25


def derive(main: dict[str, Any], probe: dict[str, Any] | None) -> dict[str, Any]:
    """
    Return the per-poll and per-trigger figures of one side.

    :param main: the phase result of the real wait.
    :param probe: the phase result of the one-poll waits, if run.
    """
    polls = max(main["polls"], 1)
    out = {
        "polls": main["polls"],
        "polls_per_trigger": main["polls"] / main["n"],
        "connections": main["connections"],
        "connections_per_poll": main["connections"] / polls,
        "cpu_s": main["client_cpu_s"],
        "cpu_per_poll_us": main["client_cpu_s"] / polls * 1e6,
        "server_cpu_per_poll_us": main["server_cpu_s"] / polls * 1e6,
        "kb_per_trigger": main["rss_per_wait_bytes"] / 1024,
        "lag_p99_ms": main["lag_p99_ms"],
        "lag_max_ms": main["lag_max_ms"],
        "gc_total_ms": main.get("gc_total_ms", 0.0),
        "gc_max_ms": main.get("gc_max_ms", 0.0),
        "gc_full": (main.get("gc_collections") or [0, 0, 0])[2],
        "latency_p50_s": main["latency_p50_s"],
        "latency_p95_s": main["latency_p95_s"],
        "latency_max_s": main["latency_max_s"],
        "failed_waits": main["failed_waits"],
        "wall_s": main["wall_s"],
    }
    out["harness_cpu_ms_per_s"] = main["idle_cpu_per_s"] * 1000
    out["net_cpu_per_poll_us"] = main["client_cpu_net_s"] / polls * 1e6
    if probe is not None:
        lifecycle = probe["client_cpu_net_s"] / max(probe["n"], 1)
        extra_polls = main["polls"] - main["n"]
        out["lifecycle_cpu_us"] = lifecycle * 1e6
        out["marginal_cpu_per_poll_us"] = (
            (main["client_cpu_net_s"] - lifecycle * main["n"]) / extra_polls * 1e6 if extra_polls > 0 else 0.0
        )
    return out


def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def table(n: int, figures: dict[str, dict[str, Any]], workload: str) -> str:
    """
    Return the Markdown table of one N.

    :param n: the number of triggers per side.
    :param figures: :func:`derive` of each side.
    :param workload: how the waits were set up, for the heading.
    """
    sides = list(figures)
    lines = [
        f"N = {n} ({workload})",
        "",
        _row("", [SIDES.get(s, s) for s in sides]),
        _row("---", ["---:" for _ in sides]),
    ]
    spec: list[tuple[str, str, str]] = [
        ("polls (requests)", "polls", "{:.0f}"),
        ("polls per trigger", "polls_per_trigger", "{:.1f}"),
        ("TCP connections opened", "connections", "{:.0f}"),
        ("connections per poll", "connections_per_poll", "{:.4f}"),
        ("client CPU per poll (µs)", "cpu_per_poll_us", "{:.0f}"),
        ("  harness alone (ticker, idle loop), CPU ms/s", "harness_cpu_ms_per_s", "{:.1f}"),
        ("  net of the harness, CPU per poll (µs)", "net_cpu_per_poll_us", "{:.0f}"),
        ("  net: fixed CPU per trigger (µs)", "lifecycle_cpu_us", "{:.0f}"),
        ("  net: marginal CPU per poll (µs)", "marginal_cpu_per_poll_us", "{:.0f}"),
        ("simulator CPU per poll (µs)", "server_cpu_per_poll_us", "{:.0f}"),
        ("peak RSS per waiting trigger (KB)", "kb_per_trigger", "{:.1f}"),
        ("event-loop lag p99 (ms)", "lag_p99_ms", "{:.1f}"),
        ("event-loop lag max (ms)", "lag_max_ms", "{:.1f}"),
        ("garbage collection: total (ms)", "gc_total_ms", "{:.0f}"),
        ("  longest pause (ms)", "gc_max_ms", "{:.1f}"),
        ("  full (generation 2) collections", "gc_full", "{:.0f}"),
        ("delivery to event p50 (s)", "latency_p50_s", "{:.2f}"),
        ("delivery to event p95 (s)", "latency_p95_s", "{:.2f}"),
        ("delivery to event max (s)", "latency_max_s", "{:.2f}"),
        ("failed waits", "failed_waits", "{:.0f}"),
    ]
    for label, key, fmt in spec:
        if all(key in figures[s] for s in sides):
            lines.append(_row(label, [fmt.format(figures[s][key]) for s in sides]))
    return "\n".join(lines)


def summary(n: int, octo: dict[str, Any], http: dict[str, Any], floor: dict[str, Any] | None = None) -> str:
    """Return the one-line ratio summary of one N (with the floor side's figures, if it ran)."""
    conn = ratio(http["connections_per_poll"], octo["connections_per_poll"])
    cpu = ratio(http["cpu_per_poll_us"], octo["cpu_per_poll_us"])
    marginal = f" ({ratio(http['net_cpu_per_poll_us'], octo['net_cpu_per_poll_us']):.1f}x net of the harness"
    if "marginal_cpu_per_poll_us" in octo and octo["marginal_cpu_per_poll_us"] > 0:
        marginal += (
            f", {ratio(http['marginal_cpu_per_poll_us'], octo['marginal_cpu_per_poll_us']):.1f}x marginal"
        )
    marginal += ")"
    line = (
        f"octopods vs HttpSensorTrigger @N={n}: {conn:.1f}x fewer connections, {cpu:.1f}x less CPU/poll"
        f"{marginal}, lag p99 {octo['lag_p99_ms']:.0f} ms (vs {http['lag_p99_ms']:.0f} ms), "
        f"{octo['kb_per_trigger']:.0f} KB/trigger (vs {http['kb_per_trigger']:.0f} KB)"
    )
    if floor is not None:
        line += (
            f"; CPU per poll net of the harness: octopods {octo['net_cpu_per_poll_us']:.0f} µs = floor "
            f"{floor['net_cpu_per_poll_us']:.0f} + provider {octo['net_cpu_per_poll_us'] - floor['net_cpu_per_poll_us']:.0f}; "
            f"floor / http = {floor['net_cpu_per_poll_us'] / max(http['net_cpu_per_poll_us'], 1e-9):.2f}"
        )
    return line


def check_targets(n: int, octo: dict[str, Any], http: dict[str, Any]) -> list[str]:
    """Return one PASS/MISS line per target of the issue for this N."""
    checks = [
        (
            f"connections >= {TARGET_CONNECTIONS_RATIO:g}x fewer",
            ratio(http["connections_per_poll"], octo["connections_per_poll"]) >= TARGET_CONNECTIONS_RATIO,
        ),
        (
            f"CPU per poll >= {TARGET_CPU_RATIO:g}x less",
            ratio(http["cpu_per_poll_us"], octo["cpu_per_poll_us"]) >= TARGET_CPU_RATIO,
        ),
        (
            f"memory < {TARGET_KB_PER_TRIGGER:g} KB per waiting trigger",
            octo["kb_per_trigger"] < TARGET_KB_PER_TRIGGER,
        ),
    ]
    if n == 1000:
        checks.append(
            (f"lag p99 < {TARGET_LAG_P99_MS:g} ms at N=1000", octo["lag_p99_ms"] < TARGET_LAG_P99_MS)
        )
        checks.append(
            (
                f"CPU per poll <= {TARGET_CPU_SHARE_N1000:g}x HttpSensorTrigger's at N=1000 (issue 14)",
                octo["cpu_per_poll_us"] <= TARGET_CPU_SHARE_N1000 * http["cpu_per_poll_us"],
            )
        )
    return [f"  {'PASS' if ok else 'MISS'} @N={n}: {what}" for what, ok in checks]


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print the tables, the targets and one summary line per N.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.triggerer_scale", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 5000], help="numbers of triggers")
    parser.add_argument("--no-probe", action="store_true", help="skip the one-poll lifecycle probe")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="profile each side's waits with cProfile into DIR/<side>-<n>.prof (figures then not comparable)",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=list(SIDES),
        default=list(SIDES),
        help="what to run (octopods and http are needed for the ratios; floor is the bare-GET baseline)",
    )
    add_workload_arguments(parser)
    args = parser.parse_args(argv)

    machine = Machine.here()
    print(machine.describe())
    print(
        f"command: python -m benchmarks.triggerer_scale {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    results: dict[str, Any] = {"machine": asdict(machine), "args": vars(args), "runs": {}}
    summaries: list[str] = []
    targets: list[str] = []
    started = time.monotonic()
    workload = (
        f"poll every {args.poll_interval:g} s on both sides, delivery after "
        f"U({args.min_delivery:g}, {args.max_delivery:g}) s, starts spread over {args.poll_interval:g} s"
    )
    with SimulatorProcess() as sim:
        for n in args.n:
            base = {
                "n": n,
                "poll_interval": args.poll_interval,
                "seed": args.seed,
                "spread": args.poll_interval,
                "timeout": args.timeout,
                "calibrate": args.calibrate,
                "profile": args.profile,
            }
            wait = dict(base, min_delivery=args.min_delivery, max_delivery=args.max_delivery)
            probe = dict(base, min_delivery=0.0, max_delivery=0.0)
            raw: dict[str, Any] = {}
            figures: dict[str, dict[str, Any]] = {}
            for side in args.sides:
                raw[side] = run_phase(dict(wait, side=side), sim.url, in_process=args.in_process)
                if not args.no_probe:
                    raw[f"{side}-probe"] = run_phase(
                        dict(probe, side=side), sim.url, in_process=args.in_process
                    )
                figures[side] = derive(raw[side], raw.get(f"{side}-probe"))
            results["runs"][str(n)] = {"raw": raw, "figures": figures}
            print()
            print(table(n, figures, workload))
            print(f"\n(load average after N = {n}: {Machine.here().load})")
            if "octopods" not in figures or "http" not in figures:
                continue  # the ratios need both sides
            line = summary(n, figures["octopods"], figures["http"], figures.get("floor"))
            summaries.append(line)
            targets += check_targets(n, figures["octopods"], figures["http"])
            print()
            print(line, flush=True)
    print(f"\nTargets (issues 6 and 14), run took {time.monotonic() - started:.0f} s:")
    print("\n".join(targets))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    print()
    print("\n".join(summaries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
