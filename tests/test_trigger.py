"""Trigger tests: OctopodsSmsDeliveryTrigger run in asyncio against the simulator."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time

import pytest

from airflow_provider_octopods.testing import FAILURE_REASONS, Reply, Status
from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger
from tests.conftest import TEST_API_KEY

FAST = {"poll_interval": 0.05, "initial_delay": 0.01, "max_poll_interval": 0.1}


async def first_event(trigger: OctopodsSmsDeliveryTrigger, limit: float = 10.0) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(run(), limit)


def test_serialize_round_trips_through_the_constructor_with_json_only():
    trigger = OctopodsSmsDeliveryTrigger(
        message_id="4829174", octopods_conn_id="sms", poll_interval=3, end_time=1_800_000_000.5
    )

    classpath, kwargs = trigger.serialize()
    rebuilt = OctopodsSmsDeliveryTrigger(**json.loads(json.dumps(kwargs)))

    assert classpath == "airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["message_id"] == 4829174 and kwargs["end_time"] == 1_800_000_000.5
    assert set(kwargs) >= {"message_id", "octopods_conn_id", "poll_interval", "end_time"}


def test_trigger_kwargs_never_hold_the_key(octopods_conn):
    trigger = OctopodsSmsDeliveryTrigger(message_ids=[1, 2], end_time=time.time() + 5)
    assert TEST_API_KEY not in json.dumps(trigger.serialize()) + repr(trigger)


@pytest.mark.parametrize("kwargs", [{}, {"message_id": 1, "message_ids": [2]}, {"message_id": "../1"}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="message_id"):
        OctopodsSmsDeliveryTrigger(**kwargs)


async def test_delivered(octopods_conn):
    message_id = octopods_conn.add_message("queued", "sent", "delivered")

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    assert event["message_ids"] == [message_id]
    assert event["statuses"][0]["status"] == "delivered"
    json.dumps(event)


async def test_failure_reason_is_in_the_event(octopods_conn):
    message_id = octopods_conn.add_message(
        "queued", Status("undelivered", FAILURE_REASONS["carrier_blocked"])
    )

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    assert event["statuses"][0]["failure_reason"] == FAILURE_REASONS["carrier_blocked"]


async def test_many_messages_in_one_trigger_in_input_order(octopods_conn):
    ids = [octopods_conn.add_message(*(["queued"] * n), "delivered") for n in (3, 0, 1)]

    event = await first_event(OctopodsSmsDeliveryTrigger(message_ids=ids, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    assert [s["message_id"] for s in event["statuses"]] == ids
    # terminal messages are not asked again: 4 + 1 + 2 polls
    assert octopods_conn.request_count() == 7


async def test_deadline_passes_with_last_status(octopods_conn):
    message_id = octopods_conn.add_message("queued")
    started = time.monotonic()

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 0.5, **FAST))

    assert event["status"] == "timeout"
    assert event["pending"] == [message_id]
    assert event["statuses"][0]["status"] == "queued"
    assert 0.4 < time.monotonic() - started < 2


async def test_deadline_already_passed_after_a_restart_polls_once_then_times_out(octopods_conn):
    message_id = octopods_conn.add_message("sent")

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() - 60, **FAST))

    assert event["status"] == "timeout"
    assert octopods_conn.request_count() == 1


async def test_transient_errors_back_off_and_never_end_the_wait(octopods_conn):
    message_id = octopods_conn.add_message("delivered")
    octopods_conn.inject(Reply(503), Reply(502, "<html>bad gateway</html>"), Reply(200, b"{trunc"))

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    assert octopods_conn.request_count() == 4


async def test_retry_after_is_honoured(octopods_conn):
    message_id = octopods_conn.add_message("delivered")
    octopods_conn.inject(Reply(429, {"error": "slow down"}, {"Retry-After": "0.5"}))
    started = time.monotonic()

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    assert time.monotonic() - started >= 0.5
    assert octopods_conn.request_count() == 2


async def test_auth_error_ends_the_wait_with_an_error_event(octopods_conn):
    message_id = octopods_conn.add_message("queued")
    octopods_conn.revoke_key()

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "error"
    assert event["error"]["type"] == "OctopodsAuthError"
    assert TEST_API_KEY not in json.dumps(event)


async def test_unknown_status_warns_and_polls_on(octopods_conn, caplog, capfd):
    message_id = octopods_conn.add_message("on_the_moon", "on_the_moon", "delivered")

    event = await first_event(OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, **FAST))

    assert event["status"] == "done"
    output = caplog.text + capfd.readouterr().out
    assert "unknown to this provider" in output
    assert output.count("has status 'on_the_moon'") == 1  # warned once, not at every poll


async def test_the_shared_session_is_closed_when_the_trigger_is_cancelled(octopods_conn):
    from airflow_provider_octopods.hooks.octopods import SharedSession

    message_id = octopods_conn.add_message("queued")
    trigger = OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 30, **FAST)
    task = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.2)
    assert asyncio.get_running_loop() in SharedSession._by_loop
    session = SharedSession._by_loop[asyncio.get_running_loop()].session

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert asyncio.get_running_loop() not in SharedSession._by_loop
    assert session.closed


async def test_polls_back_off_to_the_cap(octopods_conn):
    message_id = octopods_conn.add_message("queued")
    trigger = OctopodsSmsDeliveryTrigger(
        message_id,
        end_time=time.time() + 1.2,
        poll_interval=0.05,
        initial_delay=0.0,
        max_poll_interval=0.4,
        backoff_factor=2,
    )

    await first_event(trigger)

    times = [r.at for r in octopods_conn.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) <= 8  # 0, .05, .1, .2, .4, .4, ... until 1.2 s: no busy loop
    assert max(gaps) <= 0.55


async def test_the_hooks_are_imported_in_a_thread_once_per_process(monkeypatch):
    """The first trigger imports the hooks off the event loop; later ones take no thread hop."""
    from airflow_provider_octopods.triggers import octopods as triggers

    hops: list[object] = []
    real = asyncio.to_thread

    async def counting(func, /, *args, **kwargs):
        hops.append(args)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(triggers, "_hooks", None)
    monkeypatch.setattr(triggers.asyncio, "to_thread", counting)
    first, second = await asyncio.gather(triggers._hooks_module(), triggers._hooks_module())
    third = await triggers._hooks_module()
    assert first is second is third and hasattr(third, "OctopodsAsyncHook")
    assert len(hops) == 2  # the two concurrent first calls; none after


# -- one async hook on many event loops (defect 8) ---------------------------------------------

#: The connection's ``timeout`` in the tests below: each request must be answered well within it.
HOOK_TIMEOUT = 2.0


def _short_timeout(simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {**simulator.connection_extra(), "extra": {"timeout": HOOK_TIMEOUT}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))


def _closed_loops() -> int:
    """How many closed event loops are still reachable, after a full collection."""
    gc.collect()
    # type(), not isinstance(): isinstance() asks a lazy Airflow proxy for its __class__, which imports it.
    return sum(1 for o in gc.get_objects() if issubclass(type(o), asyncio.BaseEventLoop) and o.is_closed())


def test_one_async_hook_answers_in_two_asyncio_runs(octopods_conn, monkeypatch):
    """Defect 8: the hook kept the session of its first loop; on the next loop every request failed."""
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    _short_timeout(octopods_conn, monkeypatch)
    message_id = octopods_conn.add_message("sent", "delivered")
    hook = OctopodsAsyncHook()

    async def poll(close: bool = False) -> tuple[str, float]:
        started = time.monotonic()
        status = await asyncio.wait_for(hook.get_sms_status(message_id), HOOK_TIMEOUT + 1)
        took = time.monotonic() - started
        if close:
            await hook.close()
        return status.status, took

    first, took_first = asyncio.run(poll())
    second, took_second = asyncio.run(poll(close=True))

    assert (first, second) == ("sent", "delivered")
    assert took_first < HOOK_TIMEOUT and took_second < HOOK_TIMEOUT
    assert octopods_conn.request_count() == 2


@pytest.mark.parametrize("close", [True, False], ids=["closed", "never-closed"])
@pytest.mark.parametrize("one_hook", [True, False], ids=["one-hook", "a-hook-per-run"])
def test_twenty_asyncio_runs_leave_at_most_one_closed_loop_reachable(octopods_conn, close, one_hook):
    """
    Defect 8: closed loops do not stay reachable through the hook or the shared sessions.

    A hook never closed leaves its loop's session in ``SharedSession._by_loop`` until the next
    first request on another loop drops it: at most the last loop is still reachable.
    """
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, SharedSession

    message_id = octopods_conn.add_message("delivered")
    shared_hook = OctopodsAsyncHook()

    async def run_once() -> str:
        hook = shared_hook if one_hook else OctopodsAsyncHook()
        status = await asyncio.wait_for(hook.get_sms_status(message_id), 10)
        if close:
            await hook.close()
        return status.status

    before = _closed_loops()
    try:
        answers = [asyncio.run(run_once()) for _ in range(20)]

        assert answers == ["delivered"] * 20
        assert octopods_conn.request_count() == 20
        assert _closed_loops() - before <= 1
        assert sum(1 for loop in SharedSession._by_loop if loop.is_closed()) <= (0 if close else 1)
    finally:
        asyncio.run(_drop_sessions_of_closed_loops())


async def _drop_sessions_of_closed_loops() -> None:
    """Leave no session of a closed loop to later tests: the next first request on a loop drops them."""
    from airflow_provider_octopods.hooks.octopods import SharedSession

    await SharedSession.acquire().release()
