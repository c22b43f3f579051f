"""
``OctopodsSmsNotifier`` as a Deadline Alert callback (Airflow 3.3), through Airflow's own code.

When a deadline is missed, the scheduler stores ``AsyncCallback(OctopodsSmsNotifier, kwargs)``
with a small context (``dag_run`` as the REST API shows it, ``deadline`` with its id and time)
and the triggerer runs it in a ``CallbackTrigger``. These tests run that very trigger against the
simulator: the notifier is built from the kwargs, awaited, renders the deadline's context and
sends one SMS; when it cannot send, the callback still ends without raising. The whole path in a
real deployment (scheduler, triggerer, PostgreSQL) is ``tests/e2e/test_deadline_alert.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_octopods.notifications.octopods import OctopodsSmsNotifier
from airflow_provider_octopods.testing import Reply
from tests.conftest import TEST_API_KEY

pytestmark = [
    pytest.mark.min_airflow(
        "3.3",
        reason="airflow.sdk exports AsyncCallback and DeadlineAlert, and CallbackTrigger runs them, from 3.3",
    ),
    pytest.mark.usefixtures("airflow_db"),
]

NOTIFIER_PATH = f"{OctopodsSmsNotifier.__module__}.{OctopodsSmsNotifier.__qualname__}"
DUE = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
PHONE = "+12015550123"


def _deadline_context() -> dict[str, Any]:
    """What ``Deadline.handle_miss`` puts in the callback's kwargs (``get_simple_context``)."""
    return {
        "dag_run": {
            "dag_id": "nightly_report",
            "dag_run_id": "scheduled__2026-12-01T06:00:00+00:00",
            "state": "running",
            "conf": {},
        },
        "deadline": {"id": "0193a5c2-0000-7000-8000-000000000001", "deadline_time": DUE},
    }


async def _run_callback(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Run Airflow's ``CallbackTrigger`` for our notifier, as the triggerer does; return its events."""
    from airflow.sdk import AsyncCallback
    from airflow.triggers.callback import CallbackTrigger

    callback = AsyncCallback(OctopodsSmsNotifier, kwargs=kwargs)  # validates it is awaitable
    assert callback.path == NOTIFIER_PATH
    trigger = CallbackTrigger(
        callback_path=callback.path, callback_kwargs={**kwargs, "context": _deadline_context()}
    )
    return [event.payload async for event in trigger.run()]


async def test_a_missed_deadline_sends_the_rendered_sms(octopods_conn):
    events = await _run_callback(
        {
            "destination_phone": PHONE,
            "body": "{{ dag_id }} / {{ run_id }} missed {{ deadline.deadline_time }} "
            "(run state {{ dag_run.state }})",
        }
    )

    assert [e["state"] for e in events] == ["running", "success"], events
    sent = [m for m in octopods_conn.messages.values() if m.phone_number == PHONE]
    assert len(sent) == 1
    assert sent[0].body == (
        "nightly_report / scheduled__2026-12-01T06:00:00+00:00 missed 2026-12-01 06:30:00+00:00 "
        "(run state running)"
    )


@pytest.mark.parametrize(
    ("kwargs", "inject", "expected"),
    [
        pytest.param(
            {"destination_phone": "555 not a number", "body": "late"},
            None,
            "destination_phone",
            id="invalid-number",
        ),
        pytest.param(
            {"destination_phone": PHONE, "body": "{{ deadline.no_such_key.deeper }}"},
            None,
            "UndefinedError",
            id="template-error",
        ),
        pytest.param(
            {"destination_phone": PHONE, "body": "late"},
            Reply(401, {"error": "Unauthorized"}),
            "Channel API key",
            id="rejected-key",
        ),
    ],
)
async def test_a_callback_that_cannot_send_logs_why_and_ends_without_raising(
    octopods_conn, capfd, caplog, kwargs, inject, expected
):
    if inject is not None:
        octopods_conn.inject(inject, times=2)

    events = await _run_callback(kwargs)

    # The callback itself succeeded (Airflow would otherwise log a traceback and mark it failed):
    # the reason the SMS was not sent is in the log, in a sentence.
    assert [e["state"] for e in events] == ["running", "success"], events
    out, err = capfd.readouterr()
    output = out + err + caplog.text
    assert "The Octopods SMS notification was not sent" in output
    assert expected in output
    assert TEST_API_KEY not in output
    assert not [m for m in octopods_conn.messages.values() if m.phone_number == PHONE]


def test_example_dag_declares_the_notifier_as_its_deadline_callback():
    from tests.conftest import ROOT, get_dag

    source = (ROOT / "example_dags" / "example_octopods_deadline_alert.py").read_text()
    assert "[START howto_deadline_alert_octopods_sms]" in source
    assert "[END howto_deadline_alert_octopods_sms]" in source

    dag = get_dag("example_octopods_deadline_alert")

    alerts = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert len(alerts) == 1
    callback = alerts[0].callback
    assert callback.path == NOTIFIER_PATH
    assert set(callback.kwargs) == {"destination_phone", "body", "octopods_conn_id"}
