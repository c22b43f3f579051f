"""
``OctopodsSmsNotifier`` as task and DAG callbacks in real ``dag.test()`` runs, and called directly.

The notifier renders its templates with the callback's context, sends one SMS per call, and when
it cannot send it logs why and returns: a notification never raises into Airflow's callbacks.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_octopods.notifications.octopods import (
    OctopodsSmsNotifier,
    send_octopods_sms_notification,
)
from airflow_provider_octopods.testing import Reply
from airflow_provider_octopods.utils.segments import MAX_BODY_LENGTH, measure
from tests.conftest import DAG_TEST_FAILURE_CONTEXT_HAS_EXCEPTION, TEST_API_KEY, get_dag
from tests.test_dag_runs import assert_no_key_anywhere, run_dag

SEND = "/api/v1/sms/messages"
NOT_SENT = "The Octopods SMS notification was not sent: "
pytestmark = pytest.mark.usefixtures("airflow_db")


def _bodies(simulator) -> dict[str, str]:
    return {m.phone_number: m.body for m in simulator.messages.values()}


def _context(**values: object) -> dict[str, object]:
    """A callback context: Airflow always passes the DAG (None here); Airflow 2 requires the key."""
    return {"dag": None, **values}


def _output(capfd, caplog) -> str:
    out, err = capfd.readouterr()
    output = out + err + caplog.text
    assert TEST_API_KEY not in output
    return output


@DAG_TEST_FAILURE_CONTEXT_HAS_EXCEPTION
def test_task_and_dag_failure_callbacks_render_and_send_once_each(octopods_conn, capfd, caplog):
    conf = {"task_phone": "+12015550123", "dag_phone": "+12015550124"}

    results, output = run_dag("octopods_test_notifier", conf, capfd, caplog)

    assert results["nightly_report"] == ("failed", None)
    bodies = _bodies(octopods_conn)
    assert bodies["+12015550123"] == (
        "Task nightly_report of octopods_test_notifier failed: the report source is empty"
    )
    assert bodies["+12015550124"].startswith("DAG octopods_test_notifier failed in run manual__")
    assert octopods_conn.request_count(SEND) == 2  # one SMS per callback, each sent once
    assert NOT_SENT not in output


@DAG_TEST_FAILURE_CONTEXT_HAS_EXCEPTION
def test_failing_notifiers_log_and_never_raise_into_the_callbacks(octopods_conn, capfd, caplog):
    # The task's notifier hits an Octopods error (code 4), the DAG's has an invalid number.
    conf = {"task_phone": "+12015550140", "dag_phone": "not-a-phone"}

    results, output = run_dag("octopods_test_notifier", conf, capfd, caplog)

    assert results["nightly_report"] == ("failed", None)
    assert f"{NOT_SENT}Octopods' SMS provider failed (HTTP 400, error_code 4)" in output
    assert (
        f"{NOT_SENT}Invalid destination_phone: 'not-a-phone' holds characters a phone number does not"
        in output
    )
    assert "Callback failed for" not in output  # the DAG run's callback runner saw no exception
    assert "Failed to send notification" not in output  # nor did BaseNotifier
    assert octopods_conn.request_count(SEND) == 1  # the invalid number never reached Octopods
    assert octopods_conn.messages == {}


@pytest.mark.airflow3_only(
    reason="the task SDK's task runner (airflow.sdk.execution_time) arrived in Airflow 3"
)
@pytest.mark.parametrize(
    ("phone", "sent"),
    [("+12015550123", True), ("+12015550140", False)],
    ids=["sent", "octopods-error"],
)
def test_failure_callback_as_the_task_runner_calls_it(phone, sent, octopods_conn, capfd, caplog):
    # What Airflow 3's task runner does when a task fails (task_runner.main, every 3.x): put the
    # error in the context as ``exception``, then finalize() runs each on_failure_callback through
    # _run_task_state_change_callbacks, which logs "Failed to run task callback" if one raises.
    # dag.test() does the same only from Airflow 3.3, so on 3.1 and 3.2 this is the proof.
    import structlog
    from airflow.sdk.execution_time.task_runner import _run_task_state_change_callbacks

    dag = get_dag("octopods_test_notifier")
    task = dag.get_task("nightly_report")
    context = {
        "dag": dag,
        "ti": type("TI", (), {"task_id": task.task_id})(),
        "params": {"task_phone": phone},
        "exception": RuntimeError("the report source is empty"),
    }

    _run_task_state_change_callbacks(task, "on_failure_callback", context, structlog.get_logger("task"))

    output = _output(capfd, caplog)
    assert "Failed to run task callback" not in output
    assert octopods_conn.request_count(SEND) == 1
    if sent:
        assert _bodies(octopods_conn) == {
            phone: "Task nightly_report of octopods_test_notifier failed: the report source is empty"
        }
    else:
        assert f"{NOT_SENT}Octopods' SMS provider failed (HTTP 400, error_code 4)" in output


def test_one_notifier_renders_afresh_for_every_call(octopods_conn, capfd, caplog):
    notifier = OctopodsSmsNotifier(destination_phone="{{ phone }}", body="{{ task_id }} failed")

    notifier(_context(phone="+12015550123", task_id="extract"))
    notifier(_context(phone="+12015550124", task_id="load"))

    assert _bodies(octopods_conn) == {"+12015550123": "extract failed", "+12015550124": "load failed"}
    assert (notifier.destination_phone, notifier.body) == ("{{ phone }}", "{{ task_id }} failed")
    _output(capfd, caplog)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda sim: sim.revoke_key(), "Octopods rejected the Channel API key"),
        (lambda sim: sim.inject(Reply(503, "down")), "HTTP 503"),
        (lambda sim: sim.stop(), "Could not reach Octopods"),
    ],
    ids=["revoked-key", "server-error", "unreachable"],
)
def test_send_failures_are_logged_not_raised(setup, expected, octopods_conn, capfd, caplog):
    setup(octopods_conn)

    assert OctopodsSmsNotifier(destination_phone="+12015550123", body="x")(_context()) is None

    output = _output(capfd, caplog)
    assert NOT_SENT in output
    assert expected in output


def test_template_error_is_logged_not_raised_and_sends_nothing(octopods_conn, capfd, caplog):
    notifier = OctopodsSmsNotifier(destination_phone="+12015550123", body="{{ ti.task_id }")

    notifier(_context())

    output = _output(capfd, caplog)
    assert f"{NOT_SENT}TemplateSyntaxError" in output
    assert octopods_conn.request_count() == 0


def test_overlong_rendered_body_is_cut_to_the_limit_not_dropped(octopods_conn, capfd, caplog):
    OctopodsSmsNotifier(destination_phone="+12015550123", body="Failed: {{ error }}")(
        _context(error="x" * 5000)
    )

    (body,) = _bodies(octopods_conn).values()
    assert len(body) == MAX_BODY_LENGTH
    assert body.startswith("Failed: xxx") and body.endswith("...")
    output = _output(capfd, caplog)
    assert "has 5008 characters in 33 segment(s); sending its first 1597 characters, 11 segment(s)" in output


@pytest.mark.parametrize(
    ("error", "encoding", "room"),
    [("disk full " * 60, "GSM-7", 2 * 153), ("disk full 💥 " * 60, "UCS-2", 2 * 67)],
    ids=["gsm-7", "ucs-2"],
)
def test_max_segments_cuts_the_text_cleanly_at_a_segment_boundary(
    error, encoding, room, octopods_conn, capfd, caplog
):
    OctopodsSmsNotifier(destination_phone="+12015550123", body="Failed: {{ error }}", max_segments=2)(
        _context(error=error)
    )

    (body,) = _bodies(octopods_conn).values()
    cost = measure(body)
    assert (cost.encoding, cost.segments) == (encoding, 2)
    assert room - 20 < cost.units <= room  # the two segments are filled, less the last word
    assert body.endswith("...") and ("Failed: " + error).startswith(body[:-3])
    assert f"sending its first {len(body) - 3} characters, 2 segment(s) in {encoding}" in _output(
        capfd, caplog
    )


def test_a_number_with_a_trailing_newline_is_still_texted(octopods_conn, capfd, caplog):
    # A Variable edited in the UI often ends with a newline: the alert must go out, not be dropped.
    OctopodsSmsNotifier(destination_phone="{{ phone }}", body="down")(_context(phone="+1 201 555 0123\n"))

    assert _bodies(octopods_conn) == {"+12015550123": "down"}
    output = _output(capfd, caplog)
    assert NOT_SENT not in output
    assert "Sent the Octopods SMS notification: SMS 4829174 to +12015550123 (request_id" in output


def test_a_national_number_uses_the_notifier_or_connection_region(octopods_conn, monkeypatch, capfd, caplog):
    OctopodsSmsNotifier(destination_phone="07400 123456", body="a", default_region="GB")(_context())
    conn = {**octopods_conn.connection_extra(), "extra": {"default_region": "US"}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))
    OctopodsSmsNotifier(destination_phone="(201) 555-0124", body="b")(_context())

    assert _bodies(octopods_conn) == {"+447400123456": "a", "+12015550124": "b"}
    assert NOT_SENT not in _output(capfd, caplog)


ASYNC_NOTIFY = pytest.mark.airflow3_only(reason="BaseNotifier is awaitable (async_notify) only in Airflow 3")


@ASYNC_NOTIFY
async def test_async_notify_renders_and_sends(octopods_conn):
    await OctopodsSmsNotifier(
        destination_phone="+12015550123",
        body="Deadline missed by {{ dag_id }}",
        context=_context(dag_id="etl"),
    )

    assert _bodies(octopods_conn) == {"+12015550123": "Deadline missed by etl"}


@ASYNC_NOTIFY
async def test_async_notify_failure_is_logged_not_raised(octopods_conn, capfd, caplog):
    octopods_conn.revoke_key()

    await OctopodsSmsNotifier(destination_phone="+12015550123", body="x")

    assert "rotated or revoked" in _output(capfd, caplog)


def test_lowercase_alias_and_connection_id(octopods_conn, monkeypatch, capfd, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_ALERTS", json.dumps(octopods_conn.connection_extra()))

    send_octopods_sms_notification(
        destination_phone="+12015550123", body="hi", octopods_conn_id="octopods_alerts"
    )(_context())

    assert send_octopods_sms_notification is OctopodsSmsNotifier
    assert _bodies(octopods_conn) == {"+12015550123": "hi"}
    assert_no_key_anywhere(_output(capfd, caplog))


def test_example_dag_texts_the_on_call_phone_when_the_run_fails(octopods_conn, capfd, caplog):
    results, _ = run_dag("example_octopods_notifier", {"fail": True}, capfd, caplog)

    assert results["nightly_report"] == ("failed", None)
    (body,) = _bodies(octopods_conn).values()
    assert body.startswith("Airflow: DAG example_octopods_notifier failed (")
    assert ") in run manual__" in body
