"""
Transport cost: CPU per status GET of the async hook's two transports, on one kept-alive connection.

The same ``Send`` (the status request the request core builds) goes, one at a time, through:

- ``aiohttp``: :func:`airflow_provider_octopods._transport.send_with_aiohttp` on a shared
  ``ClientSession``, the transport of sends and proxied requests, and of every async request
  before the keep-alive client (the named baseline);
- ``keepalive``: :class:`airflow_provider_octopods._keepalive.KeepAlivePool`, the transport of the
  async polls.

Each round runs every transport once, in alternating order, on a fresh event loop with a warm
connection; the simulator runs in its own process, so only the client's CPU is counted. Reported:
the median CPU per GET of each transport over the rounds, and the ratio against ``aiohttp``.

Run from the repository root::

    .venv/bin/python -m benchmarks.transport_cost                 # 3,000 GETs, 5 rounds
    .venv/bin/python -m benchmarks.transport_cost --requests 500 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks._common import BENCH_KEY, Machine, SimulatorProcess

TRANSPORTS = {"aiohttp": "send_with_aiohttp (baseline)", "keepalive": "KeepAlivePool.request"}


def _sends(url: str, ids: list[int]) -> list[Any]:
    """The status requests of ``ids``, as the request core builds them (key, headers, limits)."""
    from airflow_provider_octopods._core import Send
    from airflow_provider_octopods._http import request_headers

    headers = request_headers(BENCH_KEY)
    return [Send("GET", f"{url}/api/v1/sms/messages/{i}", headers, None, 10.0, 30.0, None) for i in ids]


async def _measure(transport: str, sends: list[Any]) -> float:
    """Return the CPU seconds of ``sends`` made one after the other through ``transport``."""
    from airflow_provider_octopods._core import Answer
    from airflow_provider_octopods._transport import Clients, send_with_aiohttp

    clients = Clients()

    async def one(send: Any) -> Answer:
        if transport == "aiohttp":
            outcome = await send_with_aiohttp(clients.session(), send)
        else:
            outcome = await clients.keepalive.request(send)
        if not isinstance(outcome, Answer) or outcome.status != 200:
            raise RuntimeError(f"{transport}: {outcome!r}")
        json.loads(outcome.body)
        return outcome

    try:
        await one(sends[0])  # a warm connection, and every lazy import done
        started = time.process_time()
        for send in sends:
            await one(send)
        return time.process_time() - started
    finally:
        await clients.close()


def main(argv: list[str] | None = None) -> int:
    """
    Run the rounds and print the table and the summary line.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transport_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="sequential GETs per transport and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is reported)")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)

    machine = Machine.here()
    print(machine.describe())
    print(
        f"command: python -m benchmarks.transport_cost {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    per_get: dict[str, list[float]] = {name: [] for name in TRANSPORTS}
    with SimulatorProcess() as sim:
        ids, _ = sim.admin.create_messages([0.0] * args.requests)
        sends = _sends(sim.url, ids)
        for round_ in range(args.rounds):
            order = list(TRANSPORTS) if round_ % 2 == 0 else list(reversed(TRANSPORTS))
            for name in order:
                per_get[name].append(asyncio.run(_measure(name, sends)) / len(sends) * 1e6)
    median = {name: statistics.median(values) for name, values in per_get.items()}
    print()
    print(f"{args.requests} sequential status GETs per transport and round, {args.rounds} rounds")
    print()
    print("| transport | CPU per GET, median (µs) | all rounds (µs) | against aiohttp |")
    print("| --- | ---: | --- | ---: |")
    for name, label in TRANSPORTS.items():
        rounds = ", ".join(f"{v:.0f}" for v in per_get[name])
        print(f"| {label} | {median[name]:.0f} | {rounds} | {median[name] / median['aiohttp']:.2f}x |")
    print(f"\n(load average at the end: {Machine.here().load})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": asdict(machine), "args": vars(args), "per_get_us": per_get}, out, indent=2)
    print()
    print(
        f"transport cost: keep-alive client {median['keepalive']:.0f} µs per GET vs aiohttp "
        f"{median['aiohttp']:.0f} µs ({median['aiohttp'] / median['keepalive']:.1f}x less CPU)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
