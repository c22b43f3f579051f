"""
WhatsApp batch wait: ONE trigger on N WhatsApp messages, reading the list endpoint each round
(``GET /api/v1/whatsapp/messages?limit=100``) versus polling every message by id.

The simulator runs in its own process (``octopods-simulator --quiet``, WhatsApp key in the
``octopods_whatsapp_default`` connection). For each list shape (``messages``: ``{"messages":
[...]}``, ``array``: a bare array; switched on the running simulator) and each N, two waits run
one after the other in this process, each on N fresh messages that are ``sent`` at once and
``delivered`` ``--deliver-after`` seconds later (several rounds), all at the same moment:

- **list**: :class:`OctopodsWhatsAppDeliveryTrigger` as shipped: each round asks the list once and
  polls by id only the messages not in it (the list holds the newest 100 sends);
- **per id** (the named baseline): the same trigger with the list turned off (its ``channel`` is
  ``WHATSAPP`` with ``listable=False``): one request per pending message per round, as every
  other integration polls.

Each wait is ``async for event in trigger.run()`` in a fresh event loop, on a fixed schedule
(``initial_delay=0``, ``backoff_factor=1``, ``poll_interval`` = ``max_poll_interval``). A round is
one call of the trigger's ``_poll``; its requests are the simulator's counters (``requests``,
``list_requests``, ``whatsapp_status_requests``) read before and after it, its CPU this
process's CPU time during it. The comparison is over the rounds with all N messages pending
that end with all of them still pending: the round that sees the messages final also asks each
of them by id once, for the timestamps a list item lacks (N requests per wait, once), so the
totals over all rounds are given too.

Then the budget check: one wait on ``--budget-n`` messages (101 by default: each round is one list
request and one status request, so half the traffic is list calls) with the connection extra
``max_requests_per_second`` set (``--budget-rate``) and a tiny poll interval, so the budget and
nothing else sets the pace; then, as its baseline, the same wait with the extra unset (an
adaptive budget starting at 200 requests/s: the pace the wait asks for). Both run against a
second simulator limited to ``--budget-limit`` requests per second (429s counted), whose counters
are sampled every 0.1 s for the peak rate over 1 s windows. Were list calls outside the budget,
the budgeted wait would send about twice its rate and meet 429s.

Targets (exit 1 if missed): every wait ends ``done`` with every message delivered; with the
list, a wait on at most 100 messages makes at most 2 requests in every round with all of them
pending; with the budget, the peak rate stays within ``rate * 1.1 + 1`` requests per second and
the mean within ``rate * 1.05 + 1 / wall`` (a bucket of one token lets at most ``1 + rate * w``
requests through in ``w`` seconds), and no request gets a 429. For N > 100 the ratio is
reported (expected ``(1 + N - 100) / N``: only the newest 100 are listed, the others are polled
by id).

``--other-sends K`` creates K more WhatsApp messages just after each wait's, which nobody waits
on: the sends of the rest of a busy workspace, which take the wait's places in the list.

Run from the repository root::

    .venv/bin/python -m benchmarks.whatsapp_batch_wait                  # N = 100 and 1,000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from benchmarks._common import (
    AdminClient,
    Machine,
    SimulatorProcess,
    environ,
    ratio,
    whatsapp_connection_env,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The list endpoint holds the newest this many sends (Octopods documents no pagination).
LIST_LIMIT = 100
SIDES = {"list": "with the list", "per-id": "per id (baseline)"}
SHAPES = ("messages", "array")
#: Seconds between samples of the simulator's counters in the budget check.
SAMPLE_EVERY = 0.1
#: The simulator's counters of a WhatsApp wait.
COUNTERS = ("requests", "list_requests", "whatsapp_status_requests")


@lru_cache(maxsize=1)
def trigger_classes() -> dict[str, type[Any]]:
    """
    Return the trigger of each side: the shipped WhatsApp trigger, and the same without the list.

    Both record each round (call of ``_poll``) in ``rounds``: the ids pending, the client CPU of
    the round and, when ``admin`` is set, the simulator's requests during it (its counters read
    before and after, outside the CPU measured). Their INFO lines go to a quiet logger (warnings
    still show). Imported on first use, so ``--help`` does not import Airflow.
    """
    from airflow_provider_octopods.models import WHATSAPP, MessageStatus, reached
    from airflow_provider_octopods.triggers.octopods import OctopodsWhatsAppDeliveryTrigger

    quiet = logging.getLogger("benchmarks.whatsapp_batch_wait.trigger")
    quiet.setLevel(logging.WARNING)

    class CountingWhatsAppTrigger(OctopodsWhatsAppDeliveryTrigger):
        """The shipped trigger, recording each round."""

        _log = cast("Any", quiet)  # a stdlib logger: Airflow's structlog one would print INFO lines

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.rounds: list[dict[str, Any]] = []
            self.admin: AdminClient | None = None

        async def _poll(self, hook: Any, ids: list[int], budget: float | None) -> Any:
            before = self.admin.stats() if self.admin is not None else None
            cpu = time.process_time()
            results: list[Any] = []
            try:
                results = await super()._poll(hook, ids, budget)
                return results
            finally:
                final = sum(
                    1
                    for r in results
                    if isinstance(r, MessageStatus) and reached(r, self.wait_for) is not None
                )
                record: dict[str, Any] = {
                    "pending": len(ids),
                    "final": final,
                    "cpu_s": time.process_time() - cpu,
                }
                if before is not None and self.admin is not None:
                    after = self.admin.stats()
                    record.update({k: after[k] - before[k] for k in COUNTERS})
                self.rounds.append(record)

    class PerIdWhatsAppTrigger(CountingWhatsAppTrigger):
        """The baseline: the same wait with the list turned off, every message polled by id."""

        channel = dataclasses.replace(WHATSAPP, listable=False)

    return {"list": CountingWhatsAppTrigger, "per-id": PerIdWhatsAppTrigger}


def expected_per_round(n: int, side: str, other_sends: int = 0) -> int:
    """
    Return the requests a round on ``n`` pending messages should make (all created at once).

    :param n: the messages pending.
    :param side: ``list`` or ``per-id``.
    :param other_sends: sends made after the wait's messages, which take places in the list.
    """
    if side == "per-id" or n <= 1:
        return n
    listed = max(0, min(n, LIST_LIMIT - other_sends))
    return 1 + n - listed


def whatsapp_timeline(delivered_after: float) -> list[list[Any]]:
    """Return the timeline of a WhatsApp message sent at once and delivered after ``delivered_after`` s."""
    return [[0.0, "sent"], [delivered_after, "delivered"]]


class StatsSampler:
    """
    Sample the simulator's ``requests`` counter every :data:`SAMPLE_EVERY` seconds in a thread.

    Each sample keeps the times just before and just after its call: the server read the counter
    somewhere in between (a call can take a while on a busy machine).

    :param admin: the simulator's admin endpoints.
    """

    def __init__(self, admin: AdminClient) -> None:
        self.admin = admin
        #: ``(time before the call, time after it, requests)``, in ``time.monotonic()`` seconds.
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stats-sampler")

    def _sample(self) -> float:
        before = time.monotonic()
        requests = int(self.admin.stats()["requests"])
        self.samples.append((before, time.monotonic(), requests))
        return before

    def _run(self) -> None:
        while not self._stop.is_set():
            before = self._sample()
            self._stop.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - before)))

    @contextlib.contextmanager
    def running(self) -> Iterator[StatsSampler]:
        """Sample for the duration of the block (and once more at its end)."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)
            self._sample()

    def peak_rate(self, window: float = 1.0) -> float | None:
        """
        Return the most requests per second between two samples at least ``window`` s apart (the
        nearest such pair from each sample), or None if the run was shorter than that.

        The requests counted between samples i and j all arrived between the start of call i
        and the end of call j, so that is the interval each count is divided by: a sampler slowed
        down by a busy machine makes the peak lower, never higher, than the budget's real pace.
        """
        best: float | None = None
        j = 0
        for start, _, r0 in self.samples:
            while j < len(self.samples) and self.samples[j][1] - start < window:
                j += 1
            if j == len(self.samples):
                break
            _, end, r1 = self.samples[j]
            best = max(best or 0.0, (r1 - r0) / (end - start))
        return best


async def _wait(
    side: str,
    ids: list[int],
    poll_interval: float,
    max_concurrency: int,
    timeout: float,
    admin: AdminClient | None,
) -> Any:
    trigger = trigger_classes()[side](
        message_ids=ids,
        poll_interval=poll_interval,
        initial_delay=0,
        backoff_factor=1,
        max_poll_interval=poll_interval,
        max_concurrency=max_concurrency,
        end_time=time.time() + timeout,
    )
    trigger.admin = admin
    events = [event async for event in trigger.run()]  # one event, then run() returns and closes its hook
    return trigger, events[-1] if events else None


def run_wait(
    admin: AdminClient,
    side: str,
    n: int,
    *,
    poll_interval: float,
    delivered_after: float,
    max_concurrency: int,
    timeout: float,
    per_round: bool = True,
    other_sends: int = 0,
) -> dict[str, Any]:
    """
    Create ``n`` WhatsApp messages, wait on them with one trigger of ``side``, return the counts.

    The connection must already be in the environment. "Full" rounds are those with all ``n``
    messages pending (before any delivery was seen): the rounds the comparison is about.

    :param admin: the simulator's admin endpoints.
    :param side: ``list`` or ``per-id``.
    :param n: how many messages.
    :param poll_interval: seconds between rounds.
    :param delivered_after: seconds from creation to delivery (every message alike).
    :param max_concurrency: the trigger's requests in flight at once.
    :param timeout: the wait's deadline, in seconds.
    :param per_round: read the simulator's counters around each round.
    :param other_sends: WhatsApp messages created just after the wait's, not waited on: the
        sends of the rest of a busy workspace, which push the wait's messages out of the list.
    """
    script = {"channel": "whatsapp", "timeline": whatsapp_timeline(delivered_after)}
    ids, _ = admin.create_scripted([script] * n)
    if other_sends:
        admin.create_scripted([script] * other_sends)
    before = admin.stats()
    started = time.monotonic()
    trigger, event = asyncio.run(
        _wait(side, ids, poll_interval, max_concurrency, timeout, admin if per_round else None)
    )
    wall = time.monotonic() - started
    after = admin.stats()
    payload = event.payload if event is not None else {}
    statuses = payload.get("statuses") or []
    rounds: list[dict[str, Any]] = trigger.rounds
    full = [r for r in rounds if r["pending"] == n and not r["final"]]
    delta = {k: after[k] - before[k] for k in (*COUNTERS, "rate_limited")}
    return {
        "side": side,
        "n": n,
        "rounds": len(rounds),
        "full_rounds": len(full),
        "per_round": rounds,
        "requests": delta["requests"],
        "list_requests": delta["list_requests"],
        "status_requests": delta["whatsapp_status_requests"],
        "rate_limited": delta["rate_limited"],
        "requests_per_round": delta["requests"] / max(len(rounds), 1),
        "requests_per_full_round": (
            sum(r["requests"] for r in full) / len(full) if per_round and full else math.nan
        ),
        "other_sends": other_sends,
        "expected_per_full_round": expected_per_round(n, side, other_sends),
        "cpu_per_full_round_ms": sum(r["cpu_s"] for r in full) / max(len(full), 1) * 1e3,
        "wall_s": wall,
        "event_status": payload.get("status"),
        "delivered": sum(1 for s in statuses if s and s.get("status") == "delivered"),
    }


def ok_wait(result: dict[str, Any]) -> bool:
    """Whether a wait ended ``done`` with every message delivered."""
    return bool(result["event_status"] == "done" and result["delivered"] == result["n"])


def runs_table(runs: list[dict[str, Any]]) -> str:
    """Return the Markdown table of every wait."""
    lines = [
        "| N | list shape | side | rounds (all N pending) | requests | list | by id "
        "| requests per round, all N pending | requests per round, all rounds "
        "| client CPU per round, all N pending (ms) | wall (s) | delivered |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {r['n']:,} | {r['shape']} | {SIDES[r['side']]} | {r['rounds']} ({r['full_rounds']}) "
            f"| {r['requests']:,} | {r['list_requests']:,} | {r['status_requests']:,} "
            f"| {r['requests_per_full_round']:.2f} | {r['requests_per_round']:.2f} "
            f"| {r['cpu_per_full_round_ms']:.1f} | {r['wall_s']:.2f} | {r['delivered']:,} / {r['n']:,} |"
        )
    return "\n".join(lines)


def comparison(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair each (N, shape)'s list and per-id waits: requests per round and their ratio."""
    by_key = {(r["n"], r["shape"], r["side"]): r for r in runs}
    rows = []
    for n, shape, side in by_key:
        if side != "list" or (n, shape, "per-id") not in by_key:
            continue
        listed, per_id = by_key[(n, shape, "list")], by_key[(n, shape, "per-id")]
        other = listed["other_sends"]
        target = "<= 2" if 1 < n <= LIST_LIMIT and not other else "reported"
        worst = max(r["requests"] for r in listed["per_round"] if r["pending"] == n and not r["final"])
        met = worst <= 2 if target == "<= 2" else None
        rows.append(
            {
                "n": n,
                "shape": shape,
                "list": listed["requests_per_full_round"],
                "list_max": worst,
                "per_id": per_id["requests_per_full_round"],
                "ratio": ratio(listed["requests_per_full_round"], per_id["requests_per_full_round"]),
                "other_sends": other,
                "expected": f"{expected_per_round(n, 'list', other)} / {n}",
                "target": target,
                "met": met,
            }
        )
    return rows


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """Return the Markdown table of requests per round with and without the list."""
    lines = [
        "| N | list shape | requests per round (all N pending): with the list (max) | per id (baseline) "
        "| ratio | expected | target |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        if row["met"] is None:
            target = "ratio reported"
        else:
            target = f"{row['target']}: " + ("**met**" if row["met"] else "**MISSED**")
        lines.append(
            f"| {row['n']:,} | {row['shape']} | {row['list']:.2f} ({row['list_max']}) | {row['per_id']:.2f} "
            f"| {row['ratio']:.3f} | {row['expected']} | {target} |"
        )
    return "\n".join(lines)


def budget_wait(args: argparse.Namespace, rate: float | None, limit: int | None) -> dict[str, Any]:
    """
    Run the budget check's list wait on a fresh simulator, its counters sampled all along.

    :param args: the parsed options (``budget_*``).
    :param rate: the connection's ``max_requests_per_second``, or None (unset: adaptive).
    :param limit: the simulator's ``--rate-limit``, or None for none.
    """
    extra = None if rate is None else {"max_requests_per_second": rate}
    with SimulatorProcess(args=[] if limit is None else ["--rate-limit", str(limit)]) as sim:
        sim.admin.settings(list_shape=args.budget_shape)
        with environ(whatsapp_connection_env(sim.url, extra=extra)):
            sampler = StatsSampler(sim.admin)
            with sampler.running():
                result = run_wait(
                    sim.admin,
                    "list",
                    args.budget_n,
                    poll_interval=args.budget_poll_interval,
                    delivered_after=args.budget_deliver_after,
                    max_concurrency=args.max_concurrency,
                    timeout=args.timeout,
                    per_round=False,
                )
    peak = sampler.peak_rate()
    wall = max(result["wall_s"], 1e-9)
    mean = result["requests"] / wall
    within, allowed = None, None
    if rate is not None:
        # A bucket of one token lets at most 1 + rate * w requests through in w seconds.
        allowed = {"peak": rate * 1.1 + 1, "mean": rate * 1.05 + 1 / wall}
        within = (
            (peak is None or peak <= allowed["peak"])
            and mean <= allowed["mean"]
            and result["rate_limited"] == 0
            and ok_wait(result)
        )
    return dict(
        result,
        shape=args.budget_shape,
        rate=rate,
        limit=limit,
        mean_rate=mean,
        peak_rate=peak,
        allowed=allowed,
        within=within,
    )


def budget_check(args: argparse.Namespace) -> list[dict[str, Any]]:
    """
    Run the list wait with ``max_requests_per_second`` against a simulator limited a little above
    it, then the baseline: the same wait with the extra unset, against an unlimited simulator
    (the pace the wait asks for when nothing holds it back).

    :param args: the parsed options (``budget_*``).
    """
    limit = args.budget_limit or math.ceil(args.budget_rate * 1.25)
    return [budget_wait(args, args.budget_rate, limit), budget_wait(args, None, None)]


def budget_table(budget: list[dict[str, Any]]) -> str:
    """Return the Markdown table of the budget check."""
    lines = [
        "| max_requests_per_second | N | list shape | rounds | requests | list | by id | wall (s) "
        "| mean requests/s | peak requests/s (1 s windows) | 429s (simulator) | delivered | target |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for b in budget:
        peak = "n/a (run < 1 s)" if b["peak_rate"] is None else f"{b['peak_rate']:.1f}"
        limit = "no limit" if b["limit"] is None else f"limit {b['limit']}/s"
        if b["rate"] is None:
            name, target = "unset (baseline)", "none"
        else:
            verdict = "**met**" if b["within"] else "**MISSED**"
            name = f"{b['rate']:g}"
            allowed = b["allowed"]
            target = f"peak <= {allowed['peak']:.1f}, mean <= {allowed['mean']:.1f}, no 429: {verdict}"
        lines.append(
            f"| {name} | {b['n']:,} | {b['shape']} | {b['rounds']} | {b['requests']:,} "
            f"| {b['list_requests']:,} | {b['status_requests']:,} | {b['wall_s']:.2f} | {b['mean_rate']:.1f} "
            f"| {peak} | {b['rate_limited']} ({limit}) | {b['delivered']:,} / {b['n']:,} | {target} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]], budget: list[dict[str, Any]] | None) -> str:
    """Return the one-line summary."""
    parts = [
        f"N={row['n']} {row['shape']}: {row['list']:.2f} vs {row['per_id']:.2f} requests per round "
        f"({row['ratio']:.3f}x)"
        for row in rows
    ]
    for b in budget or []:
        peak = "n/a" if b["peak_rate"] is None else f"{b['peak_rate']:.1f}/s"
        name = "budget unset" if b["rate"] is None else f"budget {b['rate']:g}/s"
        parts.append(f"{name}: mean {b['mean_rate']:.1f}/s, peak {peak}, {b['rate_limited']} 429s")
    return "WhatsApp batch wait, with the list vs per id: " + "; ".join(parts)


@contextlib.contextmanager
def airflow_home() -> Iterator[None]:
    """A throw-away ``AIRFLOW_HOME`` for the in-process waits, unless one is set already."""
    if "AIRFLOW_HOME" in os.environ:
        yield
        return
    home = tempfile.mkdtemp(prefix="octopods-bench-home-")
    with environ({"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}):
        yield


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark, print the tables and the summary line; 1 if a target is missed.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.whatsapp_batch_wait", description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="numbers of messages")
    parser.add_argument(
        "--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), help="list answer shapes to run"
    )
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument(
        "--deliver-after",
        type=float,
        default=5.0,
        help="seconds from creation to delivery (several rounds: each takes the interval and its requests)",
    )
    parser.add_argument("--max-concurrency", type=int, default=10, help="the trigger's requests in flight")
    parser.add_argument(
        "--other-sends",
        type=int,
        default=0,
        help="WhatsApp messages sent just after each wait's, not waited on (a busy workspace; "
        "the <= 2 target then does not apply)",
    )
    parser.add_argument(
        "--budget-rate", type=float, default=20.0, help="max_requests_per_second of the check"
    )
    parser.add_argument("--budget-n", type=int, default=101, help="messages of the budget check")
    parser.add_argument("--budget-shape", choices=SHAPES, default="messages", help="list shape of the check")
    parser.add_argument(
        "--budget-poll-interval", type=float, default=0.01, help="seconds between rounds in the check"
    )
    parser.add_argument(
        "--budget-deliver-after", type=float, default=5.0, help="seconds to delivery in the check"
    )
    parser.add_argument(
        "--budget-limit",
        type=int,
        default=0,
        help="the check's simulator --rate-limit (default: 1.25 x the budget, rounded up)",
    )
    parser.add_argument("--no-budget", action="store_true", help="skip the budget check")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a wait may take")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)

    machine = Machine.here()
    print(machine.describe())
    print(
        "command: python -m benchmarks.whatsapp_batch_wait "
        + " ".join(argv if argv is not None else sys.argv[1:])
    )
    delivered_after = args.deliver_after
    print(
        f"one OctopodsWhatsAppDeliveryTrigger per wait, poll every {args.poll_interval:g} s "
        f"(initial_delay 0, backoff_factor 1, max_concurrency {args.max_concurrency}); N messages "
        f"sent at creation, all delivered {delivered_after:g} s later"
        + (f"; {args.other_sends} other sends just after each wait's messages" if args.other_sends else "")
    )
    runs: list[dict[str, Any]] = []
    budget: list[dict[str, Any]] | None = None
    with airflow_home(), SimulatorProcess() as sim, environ(whatsapp_connection_env(sim.url)):
        wait = {
            "poll_interval": args.poll_interval,
            "max_concurrency": args.max_concurrency,
            "timeout": args.timeout,
        }
        others = {"other_sends": args.other_sends}
        # Warm-up: the first wait of a process imports the hooks and reads the connection.
        run_wait(sim.admin, "list", 2, delivered_after=0.0, **wait)
        for shape in args.shapes:
            sim.admin.settings(list_shape=shape)
            for n in args.n:
                for side in SIDES:
                    result = run_wait(sim.admin, side, n, delivered_after=delivered_after, **wait, **others)
                    runs.append(dict(result, shape=shape))
    if not args.no_budget:
        with airflow_home():
            budget = budget_check(args)
    rows = comparison(runs)
    print()
    print(runs_table(runs))
    print()
    print(comparison_table(rows))
    if budget is not None:
        print()
        print(budget_table(budget))
    print(f"\n(load average at the end: {Machine.here().load})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "machine": asdict(machine),
                    "args": vars(args),
                    "runs": runs,
                    "comparison": rows,
                    "budget": budget,
                },
                out,
                indent=2,
            )
    print()
    print(summary(rows, budget))
    failed = [f"{r['n']} {r['shape']} {r['side']}" for r in runs if not ok_wait(r)]
    missed = [f"N={row['n']} {row['shape']}" for row in rows if row["met"] is False]
    if budget is not None and not all(b["within"] for b in budget if b["rate"] is not None):
        missed.append("budget")
    if failed or missed:
        print(f"FAILED waits: {failed or 'none'}; MISSED targets: {missed or 'none'}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
