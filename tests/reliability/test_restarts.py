"""
Restarts and rotations while a wait is in progress.

- Triggerer restart: a trigger is serialized mid-wait, its run task cancelled and its event loop
  closed; a new trigger is built from the serialized kwargs (after a JSON round trip, as the
  triggerer stores them) on a new event loop. It resumes and keeps the original absolute deadline.
- Key rotation: the connection's key changes in Airflow (``AIRFLOW_CONN_OCTOPODS_DEFAULT``) and at
  Octopods (``rotate_key``) while a sensor waits; the next poll gets an auth error, the hook reads
  the connection again, and the wait goes on with the new key: sync hook (poke mode) and async
  hook (trigger).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import pytest

from airflow_provider_octopods.testing import Status
from tests.conftest import TEST_API_KEY
from tests.reliability.waits import first_event_with_lag, make_trigger, poke_wait

#: The key after rotation: as distinctive as the first, so a leak of either is easy to grep.
ROTATED_KEY = "octo-rotated-key-2b9d4e6f8a0c1e3f5a7b"


def status_requests(sim: Any, message_id: int) -> int:
    return sim.request_count(f"/api/v1/sms/messages/{message_id}")


async def run_until_polled(trigger: Any, sim: Any, message_id: int, polls: int) -> None:
    """Run ``trigger`` until the simulator has seen ``polls`` polls, then cancel it like a dying triggerer."""
    from airflow_provider_octopods.hooks.octopods import SharedSession

    async def drain() -> None:
        async for _ in trigger.run():
            raise AssertionError("the trigger fired before the restart")

    task = asyncio.create_task(drain())
    while status_requests(sim, message_id) < polls:
        assert not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop() not in SharedSession._by_loop, "the shared session was left open"


def rebuild(serialized: tuple[str, dict[str, Any]]) -> Any:
    """Rebuild a trigger as the triggerer does: import the classpath, call it with the stored kwargs."""
    from airflow.providers.common.compat.module_loading import import_string

    classpath, kwargs = serialized
    stored = json.loads(json.dumps(kwargs))  # the triggerer keeps kwargs in its database
    return import_string(classpath)(**stored)


@pytest.mark.parametrize("outcome", ["delivered", "deadline"])
def test_trigger_resumes_after_a_triggerer_restart_with_its_original_deadline(
    sim, outcome, capfd, record_property
):
    if outcome == "delivered":
        message_id = sim.add_message(timeline=[(0, Status("queued")), (1.0, Status("delivered"))])
        timeout = 5.0
    else:
        message_id = sim.add_message("queued")
        timeout = 1.5
    original = make_trigger(message_id, timeout)

    asyncio.run(run_until_polled(original, sim, message_id, polls=3))
    serialized = original.serialize()
    polls_before = status_requests(sim, message_id)
    time.sleep(0.2)  # the triggerer is down for a moment

    resumed = rebuild(serialized)
    assert resumed.end_time == original.end_time
    assert resumed.serialize() == serialized
    event, lag = asyncio.run(first_event_with_lag(resumed))
    ended = time.time()

    assert status_requests(sim, message_id) > polls_before, "the resumed trigger polls again"
    assert lag < 0.2
    if outcome == "delivered":
        assert event["status"] == "done"
        assert event["statuses"][0]["status"] == "delivered"
    else:
        # The deadline is the original one, not 1.5 s after the restart.
        assert event["status"] == "timeout"
        assert event["statuses"][0]["status"] == "queued"
        assert original.end_time <= ended <= original.end_time + 0.5
        record_property(
            "measure:Triggerer restart mid-wait: the resumed trigger's timeout event, after the original deadline",
            f"{ended - original.end_time:.2f} s (deadline 1.5 s after the first start; 0.2 s of downtime)",
        )
    out, err = capfd.readouterr()
    assert "Unclosed" not in out + err, "a session or connector of the cancelled run leaked"


def rotate(sim: Any, monkeypatch_env: dict[str, str]) -> None:
    """Rotate the key at Octopods and in Airflow's connection, as an operator would."""
    conn = json.loads(monkeypatch_env["AIRFLOW_CONN_OCTOPODS_DEFAULT"])
    os.environ["AIRFLOW_CONN_OCTOPODS_DEFAULT"] = json.dumps({**conn, "password": ROTATED_KEY})
    sim.rotate_key(ROTATED_KEY)


def assert_rotation_picked_up(sim: Any, message_id: int, rotated_at: float, output: str) -> None:
    with sim._lock:
        after = [r for r in sim.requests if r.at >= rotated_at and r.path.endswith(f"/{message_id}")]
    # One poll met the revoked key, the hook read the connection again and repeated it at once.
    assert len(after) >= 2
    assert output.count("changed; retrying with it") == 1
    assert TEST_API_KEY not in output
    assert ROTATED_KEY not in output


def test_key_rotated_while_the_poke_sensor_waits(sim, capfd):
    message_id = sim.add_message(timeline=[(0, Status("queued")), (0.8, Status("delivered"))])
    env = dict(os.environ)
    rotated_at: list[float] = []

    def rotate_later() -> None:
        rotated_at.append(time.time())
        rotate(sim, env)

    timer = threading.Timer(0.3, rotate_later)
    timer.start()
    result = poke_wait(message_id, timeout=5)
    timer.join()

    assert result["status"] == "delivered"
    out, err = capfd.readouterr()
    assert_rotation_picked_up(sim, message_id, rotated_at[0], out + err)


def test_key_rotated_while_the_trigger_waits(sim, capfd, record_property):
    message_id = sim.add_message(timeline=[(0, Status("queued")), (0.8, Status("delivered"))])
    env = dict(os.environ)
    trigger = make_trigger(message_id, 5.0)

    async def wait_and_rotate() -> tuple[dict[str, Any], float]:
        waiting = asyncio.create_task(first_event_with_lag(trigger))
        await asyncio.sleep(0.3)
        rotated_at = time.time()
        rotate(sim, env)
        event, lag = await waiting
        assert lag < 0.2
        return event, rotated_at

    event, rotated_at = asyncio.run(wait_and_rotate())

    assert event["status"] == "done", event
    assert event["statuses"][0]["status"] == "delivered"
    out, err = capfd.readouterr()
    assert_rotation_picked_up(sim, message_id, rotated_at, out + err)
    assert ROTATED_KEY not in json.dumps(event) + json.dumps(trigger.serialize())
    with sim._lock:
        after = [r.at for r in sim.requests if r.at >= rotated_at]
    record_property(
        "measure:Key rotated mid-wait (trigger): the poll that met the revoked key, repeated with the new key",
        f"{(after[1] - after[0]) * 1000:.0f} ms later",
    )
