"""
Wait objects: how many objects the garbage collector tracks per waiting Octopods trigger.

The triggerer's event-loop lag at thousands of waits follows its full garbage collections
(``benchmarks/triggerer_scale.py`` times them): each walks every tracked object, and objects
alive across a request are promoted to the oldest generation, whose growth starts the next full
collection. Unlike the lag, the count of objects a wait holds is exact and repeatable, so it is
what this benchmark reports, in two states:

- **queued**: each trigger's poll waits for the key's request budget (``max_requests_per_second``
  set far below the demand), the longest-lived state of a request;
- **sleeping**: each trigger has polled once and sleeps until its next poll (60 s away).

The baseline (the ``floor`` of ``triggerer_scale``): a bare ``aiohttp`` GET loop per wait,
sleeping in the same way. Objects are counted with ``gc.get_objects()`` after a full collection,
minus those before the waits started; the simulator runs in its own process.

Run from the repository root::

    .venv/bin/python -m benchmarks.wait_objects            # N = 1,000, about 20 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
from collections import Counter
from typing import Any

from benchmarks._common import (
    OCTOPODS_CONN_ID,
    Machine,
    SimulatorProcess,
    connection_env,
    environ,
)

#: Seconds the waits run before they are counted (every poll queued, or done and asleep).
SETTLE = 1.5


async def _count(start: Any, n: int, settle: float = SETTLE) -> dict[str, Any]:
    """Start ``n`` waits with ``start(i)``, let them settle, count the new tracked objects, cancel."""
    gc.collect()
    before = Counter(type(o).__name__ for o in gc.get_objects())
    tasks = [asyncio.create_task(start(i)) for i in range(n)]
    await asyncio.sleep(settle)
    gc.collect()
    grown = Counter(type(o).__name__ for o in gc.get_objects()) - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"per_wait": sum(grown.values()) / n, "top": [(k, v / n) for k, v in grown.most_common(8)]}


def measure(url: str, state: str, n: int, settle: float = SETTLE) -> dict[str, Any]:
    """
    Count the tracked objects per wait of ``n`` waits in ``state`` (``queued``, ``sleeping``, ``floor``).

    :param url: the simulator's base URL.
    :param state: what to count.
    :param n: how many waits.
    :param settle: seconds the waits run before they are counted.
    """
    from benchmarks._common import AdminClient
    from benchmarks._phase import _close_floor_session, _floor_wait

    ids, _ = AdminClient(url).create_messages([3600.0] * n)
    env = connection_env(url)
    if state == "queued":  # one request a minute: every poll waits for the budget
        conn = json.loads(env[f"AIRFLOW_CONN_{OCTOPODS_CONN_ID.upper()}"])
        env[f"AIRFLOW_CONN_{OCTOPODS_CONN_ID.upper()}"] = json.dumps(
            {**conn, "extra": {"max_requests_per_second": 1 / 60}}
        )

    async def main() -> dict[str, Any]:
        from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

        async def trigger(i: int) -> None:
            wait = OctopodsSmsDeliveryTrigger(
                message_id=ids[i], octopods_conn_id=OCTOPODS_CONN_ID, poll_interval=60, initial_delay=0.1
            )
            async for _ in wait.run():
                return

        async def floor(i: int) -> None:
            await asyncio.sleep(0.1)
            await _floor_wait(url, ids[i], 60)

        # one wait first: every lazy import, the connection, the session
        await _count(floor if state == "floor" else trigger, 1, settle)
        counted = await _count(floor if state == "floor" else trigger, n, settle)
        await _close_floor_session()
        return counted

    with environ(env):
        return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    """
    Count the objects per wait in each state and print a table.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wait_objects", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="waits per state")
    parser.add_argument("--settle", type=float, default=SETTLE, help="seconds the waits run before the count")
    parser.add_argument("--json", help="also write the counts to this JSON file")
    args = parser.parse_args(argv)
    print(Machine.here().describe())
    print(
        f"command: python -m benchmarks.wait_objects {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    results: dict[str, Any] = {}
    provider = logging.getLogger("airflow_provider_octopods")
    level = provider.level
    provider.setLevel(logging.WARNING)  # a line per poll otherwise; restored for whoever called main()
    try:
        with SimulatorProcess() as sim:
            for state in ("queued", "sleeping", "floor"):
                results[state] = measure(sim.url, state, args.n, args.settle)
    finally:
        provider.setLevel(level)
    names = {
        "queued": "Octopods trigger, poll queued in the budget",
        "sleeping": "Octopods trigger, sleeping",
        "floor": "floor: bare aiohttp GET loop, sleeping",
    }
    print(f"\nN = {args.n:,} waits per state\n")
    print("| state | tracked objects per wait | the most common |")
    print("| --- | ---: | --- |")
    for state, counted in results.items():
        top = ", ".join(f"{name} {count:.1f}" for name, count in counted["top"])
        print(f"| {names[state]} | {counted['per_wait']:.1f} | {top} |")
    floor = results["floor"]["per_wait"]
    print(
        f"\nwait objects: queued {results['queued']['per_wait']:.1f}, sleeping {results['sleeping']['per_wait']:.1f} "
        f"per Octopods wait ({results['sleeping']['per_wait'] / max(floor, 1e-9):.1f}x the floor's {floor:.1f})"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
