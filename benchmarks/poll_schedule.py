"""
Polls per message: what a wait costs in requests, and how late it notices the delivery.

The schedule is the trigger's own (:meth:`OctopodsSmsDeliveryTrigger.poll_delays`), computed,
not waited for: poll ``k`` happens at the sum of the first ``k`` delays, and a message delivered
at ``D`` seconds is seen by the first poll at or after ``D``. Reported for deliveries after 4 s,
30 s and 10 min, and over a spread of deliveries (log-uniform between 2 s and 15 min, a
deterministic grid), for the default schedule, a few alternatives, and a fixed 5 s, 10 s and
60 s poke (first poke at once, as a sensor in poke mode does).

``--verify`` runs the real trigger against the simulator with the default schedule sped up
(``--scale``) and checks that each message costs exactly the requests the arithmetic says.

Run from the repository root::

    .venv/bin/python -m benchmarks.poll_schedule
    .venv/bin/python -m benchmarks.poll_schedule --verify
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

#: The deliveries the issue asks about, in seconds.
SCENARIOS = (4.0, 30.0, 600.0)
#: The spreads of deliveries for the averages: log-uniform between these bounds (seconds), on a
#: fixed grid. Most SMS are delivered within a minute; some take many.
SPREADS = {"typical": (2.0, 60.0), "long tail": (2.0, 900.0)}
SPREAD_POINTS = 1000
#: The grid searched for schedules that beat the default on every criterion at once.
GRID = {
    "initial_delay": (2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
    "poll_interval": (3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0),
    "backoff_factor": (1.25, 1.5, 2.0),
    "max_poll_interval": (30.0, 60.0, 120.0),
}
#: The criteria of that search, all "lower is better".
CRITERIA = ("mean_requests", "mean_delay", "mean_relative_delay")


@dataclass(frozen=True)
class Schedule:
    """
    A polling schedule, in the trigger's terms.

    :param name: how the report calls it.
    :param initial_delay: seconds before the first poll.
    :param poll_interval: seconds between the first polls.
    :param backoff_factor: growth of the interval after each poll.
    :param max_poll_interval: the longest interval.
    """

    name: str
    initial_delay: float
    poll_interval: float
    backoff_factor: float
    max_poll_interval: float
    _times: list[float] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def fixed(cls, seconds: float) -> Schedule:
        """A sensor poking every ``seconds``, the first time at once."""
        return cls(f"fixed {seconds:g} s poke", 0.0, seconds, 1.0, seconds)

    def trigger(self, message_id: int = 1, scale: float = 1.0, **kwargs: Any) -> OctopodsSmsDeliveryTrigger:
        """Return the trigger with this schedule (times multiplied by ``scale``)."""
        from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

        return OctopodsSmsDeliveryTrigger(
            message_id=message_id,
            poll_interval=self.poll_interval * scale,
            initial_delay=self.initial_delay * scale,
            backoff_factor=self.backoff_factor,
            max_poll_interval=self.max_poll_interval * scale,
            **kwargs,
        )

    def poll_times(self, until: float) -> list[float]:
        """Return the times of the polls, from the trigger's own schedule, up to one past ``until``."""
        if not self._times or self._times[-1] < until:
            self._times.clear()
            at = 0.0
            for delay in self.trigger().poll_delays():
                at += delay
                self._times.append(at)
                if at >= until:
                    break
        return self._times

    def cost(self, delivered_after: float) -> tuple[int, float]:
        """Return (requests, seconds from delivery to the poll that sees it) for one message."""
        times = self.poll_times(delivered_after)
        k = bisect.bisect_left(times, delivered_after)
        return k + 1, times[k] - delivered_after


def default_schedule() -> Schedule:
    """The defaults of the wait engine, which every mode polls with."""
    from airflow_provider_octopods.triggers.octopods import PollSchedule

    d = PollSchedule()
    return Schedule("default", d.initial_delay, d.poll_interval, d.backoff_factor, d.max_poll_interval)


def candidates() -> list[Schedule]:
    """The schedules compared: the default, alternatives around it, and fixed pokes."""
    return [
        default_schedule(),
        Schedule("5 s, 10 s x1.5, cap 60 s (v0.1.0)", 5.0, 10.0, 1.5, 60.0),
        Schedule("3 s, 5 s x1.5, cap 60 s", 3.0, 5.0, 1.5, 60.0),
        Schedule("5 s, 5 s x1.5, cap 60 s", 5.0, 5.0, 1.5, 60.0),
        Schedule("5 s, 5 s x2, cap 60 s", 5.0, 5.0, 2.0, 60.0),
        Schedule("5 s, 10 s x2, cap 60 s", 5.0, 10.0, 2.0, 60.0),
        Schedule("5 s, 10 s x1.5, cap 120 s", 5.0, 10.0, 1.5, 120.0),
        Schedule("5 s, 10 s x1.5, cap 30 s", 5.0, 10.0, 1.5, 30.0),
        Schedule.fixed(5.0),
        Schedule.fixed(10.0),
        Schedule.fixed(60.0),
    ]


def spread(bounds: tuple[float, float]) -> list[float]:
    """Return the deterministic log-uniform grid of delivery times between ``bounds``."""
    low, high = (math.log(x) for x in bounds)
    return [math.exp(low + (high - low) * (i + 0.5) / SPREAD_POINTS) for i in range(SPREAD_POINTS)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def evaluate(schedule: Schedule) -> dict[str, Any]:
    """Return the scenario costs and, per spread, the averages of one schedule."""
    row: dict[str, Any] = {"name": schedule.name, "schedule": schedule}
    for seconds in SCENARIOS:
        row[f"{seconds:g} s"] = schedule.cost(seconds)
    for name, bounds in SPREADS.items():
        deliveries = spread(bounds)
        costs = [schedule.cost(d) for d in deliveries]
        row[name] = {
            "mean_requests": sum(c[0] for c in costs) / len(costs),
            "mean_delay": sum(c[1] for c in costs) / len(costs),
            "p95_delay": _percentile([c[1] for c in costs], 95),
            "mean_relative_delay": sum(c[1] / d for c, d in zip(costs, deliveries, strict=True)) / len(costs),
        }
    return row


def _key(row: dict[str, Any]) -> tuple[float, ...]:
    return tuple(row[name][c] for name in SPREADS for c in CRITERIA)


def dominating(default: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """
    Search :data:`GRID` for schedules at least as good as ``default`` on every criterion of
    :data:`CRITERIA` in every spread, and better on one; return the grid size and those found.
    """
    mine = _key(default)
    found = []
    combos = list(itertools.product(*GRID.values()))
    for initial, interval, factor, cap in combos:
        row = evaluate(
            Schedule(
                f"{initial:g} s, {interval:g} s x{factor:g}, cap {cap:g} s", initial, interval, factor, cap
            )
        )
        theirs = _key(row)
        if all(t <= m + 1e-9 for t, m in zip(theirs, mine, strict=True)) and theirs != mine:
            found.append(row)
    return len(combos), found


def _label(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def table(rows: list[dict[str, Any]]) -> str:
    """Return the Markdown table of the schedules."""
    head = ["schedule"]
    head += [f"{_label(s)}: requests / delay" for s in SCENARIOS]
    for name in SPREADS:
        head += [f"{name}: requests", "delay (mean / p95)", "delay / wait"]
    lines = ["| " + " | ".join(head) + " |", "| --- | " + " | ".join("---:" for _ in head[1:]) + " |"]
    for row in rows:
        cells = [row["name"]]
        cells += [f"{row[f'{s:g} s'][0]} / {row[f'{s:g} s'][1]:.1f} s" for s in SCENARIOS]
        for name in SPREADS:
            figures = row[name]
            cells += [
                f"{figures['mean_requests']:.2f}",
                f"{figures['mean_delay']:.1f} / {figures['p95_delay']:.0f} s",
                f"{100 * figures['mean_relative_delay']:.0f} %",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> str:
    """Return the one-line summary: the default against the fixed 5 s and 60 s pokes."""
    by_name = {r["name"]: r for r in rows}
    default, five, sixty = by_name["default"], by_name["fixed 5 s poke"], by_name["fixed 60 s poke"]
    parts = []
    for seconds in SCENARIOS:
        key = f"{seconds:g} s"
        parts.append(
            f"{_label(seconds)}: {default[key][0]} requests (+{default[key][1]:.0f} s) vs "
            f"{five[key][0]} (5 s poke) / {sixty[key][0]} (+{sixty[key][1]:.0f} s, 60 s poke)"
        )
    return "default schedule per message: " + "; ".join(parts)


async def _verify(schedule: Schedule, scale: float, polls: int) -> list[tuple[float, int, int]]:
    """Run real triggers against the simulator; return (delivery, expected, observed requests)."""
    from airflow_provider_octopods.testing import OctopodsSimulator

    times: list[float] = []
    at = 0.0
    for delay in schedule.trigger().poll_delays():
        at += delay
        times.append(at)
        if len(times) > polls:
            break
    # Deliver halfway between polls k and k+1, away from any tie: poll k+1 sees it.
    deliveries = [(times[k - 1] + times[k]) / 2 for k in range(1, polls + 1)]
    with OctopodsSimulator("verify-key-0123456789") as sim:
        # Time runs 1/scale faster here: a request budget sized for real time would space the polls
        # out and hide the schedule under test, so this connection's budget is out of the way.
        conn = {**sim.connection_extra(), "extra": {"max_requests_per_second": 100_000}}
        os.environ["AIRFLOW_CONN_OCTOPODS_VERIFY"] = json.dumps(conn)

        async def wait(trigger: OctopodsSmsDeliveryTrigger) -> Any:
            async for event in trigger.run():
                return event.payload
            return None

        # Warm up (lazy imports, the connection), so the measured waits start on time.
        await wait(
            Schedule.fixed(0.01).trigger(sim.add_message("delivered"), octopods_conn_id="octopods_verify")
        )
        ids = [sim.add_message(timeline=[(0, "queued"), (d * scale, "delivered")]) for d in deliveries]
        triggers = [schedule.trigger(i, scale, octopods_conn_id="octopods_verify") for i in ids]
        events = await asyncio.gather(*(wait(t) for t in triggers))
        if any(e is None or e.get("status") != "done" for e in events):
            raise AssertionError(f"A verification wait did not succeed: {events}")
        return [(d, schedule.cost(d)[0], sim.messages[i].polls) for d, i in zip(deliveries, ids, strict=True)]


def verify(scale: float = 0.02, polls: int = 5) -> list[str]:
    """
    Check the arithmetic against the real trigger and simulator; return report lines.

    :param scale: how much faster than real time the schedule runs.
    :param polls: how many deliveries to check (between polls 1-2, 2-3, ...).
    """
    checked = asyncio.run(_verify(default_schedule(), scale, polls))
    lines = []
    for delivered, expected, observed in checked:
        verdict = "ok" if expected == observed else "MISMATCH"
        lines.append(
            f"  delivered after {delivered:.1f} s: arithmetic {expected} requests, "
            f"real trigger {observed} ({verdict})"
        )
    if any(expected != observed for _, expected, observed in checked):
        raise AssertionError("\n".join(lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    """
    Print the schedules' table, the verification if asked, and the summary line.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poll_schedule", description=__doc__)
    parser.add_argument("--verify", action="store_true", help="check against the real trigger")
    parser.add_argument("--scale", type=float, default=0.02, help="speed-up of the verification")
    parser.add_argument("--verify-polls", type=int, default=5, help="deliveries the verification checks")
    parser.add_argument("--no-search", action="store_true", help="skip the search for better schedules")
    args = parser.parse_args(argv)
    print(
        f"command: python -m benchmarks.poll_schedule {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    rows = [evaluate(s) for s in candidates()]
    spreads = ", ".join(f"{name} = [{_label(lo)}, {_label(hi)}]" for name, (lo, hi) in SPREADS.items())
    print(
        f"\nRequests per message and delay from delivery to the poll that sees it. Spreads: "
        f"{SPREAD_POINTS} deliveries log-uniform in {spreads}. A poll at the very second of the "
        f"delivery sees it (delay 0).\n"
    )
    print(table(rows))
    if not args.no_search:
        size, better = dominating(rows[0])
        criteria = ", ".join(c.replace("_", " ") for c in CRITERIA)
        print(f"\nSearch of {size} schedules for one at least as good as the default on {criteria}, ")
        print("in both spreads, and better on one:")
        print("\n".join(f"  {r['name']}" for r in better) or "  none: the default is on the Pareto front.")
    if args.verify:
        print(f"\nVerification: the real trigger at {args.scale:g}x time against the simulator")
        print("\n".join(verify(args.scale, args.verify_polls)))
    print()
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
