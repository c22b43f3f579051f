"""
A stalled Octopods must never stall the triggerer: its event loop runs every trigger.

Twenty triggers share one event loop while every request they make hangs (the simulator accepts
and never answers). A ticker task measures how late the loop runs it; the deadline of every
trigger must still hold, give or take one request timeout. A control proves the ticker would
see a blocking call.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from airflow_provider_octopods.testing import Hang
from airflow_provider_octopods.triggers.octopods import DEADLINE_GRACE
from tests.reliability.waits import TICK, make_trigger, point_connection_at

TRIGGERS = 20
#: Per-request timeout here: a blocking request would freeze the loop this long.
REQUEST_TIMEOUT = 1.0
DEADLINE = 1.2


async def run_with_ticker(*coroutines: Any) -> tuple[list[Any], list[tuple[float, float]]]:
    """
    Run ``coroutines`` concurrently while a ticker measures the loop's lag.

    :return: the coroutines' results, and ``(UNIX time, seconds late)`` for every tick.
    """
    lags: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(TICK)
            lags.append((time.time(), loop.time() - before - TICK))

    ticking = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*coroutines)
    finally:
        done.set()
        await ticking
    return list(results), lags


async def first_event(trigger: Any) -> tuple[dict[str, Any], float]:
    events = trigger.run()
    try:
        event = await events.__anext__()
    finally:
        await events.aclose()
    return event.payload, time.time()


def test_hung_requests_never_block_the_event_loop_nor_outlive_the_deadline(sim, monkeypatch, record_property):
    # A budget above the burst, so every first poll leaves at once (spacing is tests/test_budget.py's).
    point_connection_at(monkeypatch, sim, timeout=REQUEST_TIMEOUT, max_requests_per_second=1000)
    triggers = [make_trigger(sim.add_message(Hang(30)), DEADLINE) for _ in range(TRIGGERS)]

    results, lags = asyncio.run(run_with_ticker(*(first_event(t) for t in triggers)))

    # The first poll of the first trigger in a process imports the hook module (requests, the
    # HTTP provider) and opens the pooled session; after that, every trigger only waits.
    with sim._lock:
        all_hanging = sorted(r.at for r in sim.requests)[TRIGGERS - 1]
    lag = max(late for at, late in lags if at > all_hanging)
    first_use = max(late for _, late in lags)
    overshoot = max(ended - t.end_time for t, (_, ended) in zip(triggers, results, strict=True))
    for trigger, (event, ended) in zip(triggers, results, strict=True):
        assert event["status"] == "timeout"
        assert re.search(r"did not answer GET \S+ within [0-9.]+ s", event["last_error"])
        assert ended >= trigger.end_time
    # A request is cut at the deadline plus a short grace for the last poll, not a full request timeout.
    grace = min(DEADLINE_GRACE, triggers[0].max_poll_interval)
    assert overshoot <= grace + 0.3, f"a trigger outlived its deadline by {overshoot:.2f} s"
    # A request that blocked the loop would stall it for the whole request timeout (1 s); the
    # bounds leave room for a busy CI machine (lag itself is measured by benchmarks/).
    assert lag < REQUEST_TIMEOUT / 4, f"the event loop stalled for {lag * 1000:.0f} ms while requests hung"
    assert first_use < REQUEST_TIMEOUT * 0.75, f"the event loop stalled for {first_use * 1000:.0f} ms"
    record_property(
        f"measure:Event-loop lag, {TRIGGERS} triggers on hung requests ({REQUEST_TIMEOUT:g} s timeout)",
        f"{lag * 1000:.1f} ms worst while all requests hang; {first_use * 1000:.1f} ms worst over the "
        f"whole wait, first polls included (ticker every {TICK * 1000:g} ms)",
    )
    record_property(
        f"measure:Deadline overshoot with hung requests ({REQUEST_TIMEOUT:g} s timeout)",
        f"{overshoot:.2f} s worst of {TRIGGERS} (bound: the trigger's deadline grace, {grace:g} s)",
    )


def test_the_ticker_sees_a_blocked_loop():
    async def blocking() -> None:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what a synchronous HTTP call in a trigger would do

    _, lags = asyncio.run(run_with_ticker(blocking()))

    assert max(late for _, late in lags) >= 0.25


def test_closed_event_loops_are_freed_after_using_the_async_hook(sim, monkeypatch):
    """
    Regression (issue 10 #12): the connection cache kept a task per event loop, and a task holds
    its loop, so every ``asyncio.run`` with the async hook (the operator's in-worker wait,
    ``async_notify``) kept its closed loop alive forever.
    """
    import gc
    import weakref

    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    point_connection_at(monkeypatch, sim)
    message_id = sim.add_message("delivered")
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def ask() -> str:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with OctopodsAsyncHook() as hook:
            return (await hook.get_sms_status(message_id)).status

    for _ in range(20):
        assert asyncio.run(ask()) == "delivered"
    gc.collect()

    # asgiref (Airflow's sync_to_async, under get_async_connection) remembers the most recent loop
    # in a thread-local until the next one replaces it: only that one may still be alive.
    alive = [ref for ref in loops[:-1] if ref() is not None]
    assert not alive, f"{len(alive)} of 19 earlier closed event loops are still alive"
