"""
The retry policy for TaskFlow code that calls the hooks (``airflow_provider_octopods.retry``).

The decision table runs on errors raised by the real hook against the simulator wherever the
request kind matters (a send versus a status read), and the policy is proven end to end by
``dag.test()`` runs of the example DAG: a 429 is retried after its ``Retry-After`` and the task
succeeds; a rejected key fails the task at once, with retries left.
"""

from __future__ import annotations

import importlib
import sys
from datetime import timedelta
from typing import Any

import pytest
from packaging.version import Version

from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
)
from airflow_provider_octopods.testing import Reply
from tests.conftest import AIRFLOW_VERSION, TEST_API_KEY
from tests.test_dag_runs import run_dag

NEEDS_RETRY_POLICIES = pytest.mark.min_airflow("3.3", reason="task retry policies arrived in Airflow 3.3")
DAG_ID = "example_octopods_retry_policy"


def _decide(exception: BaseException, retry_delay: timedelta | None = None) -> tuple[str, float | None]:
    from airflow_provider_octopods.retry import octopods_retry_policy

    decision = octopods_retry_policy(retry_delay).evaluate(exception, try_number=1, max_tries=4)
    assert decision.action.value == "default" or decision.reason, "every decision says why"
    delay = None if decision.retry_delay is None else decision.retry_delay.total_seconds()
    return decision.action.value, delay


def _raised_by(call: Any) -> OctopodsError:
    with pytest.raises(OctopodsError) as info:
        call()
    return info.value


@pytest.fixture
def hook(octopods_conn: Any) -> Any:
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    hook = OctopodsHook(max_retries=0)
    yield hook
    hook.close()


TABLE = [
    pytest.param(OctopodsTransientError("x", status_code=429, retry_after=2.5), ("retry", 2.5), id="429"),
    pytest.param(OctopodsTransientError("x", status_code=429), ("retry", 30.0), id="429-no-retry-after"),
    pytest.param(OctopodsTransientError("x", status_code=408), ("retry", 30.0), id="408"),
    pytest.param(OctopodsTransientError("x", request_sent=False), ("retry", 30.0), id="not-sent"),
    pytest.param(
        OctopodsTransientError("x", request_sent=False, retry_after=1.0), ("retry", 1.0), id="not-sent-after"
    ),
    pytest.param(OctopodsApiError("x", status_code=400, error_code=4), ("retry", 30.0), id="error-code-4"),
    pytest.param(OctopodsAuthError("x", status_code=401), ("fail", None), id="auth-401"),
    pytest.param(OctopodsAuthError("x", status_code=400, error_code=5), ("fail", None), id="auth-code-5"),
    pytest.param(OctopodsInputError("message_id", "not a number"), ("fail", None), id="input"),
    pytest.param(OctopodsDeliveryError("undelivered"), ("fail", None), id="delivery"),
    pytest.param(OctopodsSendUnconfirmedError("maybe sent"), ("fail", None), id="send-unconfirmed"),
    pytest.param(OctopodsApiError("x", status_code=404), ("fail", None), id="other-4xx"),
    # A 5xx whose origin is unknown (no hook call on its traceback) may have been a send.
    pytest.param(OctopodsTransientError("x", status_code=503), ("fail", None), id="5xx-unknown-origin"),
    pytest.param(OctopodsError("something else"), ("default", None), id="other-octopods-error"),
    pytest.param(KeyError("not ours"), ("default", None), id="not-octopods"),
]


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(("error", "expected"), TABLE)
def test_decision_table(error, expected):
    assert _decide(error, timedelta(seconds=30)) == expected


@NEEDS_RETRY_POLICIES
def test_without_retry_after_or_retry_delay_the_task_keeps_its_own_retry_delay():
    assert _decide(OctopodsTransientError("x", status_code=429)) == ("retry", None)


@NEEDS_RETRY_POLICIES
def test_an_octopods_error_wrapped_by_user_code_is_decided_on():
    try:
        try:
            raise OctopodsAuthError("x", status_code=401)
        except OctopodsAuthError as err:
            raise RuntimeError("my task failed") from err
    except RuntimeError as wrapped:
        assert _decide(wrapped) == ("fail", None)


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(
    ("reply", "on_send", "on_read"),
    [
        pytest.param(
            Reply(503, {"error": "busy"}, {"Retry-After": "3"}), ("fail", None), ("retry", 3.0), id="503"
        ),
        pytest.param(
            Reply(502, "<html>bad gateway</html>"), ("fail", None), ("retry", None), id="502-not-json"
        ),
        pytest.param(
            Reply(429, {"error": "slow down"}, {"Retry-After": "2"}), ("retry", 2.0), ("retry", 2.0), id="429"
        ),
        pytest.param(
            Reply(400, {"error_code": 4, "error": "provider"}), ("retry", None), ("retry", None), id="code-4"
        ),
    ],
)
def test_a_send_that_may_have_got_through_fails_and_a_read_retries(
    hook, octopods_conn, reply, on_send, on_read
):
    message_id = octopods_conn.add_message("delivered")
    octopods_conn.inject(reply, times=2)

    sent = _raised_by(lambda: hook.send_sms("+12015550123", "hi"))
    read = _raised_by(lambda: hook.get_sms_status(message_id))

    assert _decide(sent) == on_send
    assert _decide(read) == on_read


@NEEDS_RETRY_POLICIES
def test_a_send_that_never_left_is_retried(octopods_conn):
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    octopods_conn.stop()  # the port is closed: no connection can be opened
    hook = OctopodsHook(max_retries=0)
    try:
        error = _raised_by(lambda: hook.send_sms("+12015550123", "hi"))
    finally:
        hook.close()

    assert isinstance(error, OctopodsTransientError)
    assert not error.request_sent
    assert _decide(error) == ("retry", None)


@NEEDS_RETRY_POLICIES
def test_the_policy_survives_a_serialization_round_trip():
    from airflow_provider_octopods.retry import OctopodsRetryPolicy, octopods_retry_policy

    policy = octopods_retry_policy(timedelta(seconds=12))
    again = OctopodsRetryPolicy.deserialize(policy.serialize())

    assert again.retry_delay == timedelta(seconds=12)
    assert repr(again) == "OctopodsRetryPolicy(retry_delay=datetime.timedelta(seconds=12))"


def test_older_airflow_gets_an_import_error_naming_the_version_needed(monkeypatch):
    if Version("3.3") <= AIRFLOW_VERSION:
        # Hide the SDK's retry policies, as an older Airflow lacks them.
        monkeypatch.setitem(sys.modules, "airflow.sdk.definitions.retry_policy", None)
    monkeypatch.delitem(sys.modules, "airflow_provider_octopods.retry", raising=False)

    with pytest.raises(ImportError, match=r"needs Airflow 3\.3 or newer, where task retry policies") as info:
        importlib.import_module("airflow_provider_octopods.retry")

    assert f"this is Airflow {AIRFLOW_VERSION}" in str(info.value)


def _tries(dag_id: str, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag_id, task_id=task_id)
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        assert ti is not None
        return int(ti.try_number)


def _posts(sim: Any) -> int:
    return sum(1 for r in sim.requests if r.method == "POST")


@NEEDS_RETRY_POLICIES
@pytest.mark.usefixtures("airflow_db")
def test_dag_test_a_rate_limited_send_is_retried_after_retry_after_and_succeeds(octopods_conn, capfd, caplog):
    octopods_conn.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "0.1"}))

    results, output = run_dag(DAG_ID, {"destination_phone": "+12015550123", "body": "hi"}, capfd, caplog)

    assert results["send_sms"][0] == "success"
    assert _tries(DAG_ID, "send_sms") == 2
    assert _posts(octopods_conn) == 2  # the refused one, then the accepted one
    assert len(octopods_conn.messages) == 1
    assert results["read_status"][0] == "success"
    assert "Octopods refused the request before acting on it (HTTP 429)" in output
    assert TEST_API_KEY not in output


@NEEDS_RETRY_POLICIES
@pytest.mark.usefixtures("airflow_db")
def test_dag_test_a_rejected_key_fails_at_once_with_retries_left(octopods_conn, capfd, caplog):
    octopods_conn.revoke_key()

    results, output = run_dag(DAG_ID, {"destination_phone": "+12015550123", "body": "hi"}, capfd, caplog)

    assert results["send_sms"][0] == "failed"
    assert _tries(DAG_ID, "send_sms") == 1  # retries=3 on the task, none used
    assert _posts(octopods_conn) == 1
    assert not octopods_conn.messages
    assert results["read_status"][0] == "upstream_failed"
    assert "Update the connection's Channel API key" in output
