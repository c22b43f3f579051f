"""
Request budget: thousands of waits on one key against a rate-limited simulator.

Octopods answers HTTP 429 past a number of requests per second per key. This benchmark runs a
"triggerer-like" loop (one asyncio task per wait, the trigger's default schedule, the trigger's
own backoff on transient errors) in one event loop, with every status request going through
``OctopodsAsyncHook.get_sms_status`` wrapped by the shared request budget and the poll coalescer
(``OctopodsAsyncHook.get_sms_status``, which coalesces polls and draws each request from the budget), against ``octopods-simulator
--rate-limit`` in another process. Phases, each in a fresh Python process:

- ``fixed``: ``--n`` waits on one key, connection extra ``max_requests_per_second=--rate``, the
  simulator limited to ``--limit`` requests/s. Targets: zero 429s after the first interval,
  every wait detects its delivery, p95 detection delay within 1.5x of ``n / rate``.
- ``adaptive``: the same with the extra unset. Target: 429s at most 5% of requests.
- ``coalesce``: ``--coalesce-n`` waits on ``--coalesce-ids`` distinct ids (no rate limit,
  a 1 s fixed schedule, the waits on one id started together). Target: requests per poll round
  close to the number of ids, not of waits.
- ``unbudgeted`` (``--baseline``): the ``fixed`` workload with plain ``get_sms_status``, no
  budget: what a triggerer does today.

``--time-scale`` multiplies every delay of the schedule and of the deliveries (not the
simulator's one-second window nor its ``Retry-After``), for the smoke test.

Run from the repository root::

    .venv/bin/python -m benchmarks.request_budget                       # about 8 minutes
    .venv/bin/python -m benchmarks.request_budget --n 1000 --json /tmp/budget.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from benchmarks._common import (
    BENCH_KEY,
    OCTOPODS_CONN_ID,
    ROOT,
    AdminClient,
    Machine,
    SimulatorProcess,
    environ,
    percentile,
    workload,
)

#: The issue's targets.
TARGET_429_SHARE = 0.05
TARGET_DELAY_RATIO = 1.5
TARGET_LAG_P99_MS = 50.0
TARGET_KB_PER_WAIT = 5.0


def phase_env(url: str, rate: float | None) -> dict[str, str]:
    """
    Return the environment that defines the benchmark's Octopods connection.

    :param url: the simulator's base URL.
    :param rate: the ``max_requests_per_second`` extra, or None to leave it unset.
    """
    conn: dict[str, Any] = {"conn_type": "octopods", "host": url, "password": BENCH_KEY}
    if rate is not None:
        conn["extra"] = {"max_requests_per_second": rate}
    return {f"AIRFLOW_CONN_{OCTOPODS_CONN_ID.upper()}": json.dumps(conn)}


def schedule(scale: float, fixed: float | None) -> Any:
    """Yield the delays of one wait: the trigger's default schedule, or a fixed one, scaled."""
    if fixed is not None:
        while True:
            yield fixed * scale
    for delay in _template().poll_delays():
        yield delay * scale


@lru_cache(maxsize=1)
def _template() -> Any:
    """One trigger whose ``poll_delays()`` every wait reads (not one trigger object per wait)."""
    from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

    return OctopodsSmsDeliveryTrigger(message_id=1)


class _Counters:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.throttled_at: list[float] = []
        self.polls = 0
        self.errors: list[str] = []


async def _wait(
    hook: Any, message_id: int, offset: float, spec: dict[str, Any], counters: _Counters
) -> float | None:
    """One triggerer-like wait; return the time it saw ``delivered`` (None on a lasting error)."""
    from airflow_provider_octopods.exceptions import OctopodsError, OctopodsTransientError
    from airflow_provider_octopods.utils.budget import retry_delay

    scale, cap = float(spec["time_scale"]), 60.0 * float(spec["time_scale"])
    await asyncio.sleep(offset)
    delays = schedule(scale, spec.get("fixed_interval"))
    delay, failures = next(delays), 0
    while True:
        await asyncio.sleep(delay)
        counters.polls += 1
        try:
            if spec["budget"]:
                status = await hook.get_sms_status(message_id)
            else:
                status = await hook.get_sms_status(message_id)
        except OctopodsTransientError as err:
            if err.status_code == 429:
                counters.throttled_at.append(time.monotonic() - counters.started)
            failures += 1
            delay = retry_delay(failures, err.retry_after, cap=max(cap, 1.0))
            continue
        except OctopodsError as err:
            counters.errors.append(str(err))
            return None
        failures = 0
        if status.is_terminal:
            return time.time() if status.status == "delivered" else None
        delay = next(delays)


async def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook
    from airflow_provider_octopods.utils.budget import _budgets
    from benchmarks._phase import _Ticker, current_rss

    n, ids_wanted, scale = int(spec["n"]), int(spec["ids"]), float(spec["time_scale"])
    load = workload(ids_wanted, spec["seed"], spec["min_delivery"] * scale, spec["max_delivery"] * scale, 0)
    admin = AdminClient(spec["url"])
    hook = OctopodsAsyncHook(OCTOPODS_CONN_ID)
    warm, _ = admin.create_messages([0.0])  # load every lazy import and the connection once
    await hook.get_sms_status(warm[0])
    gc.collect()
    ids, created_at = admin.create_messages(load["delays"])
    per_id = n // ids_wanted
    targets = [ids[i // per_id] for i in range(n)]
    due = [created_at + load["delays"][i // per_id] for i in range(n)]
    if spec["same_start"]:  # the waits on one id start together
        offsets = [((i // per_id) % 97) / 97 * spec["spread"] * scale for i in range(n)]
    else:
        offsets = workload(n, spec["seed"] + 1, 0, 0, spec["spread"] * scale)["offsets"]
    before = admin.stats()
    baseline_rss = current_rss()
    ticker, counters = _Ticker(0.01), _Counters()
    ticking = asyncio.create_task(ticker.run())
    cpu0, wall0 = time.process_time(), time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(_wait(hook, m, o, spec, counters) for m, o in zip(targets, offsets, strict=True))),
        timeout=float(spec["timeout"]),
    )
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    ticker.stop()
    await ticking
    after = admin.stats()
    budgets = list(_budgets.get(asyncio.get_running_loop(), {}).values())
    await hook.close()
    requests = after["status_requests"] - before["status_requests"]
    latencies = [at - when for at, when in zip(results, due, strict=True) if at is not None]
    first_interval = float(spec["first_interval"]) * scale
    return {
        "phase": spec["phase"],
        "n": n,
        "ids": ids_wanted,
        "rate": spec.get("rate"),
        "limit": spec.get("limit"),
        "failed_waits": sum(1 for r in results if r is None),
        "errors": counters.errors[:3],
        "polls": counters.polls,
        "requests": requests,
        "throttled": after["rate_limited"] - before["rate_limited"],
        "throttled_seen_by_waits": len(counters.throttled_at),
        "throttled_after_first_interval": sum(1 for t in counters.throttled_at if t > first_interval),
        "budget_final_rate": budgets[0].rate if budgets else None,
        "wall_s": wall,
        "client_cpu_s": cpu,
        "cpu_per_request_us": cpu / max(requests, 1) * 1e6,
        "requests_per_s": requests / wall if wall else 0.0,
        "lag_p99_ms": percentile(ticker.lags, 99) * 1000,
        "lag_max_ms": max(ticker.lags, default=0.0) * 1000,
        "bytes_per_wait": max(ticker.peak_rss - baseline_rss, 0) / n,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies, default=0.0),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def run_phase(spec: dict[str, Any], in_process: bool) -> dict[str, Any]:
    """
    Run one phase against a fresh simulator, here or in a fresh Python process.

    :param spec: the phase's description (``limit`` is the simulator's ``--rate-limit``).
    :param in_process: run the phase in this process (the smoke test does).
    """
    extra = ["--rate-limit", str(spec["limit"])] if spec.get("limit") else []
    with SimulatorProcess(args=extra) as sim:
        env = phase_env(sim.url, spec.get("rate"))
        if in_process:
            with environ(env):
                return asyncio.run(_measure(dict(spec, url=sim.url)))
        child_env = {
            **os.environ,
            **env,
            "AIRFLOW_HOME": tempfile.mkdtemp(prefix="octopods-bench-home-"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.request_budget", "--phase"],
            input=json.dumps(dict(spec, url=sim.url)),
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=float(spec["timeout"]) + 120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"The {spec['phase']} phase failed:\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report(r: dict[str, Any], scale: float) -> list[str]:
    """Return the lines, and target checks, of one phase's result."""
    share = r["throttled"] / max(r["requests"], 1)
    lines = [
        f"## {r['phase']}: {r['n']} waits on {r['ids']} ids, "
        f"max_requests_per_second={r['rate']}, simulator limit={r['limit']}",
        f"  wall {r['wall_s']:.0f} s, requests {r['requests']} ({r['requests_per_s']:.1f}/s), "
        f"polls by waits {r['polls']}, 429s {r['throttled']} ({share:.2%} of requests), "
        f"429s after the first interval {r['throttled_after_first_interval']}",
        f"  failed waits {r['failed_waits']}, delivery to detection p50 {r['latency_p50_s']:.1f} s, "
        f"p95 {r['latency_p95_s']:.1f} s, max {r['latency_max_s']:.1f} s",
        f"  event-loop lag p99 {r['lag_p99_ms']:.1f} ms (max {r['lag_max_ms']:.0f} ms), "
        f"{r['bytes_per_wait'] / 1024:.2f} KB per wait, CPU {r['cpu_per_request_us']:.0f} µs per request, "
        f"budget rate at the end {r['budget_final_rate']}",
    ]
    if r["phase"] in {"fixed", "adaptive"}:
        rate = r["rate"] or r["requests_per_s"]
        allowed = r["n"] / rate
        lines.append(
            f"  budget allows one poll per message every {r['n']}/{rate:.1f} = {allowed:.1f} s; "
            f"p95 / that = {r['latency_p95_s'] / allowed:.2f}"
        )
        checks = [
            ("every wait detects its delivery", r["failed_waits"] == 0),
            ("lag p99 < 50 ms", r["lag_p99_ms"] < TARGET_LAG_P99_MS),
            ("<= 5 KB per wait", r["bytes_per_wait"] / 1024 <= TARGET_KB_PER_WAIT),
        ]
        if r["phase"] == "fixed":
            checks += [
                ("zero 429s after the first interval", r["throttled_after_first_interval"] == 0),
                ("p95 within 1.5x of the budget", r["latency_p95_s"] <= TARGET_DELAY_RATIO * allowed),
            ]
        else:
            checks.append(("429s <= 5% of requests", share <= TARGET_429_SHARE))
        lines += [f"  {'PASS' if ok else 'MISS'}: {what}" for what, ok in checks]
    if r["phase"] == "coalesce":
        rounds = r["polls"] / r["n"]
        lines.append(
            f"  {rounds:.1f} poll rounds, {r['requests'] / rounds:.0f} requests per round "
            f"for {r['ids']} ids and {r['n']} waits"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """
    Run the phases and print their figures, target checks and a summary line.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_budget", description=__doc__)
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=5000, help="waits on one key (fixed, adaptive)")
    parser.add_argument("--limit", type=int, default=50, help="the simulator's requests/s per key")
    parser.add_argument("--rate", type=float, default=45.0, help="max_requests_per_second (fixed)")
    parser.add_argument("--min-delivery", type=float, default=5.0, help="earliest delivery (s)")
    parser.add_argument("--max-delivery", type=float, default=60.0, help="latest delivery (s)")
    parser.add_argument("--spread", type=float, default=10.0, help="wait starts spread over (s)")
    parser.add_argument("--coalesce-n", type=int, default=1000, help="waits of the coalesce phase")
    parser.add_argument("--coalesce-ids", type=int, default=100, help="distinct ids of the coalesce phase")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiply schedule and deliveries")
    parser.add_argument("--phases", nargs="+", default=["fixed", "adaptive", "coalesce"])
    parser.add_argument("--baseline", action="store_true", help="also run without a budget")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take")
    parser.add_argument("--in-process", action="store_true", help="run phases here (smoke tests)")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(asyncio.run(_measure(json.loads(sys.stdin.read())))), flush=True)
        return 0

    machine = Machine.here()
    print(machine.describe())
    print(
        f"command: python -m benchmarks.request_budget {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    base = {
        "seed": args.seed,
        "time_scale": args.time_scale,
        "timeout": args.timeout,
        "min_delivery": args.min_delivery,
        "max_delivery": args.max_delivery,
        "spread": args.spread,
        "first_interval": 10.0,
        "same_start": False,
        "budget": True,
    }
    one_key = dict(base, n=args.n, ids=args.n, limit=args.limit)
    specs = {
        "fixed": dict(one_key, phase="fixed", rate=args.rate),
        "adaptive": dict(one_key, phase="adaptive", rate=None),
        "unbudgeted": dict(one_key, phase="unbudgeted", rate=None, budget=False),
        "coalesce": dict(
            base,
            phase="coalesce",
            n=args.coalesce_n,
            ids=args.coalesce_ids,
            limit=None,
            rate=1000.0,
            fixed_interval=1.0,
            spread=1.0,
            same_start=True,
        ),
    }
    wanted = list(args.phases) + (["unbudgeted"] if args.baseline else [])
    results: dict[str, Any] = {"machine": asdict(machine), "args": vars(args), "phases": {}}
    summary: list[str] = []
    for name in wanted:
        r = run_phase(specs[name], args.in_process)
        results["phases"][name] = r
        print()
        print("\n".join(report(r, args.time_scale)), flush=True)
        share = r["throttled"] / max(r["requests"], 1)
        summary.append(
            f"{name}: {r['requests']} requests, {share:.1%} 429s, p95 delay {r['latency_p95_s']:.1f} s, "
            f"{r['failed_waits']} failed"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    print()
    print("request budget: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
