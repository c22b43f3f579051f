"""
The wait engine (in ``triggers/octopods.py``): its rules alone, then one table run through every mode
that drives it.

The engine is pure, so its unit tests feed it answers and a clock; the shared table then runs the
same simulated deliveries through the trigger's ``run()`` and the sensor's ``poke()``, which must
end alike.
"""

from __future__ import annotations

import asyncio
import json as json_module
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_octopods import models
from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsTimeoutError,
    OctopodsTransientError,
)
from airflow_provider_octopods.models import SmsStatus, validate_message_id, validate_message_ids
from airflow_provider_octopods.sensors.octopods import (
    OctopodsSmsDeliverySensor,
    OctopodsWhatsAppDeliverySensor,
)
from airflow_provider_octopods.testing import Reply, Status
from airflow_provider_octopods.triggers import octopods as _wait
from airflow_provider_octopods.triggers.octopods import (
    DONE,
    ERROR,
    TIMEOUT,
    OctopodsSmsDeliveryTrigger,
    PollSchedule,
    WaitEngine,
    deadline,
    seconds,
    statuses_from_event,
)

SCHEDULE = PollSchedule(initial_delay=1.0, poll_interval=2.0, backoff_factor=2.0, max_poll_interval=5.0)


def _status(message_id: int, status: str, **kwargs: object) -> SmsStatus:
    return SmsStatus(message_id, status, **kwargs)  # type: ignore[arg-type]


# -- the schedule and the durations ------------------------------------------------------------


def test_schedule_grows_to_its_cap():
    delays = SCHEDULE.delays()
    assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_the_trigger_schedule_is_the_engine_schedule():
    trigger = OctopodsSmsDeliveryTrigger(
        1, poll_interval=2, initial_delay=1, backoff_factor=2, max_poll_interval=5
    )
    delays = trigger.poll_delays()
    assert [next(delays) for _ in range(4)] == [1.0, 2.0, 4.0, 5.0]


@pytest.mark.parametrize("value", [0, 0.0, timedelta(0)])
def test_a_zero_poll_interval_is_refused_at_construction(value):
    """Issue 10 #7: 0 x factor stays 0, a busy loop of thousands of polls a second."""
    with pytest.raises(OctopodsInputError, match=r"Invalid poll_interval: got 0 s; pass more than 0 seconds"):
        OctopodsSmsDeliveryTrigger(1, poll_interval=value)
    with pytest.raises(OctopodsInputError, match="Invalid poke_interval"):
        OctopodsSmsDeliverySensor(task_id="wait", message_id=1, poke_interval=value)


def test_fractions_of_a_second_stay_allowed():
    assert PollSchedule.of(poll_interval=0.01, initial_delay=0).poll_interval == 0.01


@pytest.mark.parametrize(
    ("value", "expected"),
    [(timedelta(minutes=2), 120.0), (3, 3.0), (0.5, 0.5), (timedelta(milliseconds=10), 0.01)],
)
def test_durations_are_seconds_or_timedeltas(value, expected):
    assert seconds(value, "timeout") == expected


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "10", None])
def test_bad_durations_name_the_field(value):
    with pytest.raises(OctopodsInputError, match="Invalid timeout"):
        seconds(value, "timeout")


def test_durations_are_reexported_from_the_models():
    assert seconds is models.seconds and deadline is models.deadline


@pytest.mark.parametrize(
    "value",
    [models.MAX_SECONDS + 1, timedelta(days=3651), timedelta(days=365 * 100), 1e300, float("inf")],
)
def test_a_duration_above_ten_years_is_refused_clearly(value):
    """Defect 9: a duration past ten years made a deadline Airflow cannot store."""
    with pytest.raises(
        OctopodsInputError, match=r"^Invalid timeout: got .* s; pass at most 315360000 s \(ten years\)\.$"
    ):
        models.seconds(value, "timeout")


def test_ten_years_exactly_is_still_a_duration():
    assert models.MAX_SECONDS == 10 * 365 * 24 * 3600
    assert models.seconds(models.MAX_SECONDS, "timeout") == models.MAX_SECONDS
    assert models.seconds(timedelta(days=3650), "timeout") == models.MAX_SECONDS


def _sensor(**kwargs):
    return OctopodsSmsDeliverySensor(task_id="wait", message_id=1, **kwargs)


def _operator(**kwargs):
    from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator

    return OctopodsSendSmsOperator(task_id="send", destination_phone="+12015550123", body="hi", **kwargs)


@pytest.mark.parametrize(("build", "interval"), [(_sensor, "poke_interval"), (_operator, "poll_interval")])
def test_timedeltas_are_taken_everywhere_a_duration_is(build, interval):
    """Issue 10 #9: timedelta arguments crashed at run time with a retryable TypeError."""
    durations = {
        interval: timedelta(seconds=10),
        "timeout": timedelta(hours=1),
        "initial_delay": timedelta(seconds=5),
        "max_poll_interval": timedelta(minutes=1),
    }
    task = build(**durations)
    assert {name: getattr(task, name) for name in durations} == {
        interval: 10.0,
        "timeout": 3600.0,
        "initial_delay": 5.0,
        "max_poll_interval": 60.0,
    }


def test_the_trigger_takes_timedeltas():
    trigger = OctopodsSmsDeliveryTrigger(
        1, poll_interval=timedelta(seconds=10), max_poll_interval=timedelta(minutes=1)
    )
    assert (trigger.poll_interval, trigger.max_poll_interval) == (10.0, 60.0)


@pytest.mark.parametrize(("build", "interval"), [(_sensor, "poke_interval"), (_operator, "poll_interval")])
def test_a_task_with_a_duration_above_ten_years_is_refused_when_built(build, interval):
    """Defect 9: refused when the DAG file builds the task, not when it runs."""
    with pytest.raises(OctopodsInputError, match=r"^Invalid timeout: .*at most 315360000 s \(ten years\)"):
        build(timeout=timedelta(days=3651))
    with pytest.raises(OctopodsInputError, match=rf"^Invalid {interval}: .*\(ten years\)"):
        build(**{interval: timedelta(days=3651)})
    with pytest.raises(OctopodsInputError, match=r"^Invalid max_poll_interval: .*\(ten years\)"):
        OctopodsSmsDeliveryTrigger(1, max_poll_interval=models.MAX_SECONDS * 2)


# -- the deadline --------------------------------------------------------------------------------


@pytest.fixture
def tokyo(monkeypatch):
    """The machine's local time is Tokyo's (UTC+9) for the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_a_naive_end_time_is_utc():
    """Issue 10 #10: a naive deadline was read as the machine's local time (Tokyo: 9 h early)."""
    expected = datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp()
    assert deadline(datetime(2030, 1, 1, 12)) == expected
    assert OctopodsSmsDeliveryTrigger(1, end_time=datetime(2030, 1, 1, 12)).end_time == expected


@pytest.mark.parametrize(
    "text",
    [
        "2030-01-01T12:00:00Z",
        "2030-01-01T12:00:00",
        "2030-01-01 14:00:00+02:00",
        "2030-01-01T12:00:00.000+00:00",
    ],
)
def test_an_iso_end_time_parses(text):
    assert (
        OctopodsSmsDeliveryTrigger(1, end_time=text).end_time
        == datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize("text", ["tomorrow", "12:00", "P1D"])
def test_an_unreadable_end_time_names_the_field(text):
    with pytest.raises(OctopodsInputError, match="Invalid end_time"):
        deadline(text)


@pytest.mark.parametrize(
    "value",
    [
        datetime.max.replace(tzinfo=UTC),
        "6000-01-01T00:00:00Z",
        datetime(5200, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31),
        -1,
        1e11,
    ],
    ids=["datetime-max", "iso-6000", "year-5200", "before-1970", "negative", "too-far"],
)
def test_an_end_time_no_trigger_could_rebuild_is_refused_when_built(value):
    # Regression: a datetime or ISO text out of range built a trigger whose serialized kwargs
    # could not rebuild it (the range was checked on numbers only), so the triggerer failed the task.
    with pytest.raises(
        OctopodsInputError, match=r"^Invalid end_time: got .*from 1970 to 5138 \(None: no deadline\)"
    ):
        OctopodsSmsDeliveryTrigger(1, end_time=value)


@pytest.mark.parametrize("value", [datetime(5138, 1, 1, tzinfo=UTC), "1970-01-02", 0, timedelta(days=1)])
def test_every_end_time_a_trigger_takes_survives_its_serialize_round_trip(value):
    if isinstance(value, timedelta):
        value = datetime.now(UTC) + value
    trigger = OctopodsSmsDeliveryTrigger(1, end_time=value)
    classpath, kwargs = trigger.serialize()
    assert json_module.loads(json_module.dumps(kwargs)) == kwargs
    assert OctopodsSmsDeliveryTrigger(**kwargs).serialize() == (classpath, kwargs)


# -- the engine, fed by hand ---------------------------------------------------------------------


def test_engine_sleeps_the_schedule_and_the_deadline_shortens_it():
    engine = WaitEngine([1], SCHEDULE, end_time=100.5)
    assert engine.sleep_for(now=0.0) == 1.0
    assert engine.sleep_for(now=100.0) == 0.5
    assert engine.request_budget(now=100.0) == 0.5 + _wait.DEADLINE_GRACE


def test_engine_finishes_when_every_message_is_final_in_input_order():
    engine = WaitEngine([2, 1], SCHEDULE)
    step = engine.feed([_status(2, "queued"), _status(1, "delivered")], now=0.0)
    assert step.event is None and step.delay == 2.0
    assert engine.pending == [2]  # a final status is not asked again
    step = engine.feed([_status(2, "delivered")], now=2.0)
    assert step.event is not None and step.event["status"] == DONE
    assert [s.message_id for s in statuses_from_event(step.event, None)] == [2, 1]


def test_engine_backs_off_on_transient_trouble_honouring_retry_after():
    engine = WaitEngine([1], SCHEDULE)
    step = engine.feed([OctopodsTransientError("slow", retry_after=4.5, status_code=429)], now=0.0)
    assert step.event is None and step.delay >= 4.5
    assert engine.failures == 1 and engine.is_backing_off(now=4.0)
    step = engine.feed([_status(1, "queued")], now=5.0)
    assert engine.failures == 0 and not engine.is_backing_off(now=5.0)
    assert step.delay == 2.0  # an error does not advance the schedule


def test_engine_times_out_at_the_deadline_naming_the_last_status():
    engine = WaitEngine([1, 2], SCHEDULE, end_time=10.0)
    step = engine.feed([_status(1, "sent"), OctopodsTransientError("HTTP 503")], now=10.0)
    assert step.event is not None and step.event["status"] == TIMEOUT
    with pytest.raises(
        OctopodsTimeoutError, match=r"SMS 1: last status 'sent'; SMS 2: no status seen\. Last error: HTTP 503"
    ):
        statuses_from_event(step.event, 10)


def test_engine_stops_on_a_permanent_error():
    engine = WaitEngine([1], SCHEDULE)
    step = engine.feed([OctopodsAuthError("Octopods rejected the key", status_code=401)], now=0.0)
    assert step.event is not None and step.event["status"] == ERROR
    with pytest.raises(OctopodsAuthError, match="rejected the key"):
        statuses_from_event(step.event, None)


def test_engine_warns_once_per_unknown_status():
    engine = WaitEngine([1, 2], SCHEDULE)
    first = engine.feed([_status(1, "scheduled"), _status(2, "scheduled")], now=0.0)
    second = engine.feed([_status(1, "scheduled"), _status(2, "paused")], now=2.0)
    warnings = [args for level, _, args in first.logs + second.logs if level == logging.WARNING]
    assert warnings == [("SMS 1", "scheduled"), ("SMS 2", "paused")]


def test_engine_logs_at_info_on_change_and_at_debug_otherwise():
    engine = WaitEngine([1], SCHEDULE)
    levels = [
        engine.feed([_status(1, s)], now=t).logs[-1][0] for t, s in enumerate(["queued", "queued", "sent"])
    ]
    assert levels == [logging.INFO, logging.DEBUG, logging.INFO]
    assert (
        engine.feed([_status(1, "sent")], now=_wait.STILL_WAITING_LOG_INTERVAL + 2).logs[-1][0]
        == logging.INFO
    )


def test_a_crash_becomes_an_error_event_naming_the_messages():
    event = WaitEngine([7, 8], SCHEDULE).crashed(RuntimeError("boom"))
    with pytest.raises(
        OctopodsError, match=r"The wait on SMS 7, 8 stopped on an unexpected error: RuntimeError\('boom'\)"
    ):
        statuses_from_event(event, None)


def test_events_of_0_1_0_still_parse():
    """The payload written by 0.1.0's trigger, as stored in a metadata DB before an upgrade."""
    done = {
        "status": "done",
        "message_ids": [4829174],
        "statuses": [
            {
                "message_id": 4829174,
                "status": "delivered",
                "phone_number": "+12015550123",
                "sent_at": "2026-04-24T10:23:45+00:00",
                "delivered_at": "2026-04-24T10:23:50+00:00",
                "failure_reason": None,
                "request_id": "r-1",
            }
        ],
        "message": "1 SMS reached a final status.",
    }
    (status,) = statuses_from_event(done, None)
    assert status.is_delivered and status.delivered_at == datetime(2026, 4, 24, 10, 23, 50, tzinfo=UTC)
    timeout = {
        "status": "timeout",
        "message_ids": [1],
        "statuses": [None],
        "message": "deadline passed",
        "pending": [1],
        "last_error": None,
    }
    with pytest.raises(OctopodsTimeoutError, match="SMS 1: no status seen"):
        statuses_from_event(timeout, 60)


def test_a_trigger_serialized_by_0_1_0_deserializes():
    kwargs = {
        "message_id": 4829174,
        "octopods_conn_id": "sms",
        "poll_interval": 10.0,
        "end_time": 1.8e9,
        "message_ids": None,
        "initial_delay": 5.0,
        "max_poll_interval": 60.0,
        "backoff_factor": 1.5,
        "max_concurrency": 10,
    }
    classpath, again = OctopodsSmsDeliveryTrigger(**kwargs).serialize()
    assert classpath == "airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger"
    assert again == {**kwargs, "wait_for": "delivered"}  # 0.2 adds what it waits for


# -- status variants ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["READ", "read", "Read"])
def test_read_means_delivered(raw):
    status = SmsStatus.from_api({"message_id": 1, "status": raw})
    assert status.is_terminal and status.is_delivered and not status.is_failed


def test_unknown_means_keep_polling_without_a_warning():
    status = SmsStatus.from_api({"message_id": 1, "status": "UNKNOWN"})
    assert not status.is_terminal and status.is_known


def test_status_message_stands_in_for_a_missing_failure_reason():
    body = {"message_id": 1, "status": "FAILED", "status_message": "Number ported"}
    assert SmsStatus.from_api(body).failure_reason == "Number ported"
    assert SmsStatus.from_api({**body, "failure_reason": "Blocked"}).failure_reason == "Blocked"


# -- message ids: every shape an upstream task hands over -----------------------------------------


class _Lazy(Sequence):
    """A read-only sequence that is no list, as Airflow's LazyXComSequence."""

    def __init__(self, items: list) -> None:
        self._items = items

    def __getitem__(self, index):  # type: ignore[override]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


@pytest.mark.parametrize(
    "value",
    [
        _Lazy([1, "2"]),
        (1, 2),
        iter([1, 2]),
        [{"message_id": 1, "request_id": "a"}, {"message_id": 2}],
        _Lazy([{"message_id": 1}, {"message_id": "2"}]),
        "['1', '2']",
        '["1", "2"]',
        "[1, 2, 1]",
        "[{'message_id': 1, 'request_id': 'a'}, {'message_id': 2, 'request_id': None}]",
        "1, 2",
    ],
)
def test_message_ids_take_every_shape_of_upstream_output(value):
    """Issue 10 #6: mapped output, the send operator's XCom, rendered lists."""
    assert validate_message_ids(value) == [1, 2]


@pytest.mark.parametrize(
    "value", [{"message_id": 4829174, "request_id": "r"}, "{'message_id': 4829174, 'request_id': 'r'}"]
)
def test_message_id_takes_the_send_operators_xcom(value):
    assert validate_message_id(value) == 4829174


@pytest.mark.parametrize("value", [{"id": 1}, "{'id': 1}", b"1,2", {"message_id": "../1"}])
def test_other_shapes_are_still_refused_clearly(value):
    with pytest.raises(OctopodsInputError, match="Invalid message_id"):
        validate_message_ids([value])


class _CountingInt(int):
    comparisons = 0

    def __eq__(self, other: object) -> bool:
        type(self).comparisons += 1
        return int.__eq__(self, other)

    __hash__ = int.__hash__


def test_dedup_is_linear():
    """Issue 10 #13: ``not in list`` made 50,000 ids take seconds inside the triggerer's loop."""
    ids = [_CountingInt(i) for i in range(1, 2001)]
    assert validate_message_ids(ids) == list(range(1, 2001))
    assert _CountingInt.comparisons < 10 * len(ids)  # was ~n²/2 = 2,000,000
    assert len(validate_message_ids(list(range(1, 50_001)) * 2)) == 50_000


# -- one table through both loops: the trigger's run() and the sensor's poke() --------------------

#: Each case: the simulated answers, then the outcome both loops must reach.
CASES = {
    "delivered": ((["queued", "sent", "delivered"]), ("delivered", None)),
    "read": ((["sent", "READ"]), ("read", None)),
    "unknown then delivered": ((["UNKNOWN", "unknown", "DELIVERED"]), ("delivered", None)),
    "failed with status_message": (
        [Reply(200, {"message_id": 0, "status": "FAILED", "status_message": "Number ported"})],
        (None, "failure_reason: Number ported"),
    ),
    "transient then delivered": (
        ([Reply(503), Reply(429, {}, {"Retry-After": "0"}), "delivered"]),
        ("delivered", None),
    ),
}


def _script(simulator, steps: list) -> int:
    message_id = simulator.add_message(*[s for s in steps if isinstance(s, (str, Status))] or ["queued"])
    replies = [s for s in steps if isinstance(s, Reply)]
    if replies:
        fixed = [
            Reply(r.status, {**r.body, "message_id": message_id}, r.headers) if r.body else r for r in replies
        ]
        simulator.inject(*fixed)
    return message_id


def _first_event(trigger: OctopodsSmsDeliveryTrigger) -> dict:
    """Run ``trigger`` in a new event loop until its first event; return the payload."""

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(first(), 10))


def _through_trigger(message_id: int) -> dict:
    trigger = OctopodsSmsDeliveryTrigger(
        message_id,
        end_time=datetime.now(UTC) + timedelta(seconds=10),
        poll_interval=0.01,
        initial_delay=0,
        max_poll_interval=0.05,
    )

    event = _first_event(trigger)
    return OctopodsSmsDeliverySensor(task_id="wait", message_id=message_id).execute_complete({}, event)


def _through_poke(message_id: int) -> dict:
    sensor = OctopodsSmsDeliverySensor(
        task_id="wait", message_id=message_id, poke_interval=0.01, max_poll_interval=0.05
    )
    for _ in range(200):
        result = sensor.poke({})
        if result.is_done:
            return result.xcom_value
        asyncio.run(asyncio.sleep(0.01))
    raise AssertionError("the poke loop never finished")


@pytest.mark.parametrize("drive", [_through_trigger, _through_poke], ids=["trigger", "poke"])
@pytest.mark.parametrize("case", list(CASES))
def test_both_loops_end_alike(case, drive, octopods_conn):
    steps, (status, error) = CASES[case]
    message_id = _script(octopods_conn, list(steps))
    if error is None:
        assert drive(message_id)["status"] == status
    else:
        with pytest.raises(OctopodsDeliveryError, match=error):
            drive(message_id)


def test_fail_fast_ends_the_wait_at_the_first_failure_naming_the_others_not_awaited():
    engine = WaitEngine([1, 2, 3], SCHEDULE, fail_fast=True)
    step = engine.feed(
        [_status(1, "sent"), _status(2, "failed", failure_reason="gone"), _status(3, "sent")], 0.0
    )

    assert step.event is not None and step.event["pending"] == [1, 3]
    with pytest.raises(
        OctopodsDeliveryError, match=r"(?s)SMS 2 was not delivered.*gone.*fail_fast\): 2 other"
    ):
        statuses_from_event(step.event, 60)


def test_without_fail_fast_a_failure_waits_for_the_others():
    engine = WaitEngine([1, 2], SCHEDULE)
    step = engine.feed([_status(1, "sent"), _status(2, "failed")], 0.0)
    assert step.event is None and engine.pending == [1]


def test_a_message_that_ends_without_success_gets_its_own_warning_line_once():
    engine = WaitEngine([1, 2], SCHEDULE)
    failed = _status(2, "failed", phone_number="+12015550101", failure_reason="Not a mobile subscriber.")
    first = engine.feed([_status(1, "sent"), failed], 0.0)
    again = engine.feed([_status(1, "sent")], 3.0)
    lines = [(text % args) for level, text, args in first.logs + again.logs if level == logging.WARNING]
    assert lines == ["SMS 2 to +12015550101 failed: Not a mobile subscriber."]


def test_a_batch_wait_logs_a_heartbeat_with_counts_at_most_once_a_minute():
    engine = WaitEngine([1, 2, 3], SCHEDULE, end_time=3600.0)
    first = engine.feed([_status(1, "delivered"), _status(2, "sent"), _status(3, "failed")], 0.0)
    soon = engine.feed([_status(2, "sent")], 30.0)
    later = engine.feed([_status(2, "sent")], 61.0)

    assert [s.logs[-1][0] for s in (first, soon, later)] == [logging.INFO, logging.DEBUG, logging.INFO]
    _, text, args = later.logs[-1]
    assert (text % args).startswith(
        "Waiting on 1 of 3 SMS: 1 delivered, 1 failed; 0.0 final/s; 59 min left"
    ), text % args


def test_a_trigger_keeps_fail_fast_in_its_kwargs_only_when_set():
    plain = OctopodsSmsDeliveryTrigger(message_ids=[1, 2]).serialize()[1]
    fast = OctopodsSmsDeliveryTrigger(message_ids=[1, 2], fail_fast=True).serialize()[1]
    assert "fail_fast" not in plain and fast["fail_fast"] is True
    assert OctopodsSmsDeliveryTrigger(**fast).fail_fast


def test_an_unreadable_list_makes_the_round_poll_by_id_and_a_busy_one_is_skipped_for_a_while():
    from airflow_provider_octopods.exceptions import OctopodsBadRequestError
    from airflow_provider_octopods.models import WHATSAPP

    too_large = OctopodsTransientError("Octopods sent an answer larger than ...", status_code=200)
    throttled = OctopodsTransientError("Octopods answered HTTP 429", status_code=429)
    assert _wait.listed_results([1, 2], too_large) == ({}, [1, 2], 0)
    assert _wait.listed_results([1, 2], OctopodsBadRequestError("none yet", status_code=400)) == (
        {},
        [1, 2],
        0,
    )
    assert _wait.listed_results([1, 2], throttled) == ({1: throttled, 2: throttled}, [], 2)
    # The list says who still waits; a final status from it is asked for by id (for its timestamps).
    listing = {1: _status(1, "sent"), 2: _status(2, "delivered"), 3: _status(3, "read")}
    assert _wait.listed_results([1, 2, 3, 4], listing) == ({1: listing[1]}, [2, 3, 4], 3)
    assert _wait.listed_results([1, 2, 3], listing, "read") == ({1: listing[1], 2: listing[2]}, [3], 3)

    engine = WaitEngine([1, 2], SCHEDULE, channel=WHATSAPP)
    assert engine.wants_list()
    engine.listed(0)  # the newest 100 sends held none of ours: a busy workspace
    asked = [engine.wants_list() for _ in range(_wait.LIST_RETRY_ROUNDS)]
    assert asked == [False] * (_wait.LIST_RETRY_ROUNDS - 1) + [True]
    engine.listed(1)
    assert engine.wants_list() and not WaitEngine([1], SCHEDULE, channel=WHATSAPP).wants_list()


def test_a_list_answer_may_be_larger_than_a_status_answer():
    from airflow_provider_octopods.hooks.octopods import (
        MAX_RESPONSE_BYTES,
        Answer,
        ApiSettings,
        list_call,
        read_answer,
        status_call,
    )

    items = [{"message_id": i, "status": "sent", "message_content": "x" * 700} for i in range(1, 101)]
    body = json_module.dumps({"messages": items}).encode()
    assert len(body) > MAX_RESPONSE_BYTES
    settings = ApiSettings("https://app.octopods.io", key="k")
    assert len(read_answer(list_call(), Answer(200, {}, body), settings)) == 100
    with pytest.raises(OctopodsTransientError, match="larger than") as refused:
        read_answer(status_call(1), Answer(200, {}, body), settings)
    assert refused.value.status_code == 200


def test_a_message_that_keeps_failing_does_not_hide_the_others_in_either_loop(octopods_conn):
    # Regression: the poke stopped at the first error, so a delivered message after one that
    # always answered 500 was never asked for; the trigger asked for both.
    bad = octopods_conn.add_message(Reply(500, {"error": "internal"}))
    good = octopods_conn.add_message("delivered")
    trigger = OctopodsSmsDeliveryTrigger(
        message_ids=[bad, good],
        end_time=time.time() + 1.0,
        poll_interval=0.05,
        initial_delay=0,
        max_poll_interval=0.1,
    )

    event = _first_event(trigger)
    sensor = OctopodsSmsDeliverySensor(
        task_id="wait", message_ids=[bad, good], poke_interval=0.01, max_poll_interval=0.05
    )
    for _ in range(3):
        assert not sensor.poke({}).is_done

    assert event["status"] == TIMEOUT and event["pending"] == [bad]
    assert sensor.engine.pending == [bad]
    assert sensor.engine.last[good].status == "delivered"


def test_reschedule_mode_never_pokes_sooner_than_poke_interval_after_trouble(octopods_conn):
    # Regression: each reschedule starts a new wait, whose first backoff is about 1 s: an outage
    # made a sensor with poke_interval=60 poll 60 times as often.
    message_id = octopods_conn.add_message(Reply(503))
    for _ in range(3):  # each reschedule builds the sensor anew
        sensor = OctopodsSmsDeliverySensor(
            task_id="wait", message_id=message_id, mode="reschedule", poke_interval=60
        )
        assert not sensor.poke({}).is_done
        assert sensor.poke_interval == 60


@pytest.mark.parametrize(
    ("sensor_class", "sent_on"),
    [(OctopodsSmsDeliverySensor, "whatsapp"), (OctopodsWhatsAppDeliverySensor, "sms")],
)
def test_a_send_of_the_other_channel_is_refused_before_any_request(sensor_class, sent_on, octopods_conn):
    # Regression: the SMS sensor polled the SMS endpoint for a WhatsApp send's id.
    xcom = {"message_id": 4829174, "request_id": "r", "channel": sent_on}
    for kwargs in ({"message_id": xcom}, {"message_ids": [xcom]}, {"message_id": str(xcom)}):
        sensor = sensor_class(task_id="wait", **kwargs)
        with pytest.raises(OctopodsInputError, match=rf"is the XCom of a {sent_on} send, but this waits on"):
            sensor.execute({})
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize("value", ["x", "4", 0, -2, True, 2.5])
def test_a_max_concurrency_that_is_no_count_is_refused_when_built(value):
    # Regression: the sensor took "x" and failed later, deferred, with a bare ValueError.
    for build in (
        lambda: OctopodsSmsDeliverySensor(task_id="wait", message_ids=[1, 2], max_concurrency=value),
        lambda: OctopodsSmsDeliveryTrigger(message_ids=[1, 2], max_concurrency=value),
    ):
        with pytest.raises(
            OctopodsInputError, match=r"^Invalid max_concurrency: got .*; pass a whole number from 1 up\."
        ):
            build()
