"""
``OctopodsSendSmsOperator`` in real ``dag.test()`` runs against the simulator over real HTTP.

Each run checks the task state, the XCom, the error in the output, how many SMS were sent (POSTs
counted by the simulator) and that the API key appears nowhere (``run_dag`` greps the output,
the task logs and the metadata database).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
)
from airflow_provider_octopods.models import MAX_SECONDS, SmsStatus
from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor
from airflow_provider_octopods.testing import FAILURE_REASONS, Hang, Reply, Reset
from airflow_provider_octopods.triggers.octopods import OctopodsSmsDeliveryTrigger
from tests.conftest import AIRFLOW_VERSION, ROOT, TEST_API_KEY, get_dag
from tests.test_dag_runs import run_dag
from tests.test_trigger import first_event

SEND = "/api/v1/sms/messages"
MODES = ["worker", "deferrable"]
pytestmark = pytest.mark.usefixtures("airflow_db")


def posts(simulator) -> int:
    """How many sends the simulator served."""
    return sum(1 for r in simulator.requests if r.method == "POST" and r.path == SEND)


def test_send_only_returns_sent_sms_and_sends_once(octopods_conn, capfd, caplog):
    conf = {"destination_phone": "+12015550123", "body": "Your report is ready."}

    results, _ = run_dag("octopods_test_send_only", conf, capfd, caplog)

    state, xcom = results["send_sms"]
    assert state == "success"
    assert set(xcom) == {
        "message_id",
        "request_id",
        "channel_message_id",
        "destination_phone",
        "encoding",
        "segments",
    }
    assert (xcom["destination_phone"], xcom["encoding"], xcom["segments"]) == ("+12015550123", "GSM-7", 1)
    message = octopods_conn.messages[xcom["message_id"]]
    assert (message.phone_number, message.body) == ("+12015550123", "Your report is ready.")
    assert posts(octopods_conn) == 1
    assert octopods_conn.request_count() == 1  # no status poll without wait_for_delivery


@pytest.mark.parametrize("mode", MODES)
def test_send_and_wait_delivered_returns_final_status_and_sends_once(mode, octopods_conn, capfd, caplog):
    results, output = run_dag(
        f"octopods_test_send_and_wait_{mode}", {"destination_phone": "+12015550123"}, capfd, caplog
    )

    state, xcom = results["send_sms"]
    assert state == "success"
    assert xcom["status"] == "delivered"
    assert xcom["message_id"] in octopods_conn.messages
    assert xcom["delivered_at"].endswith("+00:00")
    assert posts(octopods_conn) == 1
    assert octopods_conn.request_count(f"{SEND}/{xcom['message_id']}") >= 1
    if mode == "deferrable":
        assert "[DAG TEST] running trigger in line" in output


@pytest.mark.parametrize(
    ("mode", "phone", "status", "reason"),
    [
        ("worker", "+12015550101", "failed", FAILURE_REASONS["invalid_number"]),
        ("deferrable", "+12015550103", "undelivered", FAILURE_REASONS["out_of_coverage"]),
        ("deferrable", "+12015550104", "failed", FAILURE_REASONS["sender_not_approved"]),
        ("worker", "+12015550102", "undelivered", FAILURE_REASONS["carrier_blocked"]),
    ],
)
def test_failed_delivery_fails_without_retry_or_resend(
    mode, phone, status, reason, octopods_conn, capfd, caplog
):
    results, output = run_dag(
        f"octopods_test_send_and_wait_{mode}", {"destination_phone": phone}, capfd, caplog
    )

    assert results["send_sms"] == ("failed", None)
    (message_id,) = octopods_conn.messages
    assert "OctopodsDeliveryError" in output
    assert f"SMS {message_id} was not delivered: status '{status}', failure_reason: {reason}" in output
    assert posts(octopods_conn) == 1  # the DAG allows a retry: a failed delivery must not use it


@pytest.mark.parametrize("mode", MODES)
def test_bad_phone_fails_naming_the_field_before_any_request(mode, octopods_conn, capfd, caplog):
    results, output = run_dag(
        f"octopods_test_send_and_wait_{mode}", {"destination_phone": "555-1234"}, capfd, caplog
    )

    assert results["send_sms"] == ("failed", None)
    assert "Invalid destination_phone: '555-1234' has no country code" in output
    assert "(e.g. +12015550123)" in output
    assert octopods_conn.request_count() == 0


def test_empty_body_fails_naming_the_field_before_any_request(octopods_conn, capfd, caplog):
    results, output = run_dag("octopods_test_send_only", {"body": ""}, capfd, caplog)

    assert results["send_sms"] == ("failed", None)
    assert "Invalid body: the SMS text is empty" in output
    assert octopods_conn.request_count() == 0


def test_refused_send_surfaces_octopods_text_and_is_not_retried(octopods_conn, capfd, caplog):
    octopods_conn.inject(
        Reply(
            400, {"request_id": "req-3", "error_code": 3, "error": "The destination phone number is invalid."}
        )
    )

    results, output = run_dag("octopods_test_send_and_wait_worker", {}, capfd, caplog)

    assert results["send_sms"] == ("failed", None)
    assert (
        "Octopods refused the request (HTTP 400, error_code 3): The destination phone number is invalid."
        in (output)
    )
    assert posts(octopods_conn) == 1


def test_provider_error_surfaces_its_text_and_may_be_retried(octopods_conn, capfd, caplog):
    """Error code 4: Octopods did not send the SMS, so the task's one retry may try again."""
    results, output = run_dag(
        "octopods_test_send_and_wait_deferrable", {"destination_phone": "+12015550140"}, capfd, caplog
    )

    assert results["send_sms"] == ("failed", None)
    assert "Octopods' SMS provider failed (HTTP 400, error_code 4): The SMS provider returned an error." in (
        output
    )
    assert posts(octopods_conn) == 2
    assert octopods_conn.messages == {}


@pytest.mark.parametrize("mode", MODES)
def test_send_with_unknown_outcome_fails_without_retry(mode, octopods_conn, capfd, caplog):
    """A 5xx may hide a send that went out: the task's retry must not text the recipient twice."""
    octopods_conn.inject(Reply(503, "<html>Service Unavailable</html>"))

    results, output = run_dag(f"octopods_test_send_and_wait_{mode}", {}, capfd, caplog)

    assert results["send_sms"] == ("failed", None)
    assert "OctopodsSendUnconfirmedError" in output
    assert "HTTP 503" in output
    assert "The SMS may have been sent: it is not sent again" in output
    assert posts(octopods_conn) == 1


def test_rate_limited_send_is_left_to_the_task_retry(octopods_conn, capfd, caplog):
    """HTTP 429: Octopods refused before sending, so the task's retry sends it, once."""
    octopods_conn.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "0"}))

    results, output = run_dag("octopods_test_send_and_wait_worker", {}, capfd, caplog)

    state, xcom = results["send_sms"]
    assert state == "success"
    assert xcom["status"] == "delivered"
    assert "HTTP 429 (rate limit reached)" in output
    assert posts(octopods_conn) == 2
    assert list(octopods_conn.messages) == [xcom["message_id"]]


@pytest.mark.parametrize("mode", MODES)
def test_stuck_in_queued_times_out_naming_the_last_status(mode, octopods_conn, capfd, caplog):
    results, output = run_dag(
        f"octopods_test_send_and_wait_timeout_{mode}", {"destination_phone": "+12015550109"}, capfd, caplog
    )

    assert results["send_sms"] == ("failed", None)
    (message_id,) = octopods_conn.messages
    assert "OctopodsTimeoutError" in output
    assert f"Timed out after 1.5 s waiting for delivery. SMS {message_id}: last status 'queued'." in output
    assert posts(octopods_conn) == 1


def test_send_in_one_task_wait_in_another(octopods_conn, capfd, caplog):
    results, _ = run_dag("octopods_test_send_then_sensor", {}, capfd, caplog)

    (send_state, sent), (wait_state, status) = results["send_sms"], results["wait_for_delivery"]
    assert (send_state, wait_state) == ("success", "success")
    assert status["message_id"] == sent["message_id"]
    assert status["status"] == "delivered"
    assert posts(octopods_conn) == 1


def test_batch_send_then_one_wait_names_the_failure(octopods_conn, capfd, caplog):
    phones = ["+12015550123", "+12015550102", "+12015550124"]

    results, output = run_dag("octopods_test_batch_send", {"phones": phones}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert posts(octopods_conn) == 3
    (bad,) = [m.message_id for m in octopods_conn.messages.values() if m.phone_number == "+12015550102"]
    assert "1 of 3 SMS were not delivered." in output
    assert f"SMS {bad} was not delivered: status 'undelivered'" in output
    assert FAILURE_REASONS["carrier_blocked"] in output


def test_batch_send_all_delivered(octopods_conn, capfd, caplog):
    phones = ["+12015550123", "+12015550124"]

    results, _ = run_dag("octopods_test_batch_send", {"phones": phones}, capfd, caplog)

    state, statuses = results["wait_for_delivery"]
    assert state == "success"
    assert sorted(s["phone_number"] for s in statuses) == sorted(phones)
    assert {s["status"] for s in statuses} == {"delivered"}
    assert posts(octopods_conn) == 2


# -- narrow tests of the two waits, without a DAG run ------------------------------------------


def _operator(**kwargs):
    kwargs.setdefault("wait_for_delivery", True)
    return OctopodsSendSmsOperator(task_id="send_sms", destination_phone="+12015550123", body="hi", **kwargs)


class _Ti:
    """The few task-instance methods a deferring send uses: XCom kept in a dict."""

    task_id, map_index = "send_sms", -1

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value


def test_deferrable_defers_on_the_message_it_sent_and_finishes_without_sending(octopods_conn):
    operator = _operator(deferrable=True, timeout=60, poll_interval=0.1)
    ti = _Ti()

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context={"ti": ti})

    (message_id,) = octopods_conn.messages
    trigger = deferred.value.trigger
    assert isinstance(trigger, OctopodsSmsDeliveryTrigger)
    assert trigger.ids == [message_id]
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs["sent"]["message_id"] == message_id
    assert ti.xcom["octopods_sent"] == deferred.value.kwargs["sent"]  # where a failed resume finds it
    assert TEST_API_KEY not in json.dumps(trigger.serialize())

    event = {
        "status": "done",
        "message_ids": [message_id],
        "statuses": [SmsStatus(message_id, "delivered").to_dict()],
    }
    assert operator.execute_complete({}, event, **deferred.value.kwargs)["status"] == "delivered"
    assert posts(octopods_conn) == 1


def test_worker_wait_polls_through_transient_errors(octopods_conn):
    message_id = octopods_conn.add_message("queued", "sent", "delivered")
    octopods_conn.inject(Reply(503), Reply(429, {"error": "slow"}, {"Retry-After": "0"}), Reset())
    operator = _operator(max_poll_interval=0.05)
    trigger = OctopodsSmsDeliveryTrigger(
        message_id, poll_interval=0.01, end_time=time.time() + 10, initial_delay=0, max_poll_interval=0.05
    )

    event = operator._wait_in_process(trigger)

    assert event["status"] == "done"
    assert event["statuses"][0]["status"] == "delivered"
    assert octopods_conn.request_count(f"{SEND}/{message_id}") == 6


def test_worker_wait_stops_at_once_on_a_revoked_key(octopods_conn):
    message_id = octopods_conn.add_message("queued")
    octopods_conn.revoke_key()
    trigger = OctopodsSmsDeliveryTrigger(message_id, end_time=time.time() + 10, initial_delay=0)

    event = _operator()._wait_in_process(trigger)

    assert event is not None and event["status"] == "error"
    with pytest.raises(OctopodsAuthError, match="rotated or revoked"):
        _operator().execute_complete({}, event)
    assert octopods_conn.request_count() == 1


EXAMPLES = {
    "example_octopods_send_and_wait": ["howto_operator_octopods_send_sms_and_wait"],
    "example_octopods_send_then_sensor": [
        "howto_operator_octopods_send_sms",
        "howto_sensor_octopods_wait_for_sent_sms",
    ],
    "example_octopods_batch_delivery": ["howto_sensor_octopods_batch_delivery"],
    "example_octopods_notifier": ["howto_notifier_octopods_sms"],
    "example_octopods_whatsapp_read": ["howto_operator_octopods_whatsapp_read"],
    "example_octopods_whatsapp_sms_fallback": ["howto_operator_octopods_whatsapp_sms_fallback"],
    "example_octopods_whatsapp_batch": ["howto_sensor_octopods_whatsapp_batch"],
    "example_octopods_whatsapp_notifier": ["howto_notifier_octopods_whatsapp"],
}


@pytest.mark.parametrize("dag_id", sorted(EXAMPLES))
def test_example_dags_parse_with_their_docs_markers(dag_id):
    dag = get_dag(dag_id)
    source = (ROOT / "example_dags" / f"{dag_id}.py").read_text()

    assert dag.tasks
    for marker in EXAMPLES[dag_id]:
        assert source.count(f"# [START {marker}]") == 1
        assert source.count(f"# [END {marker}]") == 1
        assert source.index(f"# [START {marker}]") < source.index(f"# [END {marker}]")


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (Reset(), "The connection to Octopods broke during POST /api/v1/sms/messages."),
        (Hang(5), "Octopods did not answer POST /api/v1/sms/messages within 0.5 s."),
        (Reply(201, {"request_id": "req-1", "message_id": "not-an-id"}), "malformed"),
    ],
    ids=["broken-connection", "no-answer", "unreadable-success"],
)
def test_send_with_unknown_outcome_is_final(fault, said, octopods_conn, monkeypatch):
    conn = {**octopods_conn.connection_extra(), "extra": {"timeout": 0.5}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))
    octopods_conn.inject(fault)

    with pytest.raises(OctopodsSendUnconfirmedError, match="The SMS may have been sent") as err:
        _operator(wait_for_delivery=False).execute(context={})

    assert said in str(err.value)
    assert isinstance(err.value, AirflowFailException)  # Airflow does not retry it
    assert posts(octopods_conn) == 1


def test_rate_limited_send_raises_the_transient_error_for_the_task_retry(octopods_conn):
    octopods_conn.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "3"}))

    with pytest.raises(OctopodsTransientError) as err:
        _operator().execute(context={})

    assert not isinstance(err.value, (OctopodsSendUnconfirmedError, AirflowFailException))
    assert err.value.retry_after == 3.0
    assert posts(octopods_conn) == 1


def test_send_that_could_not_connect_is_left_to_the_task_retry(monkeypatch):
    conn = {"conn_type": "octopods", "host": "http://127.0.0.1:9", "password": TEST_API_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))

    with pytest.raises(OctopodsTransientError, match="so nothing was sent") as err:
        _operator().execute(context={})

    assert not isinstance(err.value, (OctopodsSendUnconfirmedError, AirflowFailException))


# -- waiting on many messages: OctopodsSmsDeliverySensor(message_ids=[...]) --------------------


def test_sensor_defers_once_for_all_message_ids_in_input_order():
    sensor = OctopodsSmsDeliverySensor(
        task_id="wait_for_all", message_ids=["3", 1, " 2", 1], deferrable=True, max_concurrency=4, timeout=60
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})

    trigger = deferred.value.trigger
    assert isinstance(trigger, OctopodsSmsDeliveryTrigger)
    assert (trigger.message_id, trigger.ids) == (None, [3, 1, 2])  # one trigger, duplicates dropped
    assert trigger.max_concurrency == 4


def test_sensor_pokes_a_list_and_returns_statuses_in_input_order(octopods_conn):
    slow = octopods_conn.add_message("queued", "delivered")
    fast = octopods_conn.add_message("delivered")
    sensor = OctopodsSmsDeliverySensor(task_id="wait_for_all", message_ids=[fast, slow], deferrable=False)

    first, second = sensor.poke({}), sensor.poke({})

    assert not first.is_done
    assert second.is_done
    assert [s["message_id"] for s in second.xcom_value] == [fast, slow]
    assert octopods_conn.request_count(f"{SEND}/{fast}") == 1  # a final status is not asked again


async def test_many_messages_are_polled_with_bounded_concurrency(octopods_conn):
    ids = [octopods_conn.add_message(Hang(0.3), "delivered") for _ in range(6)]
    trigger = OctopodsSmsDeliveryTrigger(
        message_ids=ids,
        end_time=time.time() + 20,
        initial_delay=0,
        poll_interval=0.05,
        max_poll_interval=0.1,
        max_concurrency=2,
    )

    event = await first_event(trigger)

    assert event["status"] == "done"
    assert [s["status"] for s in event["statuses"]] == ["delivered"] * 6
    # Each first request hangs 0.3 s: with 2 in flight at most, they arrive two by two.
    arrivals = sorted(r.at for r in octopods_conn.requests)[:6]
    assert all(later - earlier >= 0.25 for earlier, later in zip(arrivals, arrivals[2:], strict=False))


# -- never text twice: no failure after a successful send can lead to a second send (issue 10 #3) --


def _the_sent_message(simulator) -> int:
    (message_id,) = simulator.messages
    return message_id


#: Airflow 3.3 keeps a task instance's state across its tries (``task_state_store``): a retried
#: send-and-wait resumes the wait on the message it sent. Before 3.3 a failure after the send is final.
HAS_TASK_STATE_STORE = AIRFLOW_VERSION.release >= (3, 3)
NO_STORE = pytest.mark.skipif(
    HAS_TASK_STATE_STORE, reason="Airflow 3.3+ retries resume the wait instead (tests below)"
)
STORE = pytest.mark.min_airflow(
    "3.3", reason="task_state_store (a retry resumes the wait) is new in Airflow 3.3"
)


@NO_STORE
def test_wait_cut_by_execution_timeout_fails_without_resending(octopods_conn, capfd, caplog):
    """The worker's wait is cut by execution_timeout; with retries=2 a retry used to send twice more."""
    results, output = run_dag("octopods_test_send_and_wait_cut_worker", {}, capfd, caplog)

    assert results["send_sms"] == ("failed", None)
    message_id = _the_sent_message(octopods_conn)
    assert "OctopodsWaitAfterSendError" in output
    assert f"SMS {message_id} was sent, then this task failed" in output
    assert f"wait on message_id {message_id}" in output
    assert posts(octopods_conn) == 1


@NO_STORE
def test_trigger_crash_fails_without_resending(octopods_conn, capfd, caplog, monkeypatch):
    """An unexpected error in the trigger becomes an error event; the task fails, naming the SMS, once."""
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    async def crash(self, message_id, timeout=None, channel=None):
        raise RuntimeError("a bug in the status parser")

    monkeypatch.setattr(OctopodsAsyncHook, "get_message_status", crash)

    results, output = run_dag("octopods_test_send_and_wait_cut_deferrable", {}, capfd, caplog)

    assert results["send_sms"] == ("failed", None)
    message_id = _the_sent_message(octopods_conn)
    assert f"The wait on SMS {message_id} stopped on an unexpected error" in output
    assert "a bug in the status parser" in output
    assert f"SMS {message_id} was sent, then this task failed" in output
    assert posts(octopods_conn) == 1


@STORE
def test_a_retry_resumes_the_wait_on_the_sms_it_sent_and_never_sends_again(octopods_conn, capfd, caplog):
    """
    Issue 12: ``execution_timeout`` (2 s) cuts the wait on an SMS delivered only after 3 s; the retry
    reads the message id back from the task state store and resumes: one POST, success.
    """
    octopods_conn.deliver_after = 3.0
    conf = {"destination_phone": "+12015550123"}

    results, output = run_dag("octopods_test_send_and_wait_cut_worker", conf, capfd, caplog)

    message_id = _the_sent_message(octopods_conn)
    state, final = results["send_sms"]
    assert state == "success", output[-3000:]
    assert final["message_id"] == message_id and final["status"] == "delivered"
    assert f"SMS {message_id} was sent by an earlier try of this task; not sending it again." in output
    assert posts(octopods_conn) == 1


@STORE
def test_a_crashed_trigger_is_retried_by_resuming_the_wait(octopods_conn, capfd, caplog, monkeypatch):
    """Deferrable: the trigger's first poll crashes, the task fails that try; the retry resumes."""
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    real = OctopodsAsyncHook.get_message_status
    crashes = []

    async def crash_once(self, message_id, timeout=None, channel=None):
        if not crashes:
            crashes.append(message_id)
            raise RuntimeError("a bug in the status parser")
        return await real(self, message_id, timeout, channel)

    monkeypatch.setattr(OctopodsAsyncHook, "get_message_status", crash_once)
    conf = {"destination_phone": "+12015550123"}

    results, output = run_dag("octopods_test_send_and_wait_cut_deferrable", conf, capfd, caplog)

    message_id = _the_sent_message(octopods_conn)
    state, final = results["send_sms"]
    assert state == "success", output[-3000:]
    assert final["status"] == "delivered"
    assert "a bug in the status parser" in output
    assert f"SMS {message_id} was sent by an earlier try of this task; not sending it again." in output
    assert posts(octopods_conn) == 1


@STORE
def test_a_retry_after_a_crash_while_sending_never_sends_blindly(octopods_conn, capfd, caplog, monkeypatch):
    """A try that died between the request and recording the answer leaves a mark: no second send."""
    from airflow_provider_octopods.utils.ledger import SendLedger

    def die_after_sending(self, sent):  # the worker "crashes" after Octopods accepted the SMS
        raise SystemExit("killed")

    monkeypatch.setattr(SendLedger, "record", die_after_sending)

    results, output = run_dag("octopods_test_send_and_wait_cut_worker", {}, capfd, caplog)

    assert results["send_sms"][0] == "failed"
    assert "OctopodsSendUnconfirmedError" in output
    assert "An earlier try of this task was sending the SMS when it stopped" in output
    assert posts(octopods_conn) == 1


@STORE
def test_a_send_that_certainly_did_not_leave_is_retried(octopods_conn, capfd, caplog):
    """HTTP 429 sends nothing: the mark is dropped, and the retry sends (once)."""
    octopods_conn.inject(Reply(429, {"error": "slow down"}))
    conf = {"destination_phone": "+12015550123"}

    results, output = run_dag("octopods_test_send_and_wait_cut_worker", conf, capfd, caplog)

    state, final = results["send_sms"]
    assert state == "success", output[-3000:]
    assert final["status"] == "delivered"
    assert posts(octopods_conn) == 2  # the refused one and the one that went out
    assert len(octopods_conn.messages) == 1


# -- a send that fails before anything leaves never blocks the retry (defect 2) --------------------


def _fail_connection_once(monkeypatch, error: BaseException) -> list[str]:
    """Make the first read of an Octopods connection raise ``error`` (a secrets backend down); return the reads."""
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    real, reads = OctopodsHook.get_connection, []

    def get_connection(cls, conn_id):
        reads.append(conn_id)
        if len(reads) == 1:
            raise error
        return real(conn_id)

    monkeypatch.setattr(OctopodsHook, "get_connection", classmethod(get_connection))
    return reads


@STORE
def test_a_first_try_whose_connection_could_not_be_read_leaves_no_mark(
    octopods_conn, capfd, caplog, monkeypatch
):
    """
    Defect 2: the connection is read (and the number and text checked) before the "sending" mark,
    so a first try that failed reading it (here the secrets backend raised) is retried by Airflow
    and the retry sends normally, instead of refusing as "an earlier try was sending".
    """
    reads = _fail_connection_once(monkeypatch, RuntimeError("the secrets backend is unreachable"))
    conf = {"destination_phone": "+12015550123"}

    results, output = run_dag("octopods_test_send_and_wait_cut_worker", conf, capfd, caplog)

    state, final = results["send_sms"]
    assert state == "success", output[-3000:]
    assert final["status"] == "delivered"
    assert "the secrets backend is unreachable" in output  # the first try failed on it
    assert "An earlier try of this task was sending" not in output
    assert len(reads) >= 2
    assert posts(octopods_conn) == 1
    assert list(octopods_conn.messages) == [final["message_id"]]


class _Store:
    """A task state store as Airflow 3.3 hands it to a task (``get``, ``set``, ``delete``), in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def set(self, key: str, value: object, *, retention: object = None) -> None:
        self.values[key] = json.loads(json.dumps(value))  # kept as JSON, as the real store does

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class _StoreTi(_Ti):
    """A task instance of a retried task: one ``max_tries`` for every try (a Clear would raise it)."""

    max_tries = 2


def _no_connection(monkeypatch, octopods_conn):
    monkeypatch.delenv("AIRFLOW_CONN_OCTOPODS_DEFAULT")


def _unreadable_connection(monkeypatch, octopods_conn):
    _fail_connection_once(monkeypatch, RuntimeError("the secrets backend is unreachable"))


def _working_connection(monkeypatch, octopods_conn):
    pass


@pytest.mark.parametrize(
    ("first_try", "options", "error", "said"),
    [
        pytest.param(
            _no_connection,
            {},
            OctopodsInputError,
            "Invalid octopods_conn_id: there is no connection 'octopods_default'",
            id="missing-connection",
        ),
        pytest.param(
            _unreadable_connection,
            {},
            RuntimeError,
            "the secrets backend is unreachable",
            id="connection-read-raises",
        ),
        pytest.param(
            _working_connection,
            {"intercom_teammate_id": object()},
            OctopodsInputError,
            "Invalid intercom_teammate_id: cannot be sent as JSON",
            id="payload-not-json",
        ),
    ],
)
def test_a_send_that_failed_before_anything_left_does_not_block_the_retry(
    first_try, options, error, said, octopods_conn, monkeypatch
):
    """
    Defect 2, with the ledger's store in hand: whatever fails before the request (the connection,
    its secrets, the payload) leaves no "sending" mark, so the next try of the task instance sends
    normally: exactly one SMS reaches the simulator.
    """
    store, ti = _Store(), _StoreTi()
    context = {"ti": ti, "task_state_store": store}
    first_try(monkeypatch, octopods_conn)

    with pytest.raises(error, match=said):
        _operator(wait_for_delivery=False, **options).execute(context=context)

    assert store.values == {}  # no mark left behind
    assert octopods_conn.request_count() == 0
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(octopods_conn.connection_extra()))

    # The retry: a new operator, as Airflow builds one per try.
    sent = _operator(wait_for_delivery=False).execute(context=context)

    assert posts(octopods_conn) == 1
    assert list(octopods_conn.messages) == [sent["message_id"]]
    assert store.values["octopods_send"]["sent"] == sent  # the retry's send is recorded
    again = _operator(wait_for_delivery=False).execute(context=context)  # and a third try resumes it
    assert again == sent
    assert posts(octopods_conn) == 1


def test_a_send_that_may_have_left_keeps_its_mark(octopods_conn):
    """The other side of defect 2: after a 5xx the mark stays, and the next try never sends blindly."""
    store, ti = _Store(), _StoreTi()
    context = {"ti": ti, "task_state_store": store}
    octopods_conn.inject(Reply(503, "<html>Service Unavailable</html>"))

    with pytest.raises(OctopodsSendUnconfirmedError, match="HTTP 503"):
        _operator(wait_for_delivery=False).execute(context=context)
    assert store.values["octopods_send"]["sent"] is None  # the "sending" mark

    with pytest.raises(OctopodsSendUnconfirmedError, match="An earlier try of this task was sending"):
        _operator(wait_for_delivery=False).execute(context=context)
    assert posts(octopods_conn) == 1


# -- durations beyond any wait are refused when the task is built (defect 9) -----------------------

HUGE = timedelta(days=10**6)


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("timeout", lambda: _operator(timeout=HUGE)),
        ("timeout", lambda: _operator(wait_for_delivery=False, timeout=HUGE)),
        ("timeout", lambda: _operator(deferrable=True, timeout=HUGE)),
        ("timeout", lambda: _operator(timeout=float("inf"))),
        ("poll_interval", lambda: _operator(poll_interval=HUGE)),
        ("initial_delay", lambda: _operator(initial_delay=HUGE)),
        ("max_poll_interval", lambda: _operator(max_poll_interval=HUGE)),
        ("timeout", lambda: OctopodsSmsDeliverySensor(task_id="wait", message_id=1, timeout=HUGE)),
        (
            "timeout",
            lambda: OctopodsSmsDeliverySensor(task_id="wait", message_id=1, timeout=HUGE, deferrable=True),
        ),
        ("timeout", lambda: OctopodsSmsDeliverySensor(task_id="wait", message_id=1, timeout=1e300)),
        (
            "poke_interval",
            lambda: OctopodsSmsDeliverySensor(task_id="wait", message_id=1, poke_interval=HUGE),
        ),
    ],
    ids=[
        "send-and-wait",
        "send-only",
        "deferrable",
        "infinite",
        "poll-interval",
        "initial-delay",
        "max-poll-interval",
        "sensor",
        "sensor-deferrable",
        "sensor-float",
        "sensor-poke-interval",
    ],
)
def test_a_duration_above_ten_years_is_refused_when_the_task_is_built(field, build, octopods_conn):
    with pytest.raises(
        OctopodsInputError, match=f"Invalid {field}: .*pass at most 315360000 s \\(ten years\\)"
    ):
        build()

    assert octopods_conn.request_count() == 0  # nothing sent, and no raw OverflowError


def test_a_timeout_of_ten_years_is_accepted_and_defers(octopods_conn):
    """The limit itself works end to end: the deadline and Airflow's defer timeout do not overflow."""
    operator = _operator(deferrable=True, timeout=timedelta(seconds=MAX_SECONDS))

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context={"ti": _Ti()})

    assert deferred.value.timeout is not None and deferred.value.timeout >= timedelta(seconds=MAX_SECONDS)
    assert deferred.value.trigger.end_time > time.time() + MAX_SECONDS - 60
    assert posts(octopods_conn) == 1


class _ResumedTi(_Ti):
    """A task instance resumed by Airflow: it reads back what the deferring try kept in XCom."""

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> object:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcom.get(key)


@pytest.mark.parametrize("error", ["Trigger timeout", "Trigger failure"])
def test_failed_or_timed_out_trigger_resumes_into_a_final_error_naming_the_sms(error):
    """
    Airflow resumes a task whose trigger failed, or whose defer timeout passed, with next_method
    "__fail__" and its own next_kwargs (the defer kwargs are gone); its error would be retried.
    """
    ti = _ResumedTi()
    ti.xcom_push("octopods_sent", {"message_id": 4829174, "request_id": "r-1"})

    with pytest.raises(AirflowFailException, match="SMS 4829174 was sent, then this task failed") as failed:
        _operator(deferrable=True).resume_execution("__fail__", {"error": error}, {"ti": ti})

    assert failed.value.message_id == 4829174
    with pytest.raises(AirflowFailException, match="SMS \\(unknown: see the task's log\\) was sent"):
        _operator(deferrable=True).resume_execution("__fail__", {"error": error}, {"ti": _ResumedTi()})


def test_a_rejected_key_during_the_wait_names_the_sent_sms(octopods_conn):
    from airflow_provider_octopods.utils.ledger import SendLedger

    operator = _operator(poll_interval=0.05, initial_delay=0, timeout=10)
    sent = operator._send_once(SendLedger.of({}))  # no task state store: not durable
    octopods_conn.rotate_key("another-key-0123456789")  # between the send and the first poll

    with pytest.raises(AirflowFailException, match=f"SMS {sent.message_id} was sent, then this task failed"):
        operator.execute_complete(
            {}, operator._wait_in_process(_trigger_for(operator, sent.message_id)), sent=sent.sent
        )
    assert posts(octopods_conn) == 1


def _trigger_for(operator, message_id):
    return OctopodsSmsDeliveryTrigger(
        message_id, poll_interval=operator.poll_interval, initial_delay=0, end_time=time.time() + 10
    )


# -- the send operator's mapped output feeds one sensor (issue 10 #6) ------------------------------


def test_mapped_send_then_one_sensor_on_its_output(octopods_conn, capfd, caplog):
    """The one-liner: ``message_ids=OctopodsSendSmsOperator.partial(...).expand(...).output``."""
    phones = ["+12015550123", "+12015550124", "+12015550126"]

    results, _ = run_dag("octopods_test_batch_send_output", {"phones": phones}, capfd, caplog)

    state, statuses = results["wait_for_delivery"]
    assert state == "success"
    assert sorted(s["phone_number"] for s in statuses) == sorted(phones)
    assert {s["status"] for s in statuses} == {"delivered"}
    assert posts(octopods_conn) == 3


def test_a_dag_that_renders_native_objects_sends_numbers_and_texts_as_text(octopods_conn, capfd, caplog):
    # Regression: native rendering turned the literal "+12015550123" into the int 12015550123 (its
    # "+" gone): the operator could not send, and the failure notifier sent nothing.
    results, output = run_dag("octopods_test_native_rendering", {}, capfd, caplog)

    assert results["send_sms"][0] == "success", output[-3000:]
    sent = {m.phone_number: m for m in octopods_conn.messages.values()}
    assert set(sent) == {"+12015550123", "+12015550124"}, output[-3000:]
    assert sent["+12015550123"].body == sent["+12015550124"].body == "424242"
    assert sent["+12015550124"].payload["destination_user_name"] == "007"
