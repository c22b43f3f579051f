"""
One measured phase: N waits of one kind in one asyncio event loop, against the simulator.

Run by :func:`benchmarks._common.run_phase`, normally as ``python -m benchmarks._phase`` with the
phase's JSON description on standard input; the result is one JSON line on standard output.

Sides (``spec["side"]``):

- ``octopods``: one :class:`OctopodsSmsDeliveryTrigger` per message, on a fixed schedule of
  ``poll_interval`` seconds (no initial delay, no backoff), so it polls exactly as often as
  ``HttpSensorTrigger`` does.
- ``octopods-default``: the same trigger with its default schedule (initial delay, backoff).
- ``octopods-batch``: ONE trigger on every message id, on the fixed schedule.
- ``http``: one :class:`TerminalStatusHttpSensorTrigger` per message (``HttpSensorTrigger`` of the
  http provider with a response check, see below), polling every ``poll_interval`` seconds.
- ``floor``: no trigger and no provider code at all: per message, a loop that sleeps
  ``poll_interval`` seconds and GETs the status with a bare ``aiohttp`` request on one shared
  :class:`aiohttp.ClientSession` (one kept-alive pool for all, as the async hook's shared session)
  and decodes the JSON. The least a poll can cost in this harness; the ``octopods`` side's excess
  over it is what the provider's own layers cost.

The harness does what the triggerer does with a trigger (``async for event in trigger.run()``,
one asyncio task per trigger, one event loop). Each wait starts after its offset, so the polls
spread over time as in a triggerer that picked its triggers up over a while, and the trigger is
built at that moment, like a triggerer building the triggers it is handed. A ticker task wakes
every ``tick`` seconds and records how late it woke (the event loop's lag) and, every tenth
tick, the process's resident memory. Before the waits, the harness runs alone for
``calibrate`` seconds to measure its own CPU rate (ticker and idle loop), reported so that
results can be given net of it.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import resource
import sys
import time
import weakref
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import HTTP_CONN_ID, OCTOPODS_CONN_ID, AdminClient, percentile, workload

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.triggers.base import BaseTrigger, TriggerEvent

_PAGE = resource.getpagesize()


def current_rss() -> int:
    """Return this process's resident memory in bytes (Linux ``/proc``; else the peak so far)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@lru_cache(maxsize=1)
def _terminal_http_trigger_class() -> type[BaseTrigger]:
    import aiohttp
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.providers.http.triggers.http import HttpSensorTrigger
    from airflow.triggers.base import TriggerEvent

    from airflow_provider_octopods.models import TERMINAL_STATUSES

    class TerminalStatusHttpSensorTrigger(HttpSensorTrigger):
        """
        ``HttpSensorTrigger`` with the one change a user needs: fire on a terminal status.

        Upstream's trigger fires on any answer that is not a 404, and ``HttpSensor`` with a
        ``response_check`` does not defer at all, so this is the nearest deferrable equivalent.
        ``run`` is upstream's, line for line, plus reading the body and the "not yet" branch:
        one ``HttpAsyncHook`` per trigger (the connection is read once) and a new
        ``aiohttp.ClientSession`` per poll.
        """

        async def run(self) -> AsyncIterator[TriggerEvent]:
            hook = self._get_async_hook()
            while True:
                try:
                    async with aiohttp.ClientSession() as session:
                        response = await hook.run(
                            session=session,
                            endpoint=self.endpoint,
                            data=self.data,
                            headers=self.headers,
                            extra_options=self.extra_options,
                        )
                        body = await response.read()
                    if str(json.loads(body).get("status", "")).lower() in TERMINAL_STATUSES:
                        yield TriggerEvent(True)
                        return
                    await asyncio.sleep(self.poke_interval)
                except AirflowException as exc:
                    if str(exc).startswith("404"):
                        await asyncio.sleep(self.poke_interval)

    return TerminalStatusHttpSensorTrigger


def make_trigger(side: str, ids: list[int], poll_interval: float) -> BaseTrigger:
    """
    Build the trigger of ``side`` waiting on ``ids`` (one id, except for ``octopods-batch``).

    :param side: see the module docstring.
    :param ids: the message ids.
    :param poll_interval: seconds between polls (fixed-schedule sides).
    """
    from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

    fixed: dict[str, Any] = {
        "poll_interval": poll_interval,
        "initial_delay": 0.0,
        "backoff_factor": 1.0,
        "max_poll_interval": poll_interval,
    }
    if side == "octopods":
        return OctopodsSmsDeliveryTrigger(message_id=ids[0], octopods_conn_id=OCTOPODS_CONN_ID, **fixed)
    if side == "octopods-default":
        return OctopodsSmsDeliveryTrigger(message_id=ids[0], octopods_conn_id=OCTOPODS_CONN_ID)
    if side == "octopods-batch":
        return OctopodsSmsDeliveryTrigger(message_ids=ids, octopods_conn_id=OCTOPODS_CONN_ID, **fixed)
    if side == "http":
        return _terminal_http_trigger_class()(
            endpoint=f"api/v1/sms/messages/{ids[0]}",
            http_conn_id=HTTP_CONN_ID,
            method="GET",
            poke_interval=poll_interval,
        )
    raise ValueError(f"Unknown side {side!r}: use octopods, octopods-default, octopods-batch or http.")


def succeeded(side: str, event: TriggerEvent) -> bool:
    """Return whether ``event`` says every message of the wait was delivered."""
    if side == "http":
        return event.payload is True
    payload = event.payload
    return (
        isinstance(payload, dict)
        and payload.get("status") == "done"
        and all(s and s.get("status") == "delivered" for s in payload.get("statuses", []))
    )


_floor_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _floor_session() -> Any:
    """The ``floor`` side's one ``aiohttp.ClientSession`` on the running event loop (kept-alive pool)."""
    import aiohttp

    loop = asyncio.get_running_loop()
    session = _floor_sessions.get(loop)
    if session is None or session.closed:
        session = _floor_sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=90),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=30.0, connect=10.0),
        )
    return session


async def _close_floor_session() -> None:
    """Close the running loop's ``floor`` session, if the phase opened one."""
    session = _floor_sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def _floor_wait(url: str, message_id: int, poll_interval: float) -> tuple[float, bool, int]:
    """The ``floor`` side: GET and decode the status every ``poll_interval`` s until it is final."""
    from airflow_provider_octopods.models import TERMINAL_STATUSES
    from benchmarks._common import BENCH_KEY

    status_url = f"{url}/api/v1/sms/messages/{message_id}"
    headers = {"X-Octopods-Auth": BENCH_KEY, "Accept": "application/json"}
    while True:
        async with _floor_session().get(status_url, headers=headers, allow_redirects=False) as response:
            body = await response.read()
        status = str(json.loads(body).get("status", "")).lower() if response.status == 200 else ""
        if status in TERMINAL_STATUSES:
            return time.time(), status == "delivered", len(body)
        await asyncio.sleep(poll_interval)


async def _wait(
    side: str, ids: list[int], poll_interval: float, offset: float, url: str = ""
) -> tuple[float, bool, int]:
    """Start after ``offset``, wait like the triggerer, return (event time, success, event size)."""
    await asyncio.sleep(offset)
    if side == "floor":
        return await _floor_wait(url, ids[0], poll_interval)
    trigger = make_trigger(side, ids, poll_interval)
    async for event in trigger.run():
        return time.time(), succeeded(side, event), len(json.dumps(event.payload))
    return time.time(), False, 0


class _Ticker:
    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.lags: list[float] = []
        self.peak_rss = current_rss()
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        count = 0
        while not self._stop:
            expected = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            self.lags.append(max(0.0, loop.time() - expected))
            count += 1
            if count % 10 == 0:
                self.peak_rss = max(self.peak_rss, current_rss())

    def stop(self) -> None:
        self._stop = True


class _GcPauses:
    """A ``gc.callbacks`` entry: how many collections of each generation, their time, the longest."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.total = self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.counts[info["generation"]] += 1
        self.total += pause
        self.longest = max(self.longest, pause)


async def _idle_cpu_rate(tick: float, seconds: float) -> float:
    """Return the CPU seconds per second the harness spends with no trigger (the ticker, the loop)."""
    if seconds <= 0:
        return 0.0
    ticker = _Ticker(tick)
    ticking = asyncio.create_task(ticker.run())
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    rate = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    ticker.stop()
    await ticking
    return rate


def _start_profile(spec: dict[str, Any]) -> cProfile.Profile | None:
    """Start profiling the measured waits when ``spec["profile"]`` names a directory."""
    if not spec.get("profile"):
        return None
    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _stop_profile(profiler: cProfile.Profile | None, spec: dict[str, Any]) -> None:
    """Write the profile as ``<profile>/<side>-<n>.prof`` (read it with ``python -m pstats``)."""
    if profiler is None:
        return
    profiler.disable()
    out = Path(spec["profile"])
    out.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out / f"{spec['side']}-{spec['n']}.prof")


async def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    side, n, interval = spec["side"], int(spec["n"]), float(spec["poll_interval"])
    load = workload(n, spec["seed"], spec["min_delivery"], spec["max_delivery"], spec["spread"])
    delays, offsets = load["delays"], load["offsets"]
    admin = AdminClient(spec["url"])

    # Warm up: one complete wait on a delivered message loads every lazy import and code path.
    warm_ids, _ = admin.create_messages([0.0] * (2 if side == "octopods-batch" else 1))
    _, ok, _ = await _wait(side, warm_ids, interval, 0.0, spec["url"])
    if not ok:
        raise RuntimeError(f"The {side} warm-up wait did not succeed.")
    gc.collect()
    await asyncio.sleep(0.2)
    idle = await _idle_cpu_rate(float(spec.get("tick", 0.01)), float(spec.get("calibrate", 2.0)))

    ids, created_at = admin.create_messages(delays)
    before = admin.stats()
    baseline_rss = current_rss()
    ticker = _Ticker(float(spec.get("tick", 0.01)))
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.monotonic()
    ticking = asyncio.create_task(ticker.run())
    if side == "octopods-batch":
        waits = [asyncio.create_task(_wait(side, ids, interval, 0.0))]
        due = [created_at + max(delays)]
    else:
        waits = [
            asyncio.create_task(_wait(side, [message_id], interval, offset, spec["url"]))
            for message_id, offset in zip(ids, offsets, strict=True)
        ]
        due = [created_at + d for d in delays]
    profiler = _start_profile(spec)
    collections = _GcPauses()
    gc.callbacks.append(collections)
    try:
        results = await asyncio.wait_for(asyncio.gather(*waits), timeout=float(spec["timeout"]))
    finally:
        gc.callbacks.remove(collections)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    _stop_profile(profiler, spec)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    ticker.stop()
    await ticking
    await _close_floor_session()
    after = admin.stats()

    polls = after["status_requests"] - before["status_requests"]
    connections = after["connections_opened"] - before["connections_opened"] - 1  # less our stats call
    latencies = [at - when for (at, _, _), when in zip(results, due, strict=True)]
    lags = ticker.lags
    rss_growth = max(ticker.peak_rss - baseline_rss, 0)
    return {
        "side": side,
        "n": n,
        "waits": len(waits),
        "poll_interval": interval,
        "failed_waits": sum(1 for _, ok, _ in results if not ok),
        "event_bytes_max": max(size for _, _, size in results),
        "polls": polls,
        "connections": connections,
        "client_cpu_s": cpu,
        "client_user_s": usage1.ru_utime - usage0.ru_utime,
        "client_sys_s": usage1.ru_stime - usage0.ru_stime,
        "server_cpu_s": after["cpu_seconds"] - before["cpu_seconds"],
        "wall_s": wall,
        "idle_cpu_per_s": idle,
        "client_cpu_net_s": max(cpu - idle * wall, 0.0),
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": ticker.peak_rss,
        "rss_growth_bytes": rss_growth,
        "rss_per_wait_bytes": rss_growth / max(len(waits), 1),
        "rss_per_message_bytes": rss_growth / max(n, 1),
        "lag_max_ms": max(lags, default=0.0) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "lag_p50_ms": percentile(lags, 50) * 1000,
        "lag_samples": len(lags),
        "gc_collections": collections.counts,
        "gc_total_ms": collections.total * 1000,
        "gc_max_ms": collections.longest * 1000,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies, default=0.0),
        "last_event_after_last_delivery_s": max(at for at, _, _ in results) - (created_at + max(delays)),
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Run the phase described by ``spec`` in a new event loop and return its measurements.

    :param spec: ``side``, ``n``, ``poll_interval``, ``seed``, ``min_delivery``, ``max_delivery``,
        ``spread``, ``timeout``, ``url`` and optionally ``tick``, ``calibrate`` (seconds of
        harness-only run to measure the harness's own CPU rate, 0 to skip) and ``profile`` (a
        directory: profile the measured waits with ``cProfile``, which slows them, so the figures
        of a profiled run are not comparable).
    """
    return asyncio.run(_measure(spec))


def main() -> int:
    """Read the phase's JSON from standard input; print the result as one JSON line."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
