"""
The retry policy for TaskFlow code that calls the hooks (``airflow_provider_octopods.retry``).

The decision table runs on errors raised by the real hook against the simulator wherever the
request kind matters (a send versus a status read), and the policy is proven end to end by
``dag.test()`` runs of the example DAG: a 429 is retried after its ``Retry-After`` and the task
succeeds; a rejected key fails the task at once, with retries left.
"""

from __future__ import annotations

import asyncio
import importlib
import json
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
    Sent,
    error_from_dict,
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


def _send_and_read(hook: Any, sim: Any, reply: Any) -> tuple[OctopodsError, OctopodsError]:
    """The errors of a send and of a status request that both meet ``reply``."""
    message_id = sim.add_message("delivered")
    sim.inject(reply, times=2)
    return (
        _raised_by(lambda: hook.send_sms("+12015550123", "hi")),
        _raised_by(lambda: hook.get_sms_status(message_id)),
    )


@pytest.fixture
def hook(octopods_conn: Any) -> Any:
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    hook = OctopodsHook(max_retries=0)
    yield hook
    hook.close()


#: Hand-built errors carry the facts the hooks set on them where they are raised: which request
#: (``request``) and whether it may have been sent (``sent``); the policy decides from those alone.
TABLE = [
    pytest.param(
        OctopodsTransientError("x", request="send", sent=Sent.NO, status_code=429, retry_after=2.5),
        ("retry", 2.5),
        id="429",
    ),
    pytest.param(
        OctopodsTransientError("x", request="send", sent=Sent.NO, status_code=429),
        ("retry", 30.0),
        id="429-no-retry-after",
    ),
    pytest.param(
        OctopodsTransientError("x", request="send", sent=Sent.NO, status_code=408), ("retry", 30.0), id="408"
    ),
    pytest.param(OctopodsTransientError("x", request="send", sent=Sent.NO), ("retry", 30.0), id="not-sent"),
    pytest.param(
        OctopodsTransientError("x", request="send", sent=Sent.NO, retry_after=1.0),
        ("retry", 1.0),
        id="not-sent-after",
    ),
    pytest.param(
        OctopodsApiError("x", request="send", sent=Sent.NO, status_code=400, error_code=4),
        ("retry", 30.0),
        id="error-code-4",
    ),
    pytest.param(OctopodsAuthError("x", status_code=401), ("fail", None), id="auth-401"),
    pytest.param(OctopodsAuthError("x", status_code=400, error_code=5), ("fail", None), id="auth-code-5"),
    pytest.param(OctopodsInputError("message_id", "not a number"), ("fail", None), id="input"),
    pytest.param(OctopodsDeliveryError("undelivered"), ("fail", None), id="delivery"),
    pytest.param(OctopodsSendUnconfirmedError("maybe sent"), ("fail", None), id="send-unconfirmed"),
    pytest.param(OctopodsApiError("x", status_code=404), ("fail", None), id="other-4xx"),
    # Passing trouble after the request left: a status read (or the connection test) is retried ...
    pytest.param(
        OctopodsTransientError("x", request="status", sent=Sent.MAYBE, status_code=503, retry_after=4.0),
        ("retry", 4.0),
        id="5xx-status",
    ),
    pytest.param(
        OctopodsTransientError("x", request="status", sent=Sent.MAYBE), ("retry", 30.0), id="broken-status"
    ),
    pytest.param(
        OctopodsTransientError("x", request="test", sent=Sent.MAYBE, status_code=502),
        ("retry", 30.0),
        id="5xx-test",
    ),
    # ... a send, or a request that may have been one (run(), an error of unknown origin), is not.
    pytest.param(
        OctopodsTransientError("x", request="send", sent=Sent.MAYBE, status_code=503),
        ("fail", None),
        id="5xx-send",
    ),
    pytest.param(
        OctopodsTransientError("x", request="run", sent=Sent.MAYBE, status_code=503),
        ("fail", None),
        id="5xx-run",
    ),
    pytest.param(OctopodsTransientError("x", status_code=503), ("fail", None), id="5xx-unknown-origin"),
    pytest.param(
        OctopodsTransientError("x", sent=Sent.MAYBE, status_code=503),
        ("fail", None),
        id="5xx-unknown-request",
    ),
    pytest.param(OctopodsError("something else"), ("default", None), id="other-octopods-error"),
    pytest.param(KeyError("not ours"), ("default", None), id="not-octopods"),
]


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(("error", "expected"), TABLE)
def test_decision_table(error, expected):
    assert _decide(error, timedelta(seconds=30)) == expected


@NEEDS_RETRY_POLICIES
def test_without_retry_after_or_retry_delay_the_task_keeps_its_own_retry_delay():
    assert _decide(OctopodsTransientError("x", request="send", sent=Sent.NO, status_code=429)) == (
        "retry",
        None,
    )


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
    sent, read = _send_and_read(hook, octopods_conn, reply)

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


# -- the verdict comes from the error's facts, not from the name of the call that raised it --------


def _wrapped(call: Any) -> RuntimeError:
    """Run ``call`` (user code), re-raising its Octopods error inside another: ``raise ... from err``."""
    try:
        try:
            call()
        except OctopodsError as err:
            raise RuntimeError("notifying the customer failed") from err
    except RuntimeError as wrapped:
        return wrapped
    raise AssertionError("the call did not fail")


def _caught(call: Any) -> OctopodsError:
    """The Octopods error ``call`` raises, with no hook frame left on its traceback."""
    error = _raised_by(call)
    return error.with_traceback(None)


#: What Octopods answers, and the verdict on a send and on a status read it failed.
SEND_AND_READ = [
    pytest.param(Reply(503, {"error": "busy"}), ("fail", None), ("retry", None), id="5xx-maybe-sent"),
    pytest.param(
        Reply(429, {"error": "slow down"}, {"Retry-After": "2"}),
        ("retry", 2.0),
        ("retry", 2.0),
        id="429-not-sent",
    ),
]


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(("reply", "on_send", "on_read"), SEND_AND_READ)
@pytest.mark.parametrize("wrap", ["renamed", "raise-from", "no-traceback"])
def test_the_verdict_survives_user_functions_and_wrapping(hook, octopods_conn, reply, on_send, on_read, wrap):
    """
    The hook's calls inside user functions of other names (no ``send_sms`` or ``get_sms_status`` in
    the failing frame), re-raised inside a RuntimeError, or stripped of their traceback: a send that
    may have got through still fails, one Octopods refused unprocessed and a status read still retry.
    """
    message_id = octopods_conn.add_message("delivered")

    def notify_customer() -> None:
        hook.send_sms("+12015550123", "Your parcel is on its way.")

    def notify_by_prepared_call() -> None:  # the two halves send_sms is made of, under other names
        prepared = hook.prepare_sms("+12015550123", "Your parcel is on its way.")
        hook.send(prepared)

    def check_delivery() -> None:
        hook.get_sms_status(message_id)

    verdicts = {notify_customer: on_send, notify_by_prepared_call: on_send, check_delivery: on_read}
    for user_function, expected in verdicts.items():
        octopods_conn.inject(reply)
        if wrap == "raise-from":
            error: BaseException = _wrapped(user_function)
            assert isinstance(error.__cause__, OctopodsError)
        elif wrap == "no-traceback":
            error = _caught(user_function)
        else:
            error = _raised_by(user_function)
        assert _decide(error) == expected, user_function.__name__
    assert set(octopods_conn.messages) == {message_id}  # the injected answers stood for every send


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize("wrap", [False, True])
def test_a_send_that_never_left_is_retried_from_a_user_function(octopods_conn, wrap):
    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    octopods_conn.stop()  # the port is closed: no connection can be opened
    hook = OctopodsHook(max_retries=0)

    def notify_customer() -> None:
        hook.send_sms("+12015550123", "hi")

    try:
        error = _wrapped(notify_customer) if wrap else _raised_by(notify_customer)
    finally:
        hook.close()

    octopods_error = error.__cause__ if wrap else error
    assert isinstance(octopods_error, OctopodsTransientError)
    assert (octopods_error.request, octopods_error.sent) == ("send", Sent.NO)
    assert _decide(error) == ("retry", None)


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(("reply", "on_send", "on_read"), SEND_AND_READ)
def test_the_async_hook_errors_get_the_same_verdicts(octopods_conn, reply, on_send, on_read):
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    message_id = octopods_conn.add_message("delivered")

    async def notify_customer() -> None:
        async with OctopodsAsyncHook() as hook:
            await hook.send_sms("+12015550123", "hi")

    async def check_delivery() -> None:
        async with OctopodsAsyncHook() as hook:
            await hook.get_sms_status(message_id)

    for user_function, expected in ((notify_customer, on_send), (check_delivery, on_read)):
        octopods_conn.inject(reply)
        error = _wrapped(lambda f=user_function: asyncio.run(f()))
        assert _decide(error) == expected, user_function.__name__


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(("reply", "on_send", "on_read"), SEND_AND_READ)
def test_an_error_rebuilt_from_its_dict_keeps_request_sent_and_verdict(
    hook, octopods_conn, reply, on_send, on_read
):
    """As a trigger event carries it to the worker: through JSON, with no traceback at all."""
    sent, read = _send_and_read(hook, octopods_conn, reply)

    for error, request, expected in ((sent, "send", on_send), (read, "status", on_read)):
        again = error_from_dict(json.loads(json.dumps(error.to_dict())))

        assert type(again) is type(error)
        assert (again.request, again.sent) == (error.request, error.sent)
        assert again.request == request and isinstance(again.sent, Sent)
        assert again.request_sent == error.request_sent
        assert again.sent is (Sent.NO if reply.status == 429 else Sent.MAYBE)
        assert isinstance(again, OctopodsApiError) and isinstance(error, OctopodsApiError)
        assert (again.status_code, again.retry_after) == (error.status_code, error.retry_after)
        assert str(again) == str(error)
        assert _decide(again) == _decide(error) == expected


@NEEDS_RETRY_POLICIES
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"request_sent": False, "status_code": 503}, ("retry", None), id="not-sent"),
        pytest.param({"request_sent": True, "status_code": 503}, ("fail", None), id="maybe-sent"),
    ],
)
def test_an_event_of_version_0_1_keeps_whether_it_was_sent(data, expected):
    """Events written before errors carried ``sent`` (a trigger of 0.1 still running) said ``request_sent``."""
    again = error_from_dict({"type": "OctopodsTransientError", "message": "x", **data})

    assert again.sent is (Sent.MAYBE if data["request_sent"] else Sent.NO)
    assert (again.request, again.retry_after, again.request_id) == (None, None, None)  # not in the event
    assert _decide(again) == expected


@NEEDS_RETRY_POLICIES
def test_an_event_of_version_0_1_without_retry_after_is_decided_on():
    """0.1 wrote ``retry_after`` only for transient errors: the other API errors rebuild without it."""
    data = {"status_code": 400, "error_code": 4, "error": "provider", "request_id": "req-9"}

    again = error_from_dict({"type": "OctopodsApiError", "message": "x (request_id req-9)", **data})

    assert (again.retry_after, again.sent, again.request_id) == (None, None, "req-9")
    assert _decide(again) == ("retry", None)
    assert _decide(error_from_dict({"type": "OctopodsInputError", "message": "Invalid x"})) == ("fail", None)


@NEEDS_RETRY_POLICIES
def test_the_policy_survives_a_serialization_round_trip():
    from airflow_provider_octopods.retry import OctopodsRetryPolicy, octopods_retry_policy

    policy = octopods_retry_policy(timedelta(seconds=12))
    again = OctopodsRetryPolicy.deserialize(policy.serialize())

    assert again.retry_delay == timedelta(seconds=12)
    assert repr(again) == "OctopodsRetryPolicy(retry_delay=datetime.timedelta(seconds=12))"


def test_older_airflow_gets_an_import_error_naming_the_version_needed(monkeypatch):
    if Version("3.3") <= AIRFLOW_VERSION:
        # Look like an older Airflow: its version (which the module checks first), and no SDK retry policies.
        from airflow_provider_octopods import version_compat

        monkeypatch.setattr(version_compat, "AIRFLOW_V_3_3_PLUS", False)
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
