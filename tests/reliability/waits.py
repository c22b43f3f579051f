"""
The three ways the provider waits on an SMS, driven the same way by the reliability tests.

- :func:`hook_status`: ``OctopodsHook.get_sms_status`` (the sync hook retries transient trouble);
- :func:`poke_wait`: ``OctopodsSmsDeliverySensor.execute`` in poke mode (Airflow's real poke loop);
- :func:`trigger_wait`: ``OctopodsSmsDeliveryTrigger.run`` on a fresh event loop, with a ticker
  task measuring how late the loop runs it (the loop lag), then the event handed to the sensor's
  ``execute_complete`` as the worker would.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.conftest import TEST_API_KEY

if TYPE_CHECKING:
    import pytest

#: Seconds per request in these tests (the connection extra ``timeout``).
REQUEST_TIMEOUT = 0.3
#: ``utils.budget.BACKOFF_BASE`` in these tests: retries wait 25-50 ms, then 50-100 ms, ... up to the cap.
FAST_BACKOFF_BASE = 0.05
#: Poll settings of the sensor and the trigger in these tests.
POLL_INTERVAL = 0.05
MAX_POLL_INTERVAL = 0.3
INITIAL_DELAY = 0.01
#: The ticker's period when measuring the event loop's lag.
TICK = 0.01


def use_connection(
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    key: str = TEST_API_KEY,
    timeout: float = REQUEST_TIMEOUT,
    **extra: Any,
) -> None:
    """Make ``octopods_default`` point at ``host`` with ``key`` and a short per-request timeout."""
    conn = {"conn_type": "octopods", "host": host, "password": key, "extra": {"timeout": timeout, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))


def point_connection_at(
    monkeypatch: pytest.MonkeyPatch, sim: Any, timeout: float = REQUEST_TIMEOUT, **extra: Any
) -> None:
    """Make ``octopods_default`` point at the simulator ``sim``, with its key (and ``extra``)."""
    use_connection(monkeypatch, sim.url, sim.api_key, timeout, **extra)


def hook_status(message_id: int, max_retries: int) -> Any:
    """Return one status from a fresh sync hook (which retries up to ``max_retries`` times)."""
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    hook = OctopodsHook(max_retries=max_retries)
    try:
        return hook.get_sms_status(message_id)
    finally:
        hook.close()


def sensor(message_id: Any, timeout: float, **kwargs: Any) -> Any:
    """Return a sensor waiting on ``message_id`` with the tests' fast poll settings."""
    from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

    return OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id=message_id,
        poke_interval=POLL_INTERVAL,
        max_poll_interval=MAX_POLL_INTERVAL,
        initial_delay=INITIAL_DELAY,
        backoff_factor=1.0,
        timeout=timeout,
        **kwargs,
    )


def poke_wait(message_id: Any, timeout: float) -> Any:
    """Run the sensor in poke mode until it returns its XCom value or raises."""
    return sensor(message_id, timeout).execute({})


@dataclass
class TriggerRun:
    """What a trigger run produced: its first event, the loop's worst lag and the deadline."""

    event: dict[str, Any]
    max_lag: float
    end_time: float


def make_trigger(message_id: Any, timeout: float, **kwargs: Any) -> Any:
    """Return a trigger waiting on ``message_id`` for ``timeout`` seconds from now."""
    from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger

    return OctopodsSmsDeliveryTrigger(
        message_id=message_id,
        poll_interval=POLL_INTERVAL,
        end_time=time.time() + timeout,
        initial_delay=INITIAL_DELAY,
        max_poll_interval=MAX_POLL_INTERVAL,
        backoff_factor=1.0,
        **kwargs,
    )


async def first_event_with_lag(trigger: Any) -> tuple[dict[str, Any], float]:
    """Run ``trigger`` to its first event while a ticker measures the event loop's worst lag."""
    max_lag = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal max_lag
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(TICK)
            max_lag = max(max_lag, loop.time() - before - TICK)

    ticking = asyncio.create_task(ticker())
    events = trigger.run()
    try:
        event = await events.__anext__()
    finally:
        await events.aclose()
        stop.set()
        await ticking
    return event.payload, max_lag


def trigger_wait(message_id: int, timeout: float) -> TriggerRun:
    """Run a trigger on a new event loop until its first event."""
    trigger = make_trigger(message_id, timeout)
    event, lag = asyncio.run(first_event_with_lag(trigger))
    return TriggerRun(event, lag, trigger.end_time)


def complete(message_id: int, event: dict[str, Any], timeout: float) -> Any:
    """Finish as the worker does after the trigger fired: the XCom value, or the task's error."""
    return sensor(message_id, timeout, deferrable=True).execute_complete({}, event)
