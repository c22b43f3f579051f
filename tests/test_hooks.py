"""Hook tests: OctopodsHook and OctopodsAsyncHook against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
    Sent,
)
from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, OctopodsHook, SharedSession
from airflow_provider_octopods.testing import FAILURE_REASONS, Reply, Status
from tests.conftest import TEST_API_KEY


def test_get_sms_status_follows_the_script(octopods_conn):
    message_id = octopods_conn.add_message(
        "queued", "SENT", Status("failed", FAILURE_REASONS["invalid_number"])
    )
    hook = OctopodsHook()

    statuses = [hook.get_sms_status(str(message_id)) for _ in range(3)]

    assert [s.status for s in statuses] == ["queued", "sent", "failed"]
    assert statuses[-1].failure_reason == FAILURE_REASONS["invalid_number"]
    assert statuses[-1].message_id == message_id


def test_one_session_and_one_tcp_connection_for_many_calls(octopods_conn):
    message_id = octopods_conn.add_message("sent")
    hook = OctopodsHook()

    for _ in range(5):
        hook.get_sms_status(message_id)

    assert octopods_conn.request_count() == 5
    assert octopods_conn.connections_opened == 1


def test_invalid_message_id_makes_no_request(octopods_conn):
    with pytest.raises(OctopodsInputError, match="message_id"):
        OctopodsHook().get_sms_status("1?x=1")
    assert octopods_conn.request_count() == 0


#: The "message not found" error (changed): it names the id and says what to check.
NOT_FOUND = (
    r"Octopods does not know SMS 999 \(HTTP 400, error_code 6: Message not found\)\. Check that the "
    r"connection's Channel API key belongs to the channel that sent it, and that the id is the send's "
    r"message_id \(not its request_id or channel_message_id\)\. \(request_id [\w-]+\)"
)


def test_unknown_message_fails_at_once(octopods_conn):
    with pytest.raises(OctopodsBadRequestError, match="Message not found") as err:
        OctopodsHook().get_sms_status(999)
    assert octopods_conn.request_count() == 1
    assert re.fullmatch(NOT_FOUND, str(err.value)), str(err.value)
    assert (err.value.status_code, err.value.error_code, err.value.request, err.value.sent) == (
        400,
        6,
        "status",
        Sent.NO,
    )


async def test_async_unknown_message_names_the_id_and_what_to_check(octopods_conn):
    async with OctopodsAsyncHook() as hook:
        with pytest.raises(OctopodsBadRequestError) as err:
            await hook.get_sms_status(999)
    assert re.fullmatch(NOT_FOUND, str(err.value)), str(err.value)
    assert octopods_conn.request_count() == 1


def _no_connection(err: pytest.ExceptionInfo[OctopodsInputError]) -> None:
    assert err.value.field == "octopods_conn_id"
    assert str(err.value).startswith("Invalid octopods_conn_id: there is no connection 'octopods_missing'. ")
    assert "Add it in Admin > Connections" in str(err.value)
    assert "AIRFLOW_CONN_OCTOPODS_MISSING" in str(err.value)


def test_a_missing_connection_names_the_argument_and_the_connection_page(octopods_conn):
    # Regression: Airflow's AirflowNotFoundException ("The conn_id ... isn't defined") came through.
    with pytest.raises(OctopodsInputError) as err:
        OctopodsHook("octopods_missing").get_sms_status(1)
    _no_connection(err)
    with pytest.raises(OctopodsInputError) as err:
        OctopodsHook("octopods_missing").send_sms("+12015550123", "hi")
    _no_connection(err)
    assert octopods_conn.request_count() == 0


async def test_a_missing_connection_names_the_argument_and_the_connection_page_async(octopods_conn):
    async with OctopodsAsyncHook("octopods_missing") as hook:
        with pytest.raises(OctopodsInputError) as err:
            await hook.get_sms_status(1)
        _no_connection(err)
        with pytest.raises(OctopodsInputError) as err:
            await hook.send_sms("+12015550123", "hi")
        _no_connection(err)
    assert octopods_conn.request_count() == 0


def test_transient_errors_are_retried_then_raised(octopods_conn, monkeypatch):
    monkeypatch.setattr("airflow_provider_octopods.hooks.octopods.time.sleep", lambda s: None)
    message_id = octopods_conn.add_message("delivered")
    octopods_conn.inject(Reply(503, "down"), Reply(429, {"error": "slow"}, {"Retry-After": "1"}))

    assert OctopodsHook().get_sms_status(message_id).status == "delivered"
    assert octopods_conn.request_count() == 3

    octopods_conn.inject(Reply(500), times=3)
    with pytest.raises(OctopodsTransientError, match="HTTP 500"):
        OctopodsHook(max_retries=2).get_sms_status(message_id)


def test_send_is_never_retried(octopods_conn):
    octopods_conn.inject(Reply(503))
    with pytest.raises(OctopodsSendUnconfirmedError, match="may have been sent"):
        OctopodsHook().send_sms("+12015550123", "hello")
    assert octopods_conn.request_count("/api/v1/sms/messages") == 1
    assert octopods_conn.messages == {}


def test_send_sms_returns_sent_sms(octopods_conn):
    sent = OctopodsHook().send_sms("+12015550123", "hello", destination_user_name="Ada")

    assert sent.message_id in octopods_conn.messages
    assert octopods_conn.messages[sent.message_id].body == "hello"
    assert sent.channel_message_id and sent.request_id


def test_rotated_key_is_picked_up_from_the_connection(octopods_conn, monkeypatch):
    message_id = octopods_conn.add_message("sent")
    hook = OctopodsHook()
    hook.get_sms_status(message_id)

    octopods_conn.rotate_key("octo-rotated-key-123456")
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(octopods_conn.connection_extra()))

    assert hook.get_sms_status(message_id).status == "sent"


def test_revoked_key_raises_auth_error_once(octopods_conn):
    octopods_conn.revoke_key()
    with pytest.raises(OctopodsAuthError, match="Update the connection's Channel API key"):
        OctopodsHook().get_sms_status(octopods_conn.add_message("sent"))
    assert octopods_conn.request_count() == 1  # the connection was re-read, but its key had not changed


def test_test_connection_good_and_bad_key(octopods_conn, monkeypatch):
    ok, message = OctopodsHook().test_connection()
    assert ok, message
    assert "accepted the SMS channel's API key" in message
    assert octopods_conn.request_count() == 1  # the probe, answered HTTP 400 with an error_code

    monkeypatch.setenv(
        "AIRFLOW_CONN_OCTOPODS_DEFAULT",
        json.dumps({**octopods_conn.connection_extra(), "password": "not-the-key"}),
    )
    ok, message = OctopodsHook().test_connection()
    assert not ok
    assert message.startswith("Octopods rejected the Channel API key of this connection")
    assert "not-the-key" not in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"password": "not-the-key"}, "Octopods rejected the Channel API key of this connection"),
        ({"host": "http://127.0.0.1:9"}, "Could not reach Octopods at http://127.0.0.1:9"),
        ({"extra": {"timeout": "soon"}}, "Invalid extra 'timeout' of this connection"),
        ({"password": ""}, "This connection has no Channel API key"),
    ],
)
def test_the_connection_test_never_names_the_random_id_of_the_tested_copy(
    octopods_conn, monkeypatch, change, expected
):
    # Regression (issue 10 #15): Airflow tests a temporary copy under a random id, which the
    # messages named ("... of connection 'KXxLFgAc'").
    monkeypatch.setenv("AIRFLOW_CONN_KXXLFGAC", json.dumps({**octopods_conn.connection_extra(), **change}))
    ok, message = OctopodsHook("KXxLFgAc").test_connection()
    assert not ok
    assert expected in message
    assert "KXxLFgAc" not in message


@pytest.mark.parametrize(
    "answer",
    [
        Reply(
            404, "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>", {"Content-Type": "text/html"}
        ),
        Reply(403, {"error": "Forbidden"}),
        Reply(403, "<html>Forbidden</html>", {"Content-Type": "text/html"}),
    ],
    ids=["html-404", "json-403", "html-403"],
)
def test_the_connection_test_fails_on_a_server_that_does_not_answer_as_octopods(octopods_conn, answer):
    # Regression (defect 6): any 4xx was taken for Octopods' answer to the probe ("Connection works").
    octopods_conn.inject(answer)
    ok, message = OctopodsHook().test_connection()
    assert not ok, message
    assert re.fullmatch(
        rf"{re.escape(octopods_conn.url)} answered HTTP {answer.status}, not as Octopods answers: check the "
        r"connection's Octopods URL \(host\)\.",
        message,
    ), message
    assert octopods_conn.request_count() == 1

    ok, message = OctopodsHook().test_connection()  # Octopods' own 400, with its error_code
    assert ok, message


def test_repr_and_errors_never_show_the_key(octopods_conn):
    hook = OctopodsHook()
    hook.get_sms_status(octopods_conn.add_message("sent"))
    octopods_conn.revoke_key()

    with pytest.raises(OctopodsAuthError) as err:
        hook.get_sms_status(octopods_conn.add_message("sent"))

    for text in (repr(hook), str(err.value), json.dumps(err.value.to_dict())):
        assert TEST_API_KEY not in text


def test_connection_form_for_older_uis():
    behaviour = OctopodsHook.get_ui_field_behaviour()

    assert behaviour["relabeling"]["password"] == "Channel API key"
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["placeholders"]["host"] == "https://app.octopods.io"


async def test_async_hook_status_and_send(octopods_conn):
    message_id = octopods_conn.add_message("queued", "delivered")
    async with OctopodsAsyncHook() as hook:
        first = await hook.get_sms_status(message_id)
        second = await hook.get_sms_status(message_id)
        sent = await hook.send_sms("+12015550123", "hi")

    assert (first.status, second.status) == ("queued", "delivered")
    assert sent.message_id in octopods_conn.messages


async def test_async_hooks_share_one_session_and_connection_per_loop(octopods_conn):
    ids = [octopods_conn.add_message("sent") for _ in range(20)]
    hooks = [OctopodsAsyncHook() for _ in ids]

    for _ in range(3):
        await asyncio.gather(*(h.get_sms_status(i) for h, i in zip(hooks, ids, strict=True)))
        await asyncio.sleep(0.01)

    shared = {id(h._shared) for h in hooks}
    assert len(shared) == 1
    assert octopods_conn.request_count() == 60
    assert octopods_conn.connections_opened <= 20
    assert hooks[0]._shared is not None
    session = hooks[0]._shared.session
    for hook in hooks:
        await hook.close()
    assert session.closed
    assert asyncio.get_running_loop() not in SharedSession._by_loop


async def test_async_hook_errors(octopods_conn):
    async with OctopodsAsyncHook() as hook:
        octopods_conn.inject(Reply(429, {"error": "slow"}, {"Retry-After": "2"}))
        with pytest.raises(OctopodsTransientError) as err:
            await hook.get_sms_status(octopods_conn.add_message("sent"))
        assert err.value.retry_after == 2.0

        octopods_conn.revoke_key()
        with pytest.raises(OctopodsAuthError, match="rotated or revoked"):
            await hook.get_sms_status(octopods_conn.add_message("sent"))


async def test_async_hook_refused_connection_is_transient(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OCTOPODS_DEFAULT",
        json.dumps({"conn_type": "octopods", "host": "http://127.0.0.1:9", "password": TEST_API_KEY}),
    )
    async with OctopodsAsyncHook() as hook:
        with pytest.raises(
            OctopodsTransientError, match=r"Could not reach Octopods at http://127\.0\.0\.1:9"
        ) as err:
            await hook.get_sms_status(1)
    assert TEST_API_KEY not in str(err.value)


def test_a_send_that_could_not_connect_says_nothing_was_sent(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OCTOPODS_DEFAULT",
        json.dumps({"conn_type": "octopods", "host": "http://127.0.0.1:9", "password": TEST_API_KEY}),
    )
    with pytest.raises(OctopodsTransientError, match="so nothing was sent") as err:
        OctopodsHook().send_sms("+12015550123", "hi")
    assert err.value.request_sent is False
    assert (err.value.sent, err.value.request) == (Sent.NO, "send")


async def test_async_send_that_could_not_connect_says_nothing_was_sent(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OCTOPODS_DEFAULT",
        json.dumps({"conn_type": "octopods", "host": "http://127.0.0.1:9", "password": TEST_API_KEY}),
    )
    async with OctopodsAsyncHook() as hook:
        with pytest.raises(OctopodsTransientError, match="so nothing was sent") as err:
            await hook.send_sms("+12015550123", "hi")
    assert err.value.request_sent is False
    assert (err.value.sent, err.value.request) == (Sent.NO, "send")


def test_a_send_cut_off_after_the_request_left_is_not_marked_unsent(octopods_conn):
    from airflow_provider_octopods.testing import Reset

    octopods_conn.inject(Reset())
    with pytest.raises(
        OctopodsSendUnconfirmedError,
        match=r"broke during POST /api/v1/sms/messages\. The SMS may have been sent",
    ) as err:
        OctopodsHook().send_sms("+12015550123", "hi")
    assert err.value.request_sent is True
    assert (err.value.sent, err.value.request) == (Sent.MAYBE, "send")


async def test_async_hooks_on_one_loop_share_one_connection_lookup(octopods_conn, monkeypatch):
    from airflow_provider_octopods.hooks import octopods as hooks_module

    lookups: list[str] = []
    fetch = hooks_module._fetch_connection

    async def counting_fetch(conn_id: str):
        lookups.append(conn_id)
        return await fetch(conn_id)

    monkeypatch.setattr(hooks_module, "_fetch_connection", counting_fetch)
    ids = [octopods_conn.add_message("sent") for _ in range(30)]
    hooks = [OctopodsAsyncHook() for _ in ids]

    await asyncio.gather(*(h.get_sms_status(i) for h, i in zip(hooks, ids, strict=True)))
    assert lookups == ["octopods_default"]

    # a rotated key: the auth error makes one hook look again, and it gets the new key
    octopods_conn.rotate_key("octo-rotated-key-654321")
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(octopods_conn.connection_extra()))
    assert (await hooks[0].get_sms_status(ids[0])).status == "sent"
    assert len(lookups) == 2
    for hook in hooks:
        await hook.close()


async def test_a_rotated_key_is_read_again_once_for_every_wait_that_was_refused(octopods_conn, monkeypatch):
    # Regression: 200 waits refused at once (a key rotated) read the connection 200 times.
    from airflow_provider_octopods.hooks import octopods as hooks_module

    lookups: list[str] = []
    fetch = hooks_module._fetch_connection

    async def counting_fetch(conn_id: str):
        lookups.append(conn_id)
        await asyncio.sleep(0.05)  # a secrets backend takes its time: the refused waits pile up
        return await fetch(conn_id)

    monkeypatch.setattr(hooks_module, "_fetch_connection", counting_fetch)
    ids = [octopods_conn.add_message("sent") for _ in range(50)]
    hooks = [OctopodsAsyncHook() for _ in ids]
    await asyncio.gather(*(h.get_sms_status(i) for h, i in zip(hooks, ids, strict=True)))
    octopods_conn.rotate_key("octo-rotated-key-654321")
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(octopods_conn.connection_extra()))

    statuses = await asyncio.gather(*(h.get_sms_status(i) for h, i in zip(hooks, ids, strict=True)))

    assert {s.status for s in statuses} == {"sent"}
    assert len(lookups) == 2  # the first read, then one read again for all
    for hook in hooks:
        await hook.close()


def test_httphook_run_calls_any_endpoint_with_the_key_and_the_error_rules(octopods_conn):
    # Issue 11 part 3: the inherited run() works instead of refusing.
    message_id = octopods_conn.add_message("delivered")
    hook = OctopodsHook()

    answer = hook.run(f"api/v1/sms/messages/{message_id}")
    assert answer["status"] == "delivered" and answer["message_id"] == message_id
    sent = hook.run(
        "/api/v1/sms/messages", data={"destination_phone": "+12015550123", "body": "hi"}, method="POST"
    )
    assert isinstance(sent["message_id"], int)
    posted = OctopodsHook(method="POST").run(
        "/api/v1/sms/messages", data=json.dumps({"destination_phone": "+12015550123", "body": "hi"})
    )
    assert posted["message_id"] != sent["message_id"]
    assert all(r.had_key for r in octopods_conn.requests)

    with pytest.raises(OctopodsBadRequestError, match=r"HTTP 4\d\d"):
        hook.run("api/v1/sms/messages/999")
    octopods_conn.revoke_key()
    with pytest.raises(OctopodsAuthError, match="connection 'octopods_default'"):
        hook.run(f"api/v1/sms/messages/{message_id}")
    hook.close()


@pytest.mark.parametrize(
    "endpoint", ["https://evil.example.com/api", "//evil.example.com/api", "", None, "api/v1/sms messages"]
)
def test_httphook_run_takes_only_a_path_of_the_connection(octopods_conn, endpoint):
    with pytest.raises(OctopodsInputError, match="endpoint"):
        OctopodsHook().run(endpoint)
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize("method", ["run_and_check", "check_response", "run_with_advanced_retry"])
def test_httphook_methods_that_would_bypass_the_rules_name_run(octopods_conn, method):
    # Issue 11 part 4: HttpHook's versions failed with a TypeError or AttributeError, or bypassed the rules.
    hook = OctopodsHook()
    with pytest.raises(
        OctopodsError, match=r"Use OctopodsHook\.run\(endpoint, data, headers, method=\.\.\.\)"
    ) as err:
        getattr(hook, method)(None, None)
    assert "max_retries" in str(err.value)
    with pytest.raises(OctopodsError, match=r"OctopodsHook\.run\("):
        getattr(hook, method)({"retry": None})
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ({"host": "octopods.example.com", "port": 8443}, "https://octopods.example.com:8443"),
        ({"host": "https://octopods.example.com"}, "https://octopods.example.com"),
        ({"host": ""}, "https://app.octopods.io"),
    ],
)
def test_httphook_url_from_endpoint_is_the_url_run_calls(monkeypatch, conn, url):
    # Issue 11 part 4: HttpHook's version said http:// for a host without a scheme (run uses https://).
    monkeypatch.setenv(
        "AIRFLOW_CONN_OCTOPODS_DEFAULT",
        json.dumps({"conn_type": "octopods", "password": TEST_API_KEY, **conn}),
    )
    hook = OctopodsHook()
    assert hook.url_from_endpoint("api/v1/sms/messages/1") == f"{url}/api/v1/sms/messages/1"
    assert hook.url_from_endpoint("/api/v1/sms/messages/1") == f"{url}/api/v1/sms/messages/1"


def test_httphook_run_refuses_options_it_would_ignore(octopods_conn):
    with pytest.raises(OctopodsInputError, match=r"\['verify'\] are not supported"):
        OctopodsHook().run("api/v1/sms/messages/1", extra_options={"verify": False})
    assert octopods_conn.request_count() == 0


def test_httphook_run_sends_data_as_the_query_of_a_get(octopods_conn):
    message_id = octopods_conn.add_message("delivered")
    hook = OctopodsHook()
    hook.run(f"api/v1/sms/messages/{message_id}", data={"fields": "status"})
    assert octopods_conn.requests[-1].path == f"/api/v1/sms/messages/{message_id}"
    hook.close()


async def test_a_slow_first_read_of_the_connection_counts_against_the_callers_limit(
    octopods_conn, monkeypatch
):
    """
    A trigger passes the time left before its deadline; the first read of the connection (0.6 s
    on Airflow 3.1, which loads its secrets backends then) must be part of it, or the first poll
    of a short wait outlives the deadline by that long.
    """
    import time

    from airflow_provider_octopods.hooks import octopods as hooks_module
    from airflow_provider_octopods.testing import Hang

    fetch = hooks_module._fetch_connection

    async def slow_fetch(conn_id: str):
        await asyncio.sleep(1.0)
        return await fetch(conn_id)

    monkeypatch.setattr(hooks_module, "_fetch_connection", slow_fetch)
    for conn_id in ("octopods_slow_read", "octopods_slow_read_2"):
        for name, value in octopods_conn.connection_uri_env(conn_id).items():
            monkeypatch.setenv(name, value)
    message = octopods_conn.add_message(Hang(30))  # accepted, never answered

    # The read takes longer than the whole limit: the request is not sent at all.
    started = time.monotonic()
    async with OctopodsAsyncHook("octopods_slow_read") as hook:
        with pytest.raises(OctopodsTransientError, match="the time allowed for the call ran out") as err:
            await hook.get_sms_status(message, timeout=0.8)
    assert err.value.request_sent is False
    assert (err.value.sent, err.value.request) == (Sent.NO, "status")
    assert octopods_conn.request_count() == 0
    took = time.monotonic() - started
    assert took < 1.4, f"the call took {took:.2f} s: the read of the connection was not counted"

    # A limit that outlasts the read leaves the request what is left of it (the message names
    # the caller's limit: the call as a whole had 1.3 s).
    started = time.monotonic()
    async with OctopodsAsyncHook("octopods_slow_read_2") as hook:
        with pytest.raises(OctopodsTransientError, match=r"did not answer .* within 1\.3 s"):
            await hook.get_sms_status(message, timeout=1.3)
    assert octopods_conn.request_count() == 1
    took = time.monotonic() - started
    assert took < 1.8, f"the call took {took:.2f} s: the read of the connection was not counted"


@pytest.mark.parametrize("timeout", [-1, "", float("nan"), "5"])
async def test_a_bad_time_limit_names_the_argument_before_any_request(octopods_conn, timeout):
    message = octopods_conn.add_message("delivered")
    async with OctopodsAsyncHook() as hook:
        with pytest.raises(OctopodsInputError, match="timeout"):
            await hook.get_sms_status(message, timeout=timeout)
        # A timedelta is a time limit like any other.
        from datetime import timedelta

        assert (await hook.get_sms_status(message, timeout=timedelta(seconds=5))).status == "delivered"
    assert octopods_conn.request_count() == 1


def test_httphook_run_refuses_data_that_is_not_json_before_any_request(octopods_conn):
    before = octopods_conn.request_count()
    with pytest.raises(OctopodsInputError, match="Invalid data: cannot be sent as JSON") as err:
        OctopodsHook(method="POST").run("api/v1/sms/messages", data={"when": object()})
    assert err.value.sent is None
    assert octopods_conn.request_count() == before
