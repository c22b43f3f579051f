"""Unit tests of the HTTP rules shared by both hooks (airflow_provider_octopods.hooks.octopods)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsInputError,
    OctopodsTransientError,
    Sent,
)
from airflow_provider_octopods.hooks.octopods import (
    AUTH_HEADER,
    DEFAULT_HOST,
    SEND_PATH,
    Answer,
    ApiSettings,
    Call,
    Send,
    _headers,
    connection_label,
    connection_settings,
    read_answer,
    redirect_target,
    status_call,
)
from airflow_provider_octopods.utils.budget import BACKOFF_CAP, parse_retry_after, retry_delay


def conn(host=None, password="k", port=None, extra=None, conn_id="octopods_default"):
    return SimpleNamespace(
        conn_id=conn_id,
        host=host,
        password=password,
        port=port,
        extra=json.dumps(extra) if extra else None,
        extra_dejson=extra or {},
    )


def body(payload) -> bytes:
    return json.dumps(payload).encode()


def interpret(status, raw, headers=None, conn_id="c", key="k", call=None):
    """Read an answer to a plain GET (``call``) of the connection ``conn_id`` whose key is ``key``."""
    settings = ApiSettings(DEFAULT_HOST, key=key, label=connection_label(conn_id))
    call = call or Call("run", "GET", "/api/v1/sms/messages/1")
    return read_answer(call, Answer(status, headers or {}, raw), settings)


def follow(here, location, method="GET", key="k"):
    """Where a redirect from ``here`` to ``location`` leads, or the error that refuses it."""
    from urllib.parse import urlsplit

    settings = ApiSettings(DEFAULT_HOST, key=key)
    send = Send(method, here, _headers(key, False), None, 10.0, 30.0, None)
    call = Call("status", method, urlsplit(here).path)
    return redirect_target(call, send, Answer(302, {"Location": location}), settings)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, DEFAULT_HOST),
        ("", None, DEFAULT_HOST),
        ("app.octopods.io", None, "https://app.octopods.io"),
        ("https://app.octopods.io/", None, "https://app.octopods.io"),
        ("http://127.0.0.1:8765", None, "http://127.0.0.1:8765"),
        ("http://localhost", 9000, "http://localhost:9000"),
        ("http://[::1]:8765", None, "http://[::1]:8765"),
        # the default port left out: one origin, one request budget (it was two)
        ("https://app.octopods.io:443", None, "https://app.octopods.io"),
        ("app.octopods.io", 443, "https://app.octopods.io"),
        ("http://localhost:80", None, "http://localhost"),
        ("http://localhost:443", None, "http://localhost:443"),
    ],
)
def test_base_url(host, port, expected):
    assert connection_settings(conn(host, port=port)).base_url == expected


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ("http://sms.example.com", "plain http:// to sms.example.com would send the API key unencrypted"),
        ("ftp://app.octopods.io", "is not an http\\(s\\) URL"),
        ("https://app.octopods.io/api/v1", "no path, query or credentials"),
        ("https://user:pw@app.octopods.io", "no path, query or credentials"),
    ],
)
def test_bad_hosts_are_refused_naming_the_connection(host, match):
    with pytest.raises(OctopodsInputError, match=match) as err:
        connection_settings(conn(host))
    assert "connection 'octopods_default'" in str(err.value)


def test_plain_http_to_remote_host_needs_explicit_opt_in():
    settings = connection_settings(conn("http://sms.example.com", extra={"allow_insecure_http": True}))
    assert settings.base_url == "http://sms.example.com"


def test_timeout_and_verify_extras():
    import certifi

    assert connection_settings(conn(extra={"timeout": "5"})).timeout == 5.0
    assert connection_settings(conn()).verify is True
    assert connection_settings(conn(extra={"verify": False})).verify is False
    assert connection_settings(conn(extra={"verify": certifi.where()})).verify == certifi.where()
    with pytest.raises(OctopodsInputError, match="extra 'timeout'"):
        connection_settings(conn(extra={"timeout": "soon"}))


@pytest.mark.parametrize("value", [False, "false", "False", " 0 ", "no", "OFF", 0])
def test_only_an_explicit_false_turns_tls_verification_off(value):
    assert connection_settings(conn(extra={"verify": value})).verify is False


@pytest.mark.parametrize("value", [None, "", "  ", True, "true", "1", "yes", "on", 1])
def test_null_empty_or_true_keep_tls_verification_on(value):
    # Regression (issue 10 #1): null and "" turned verification off.
    settings = connection_settings(conn(extra={"verify": value} if value is not None else {"verify": None}))
    assert settings.verify is True


@pytest.mark.parametrize(
    "path", ["corp-ca.pem", "C:\\certs\\corp.pem", "certs/missing.pem", "/no/such/ca.pem"]
)
def test_a_ca_bundle_that_does_not_exist_is_a_clear_input_error(path, tmp_path, monkeypatch):
    # Regression (issue 10 #1): a relative or Windows path turned verification off.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OctopodsInputError) as err:
        connection_settings(conn(extra={"verify": path}, conn_id="sms"))
    message = str(err.value)
    assert "extra 'verify' of connection 'sms'" in message
    assert repr(path) in message and "does not exist" in message


def test_a_relative_ca_bundle_that_exists_is_used(tmp_path, monkeypatch):
    import certifi

    monkeypatch.chdir(tmp_path)
    (tmp_path / "corp-ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    assert connection_settings(conn(extra={"verify": "corp-ca.pem"})).verify == "corp-ca.pem"


def test_a_ca_bundle_that_is_not_pem_is_a_clear_input_error(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(OctopodsInputError, match="could not be loaded"):
        connection_settings(conn(extra={"verify": str(bad)}))


@pytest.mark.parametrize("value", [[], {}, 2, 0.5])
def test_a_verify_value_of_another_type_is_refused(value):
    with pytest.raises(OctopodsInputError, match="neither true, false nor a CA bundle path"):
        connection_settings(conn(extra={"verify": value}))


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("octo-key\nsecond-line", "a line break at position 9"),
        ("octo\tkey", "a control character at position 5"),
        ("octo\x7fkey", "a control character at position 5"),
        (
            "\u201coctokey\u201d",
            "a character that is not ASCII (a curly quote, a non-breaking space?) at position 1",
        ),
        # Regression: Latin-1 passed, and requests sent it as Latin-1, aiohttp as UTF-8: two keys.
        (
            "octo-k\u00e9y",
            "a character that is not ASCII (a curly quote, a non-breaking space?) at position 7",
        ),
        (
            "octo\u00a0key",
            "a character that is not ASCII (a curly quote, a non-breaking space?) at position 5",
        ),
    ],
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_naming_the_password_field(key, what):
    # Regression (issue 10 #2): such a key was "Could not reach Octopods" (transient) or a bare ValueError.
    with pytest.raises(OctopodsInputError) as err:
        connection_settings(conn(password=key, conn_id="sms"))
    message = str(err.value)
    assert "password (Channel API key) of connection 'sms'" in message and what in message
    assert key.strip() not in message


def test_a_key_with_inner_spaces_is_kept():
    assert connection_settings(conn(password=" octo key ")).key == "octo key"


def test_missing_key_is_an_auth_error_that_says_where_to_put_it():
    with pytest.raises(OctopodsAuthError, match="password field \\(labelled 'Channel API key'\\)"):
        connection_settings(conn(password=""))


def test_key_travels_only_in_the_header():
    headers = _headers("secret-key", False)
    assert headers[AUTH_HEADER] == "secret-key" and AUTH_HEADER == "X-Octopods-Auth"
    assert (
        "Content-Type" not in headers and _headers("secret-key", True)["Content-Type"] == "application/json"
    )
    with pytest.raises(TypeError):  # one shared, read-only copy per key
        headers["X-Octopods-Auth"] = "other"  # type: ignore[index]
    call = status_call(4829174)
    assert call.path == f"{SEND_PATH}/4829174" == "/api/v1/sms/messages/4829174"
    assert "secret-key" not in repr(Send("GET", call.path, headers, None, 1.0, 1.0, None))
    assert "secret-key" not in repr(ApiSettings(DEFAULT_HOST, key="secret-key"))


def test_2xx_json_is_returned():
    assert interpret(200, body({"status": "sent"}), {}, "c") == {"status": "sent"}


@pytest.mark.parametrize("raw", [b"", b"<html>oops</html>", b'{"status": "se', b"\xff\xfe"])
def test_2xx_without_json_is_transient(raw):
    with pytest.raises(OctopodsTransientError, match="not JSON"):
        interpret(200, raw, {}, "c")


def test_401_tells_to_update_the_key():
    with pytest.raises(OctopodsAuthError) as err:
        interpret(401, body({"request_id": "r", "error": "Unauthorized"}), {}, "my_conn")
    text = str(err.value)
    assert "connection 'my_conn'" in text and "missing or unknown" in text
    assert "Update the connection's Channel API key" in text
    assert err.value.status_code == 401 and err.value.request_id == "r"


def test_error_code_5_is_auth():
    with pytest.raises(OctopodsAuthError, match="rotated or revoked"):
        interpret(400, body({"error_code": 5, "error": "revoked"}), {}, "c")


@pytest.mark.parametrize("code", [1, 2, 3, 6, None])
def test_other_400s_are_permanent_bad_requests_with_their_text(code):
    payload = {"request_id": "r", "error": "You must supply message_id in your request payload."}
    if code is not None:
        payload["error_code"] = code
    with pytest.raises(OctopodsBadRequestError, match="You must supply message_id") as err:
        interpret(400, body(payload), {}, "c")
    assert err.value.error_code == code


def test_provider_error_4_may_be_retried_by_the_task():
    with pytest.raises(OctopodsApiError) as err:
        interpret(400, body({"error_code": 4, "error": "SMS provider error"}), {}, "c")
    assert type(err.value) is OctopodsApiError
    assert "SMS provider error" in str(err.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses(status):
    with pytest.raises(OctopodsTransientError, match=f"HTTP {status}") as err:
        interpret(status, b"<html>busy</html>", {"Retry-After": "3"}, "c")
    assert err.value.retry_after == 3.0
    # 408, 425 and 429 say the request was not processed; a 5xx leaves it open.
    assert err.value.request_sent is (status >= 500)
    assert err.value.sent is (Sent.MAYBE if status >= 500 else Sent.NO)
    assert (err.value.request, err.value.status_code) == ("run", status)
    assert "will ask again" not in str(err.value)


def test_the_auth_error_of_a_connection_test_says_this_connection():
    with pytest.raises(OctopodsAuthError, match="of this connection: the key"):
        interpret(401, body({"error": "Unauthorized"}), {}, None)


def test_retry_after_forms():
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("99999") == BACKOFF_CAP
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_is_capped_jittered_and_honours_retry_after():
    delays = [retry_delay(attempt) for attempt in range(1, 12)]
    assert all(0.5 <= d <= BACKOFF_CAP for d in delays)
    assert retry_delay(1) <= 1.0
    assert BACKOFF_CAP / 2 <= retry_delay(20) <= BACKOFF_CAP
    assert len({retry_delay(5) for _ in range(20)}) > 1  # jittered
    assert retry_delay(1, retry_after=7) == 7
    assert retry_delay(1, retry_after=30, cap=10) == 30  # the server's word beats our cap
    assert retry_delay(1, retry_after=500) == BACKOFF_CAP


def test_same_origin_redirect_is_followed():
    assert (
        follow("https://app.octopods.io/api/v1/sms/messages/1", "/api/v1/sms/messages/1/")
        == "https://app.octopods.io/api/v1/sms/messages/1/"
    )


@pytest.mark.parametrize(
    ("here", "location"),
    [
        ("https://app.octopods.io/api/v1/sms/messages/1", "https://app.octopods.io:443/api/x"),
        ("https://app.octopods.io:443/api/v1/sms/messages/1", "https://app.octopods.io/api/x"),
        ("http://127.0.0.1/api/v1/sms/messages/1", "http://127.0.0.1:80/api/x"),
        ("https://APP.octopods.io/api/v1/sms/messages/1", "HTTPS://app.octopods.io/api/x"),
    ],
)
def test_a_default_port_spelled_out_is_the_same_origin(here, location):
    # Regression (issue 10 #14): https://host and https://host:443 were different origins.
    assert follow(here, location).endswith("/api/x")


@pytest.mark.parametrize(
    "location",
    ["https://evil.example.com/x", "http://app.octopods.io/x", "https://app.octopods.io:444/x", "//evil/x"],
)
def test_cross_origin_redirect_is_refused(location):
    with pytest.raises(OctopodsBadRequestError, match="the API key was not sent there"):
        follow("https://app.octopods.io/api/v1/sms/messages/1", location)


def test_errors_travel_as_facts_and_old_dicts_still_load():
    from airflow_provider_octopods.exceptions import OctopodsCertificateError, error_from_dict

    with pytest.raises(OctopodsTransientError) as raised:
        interpret(429, body({"error": "Slow down", "request_id": "r9"}), {"Retry-After": "4"}, "c")
    rebuilt = error_from_dict(json.loads(json.dumps(raised.value.to_dict())))
    assert isinstance(rebuilt, OctopodsTransientError)
    assert (rebuilt.request_sent, rebuilt.retry_after, rebuilt.status_code, rebuilt.request_id) == (
        False,
        4.0,
        429,
        "r9",
    )
    assert str(rebuilt) == str(raised.value)
    assert (rebuilt.request, rebuilt.sent) == ("run", Sent.NO)

    certificate = error_from_dict(OctopodsCertificateError("The TLS certificate ...").to_dict())
    assert type(certificate) is OctopodsCertificateError and certificate.request_sent is False

    # A dict written by 0.1.0 (a trigger event still in the metadata DB) has no request_sent.
    old = {"type": "OctopodsTransientError", "message": "HTTP 503; will ask again.", "status_code": 503}
    loaded = error_from_dict(old)
    assert isinstance(loaded, OctopodsTransientError) and loaded.request_sent is True


def test_an_unknown_message_says_what_to_check():
    # Changed on purpose (the redesign): the message names the SMS and what to check.
    with pytest.raises(OctopodsBadRequestError) as err:
        interpret(400, body({"error_code": 6, "error": "Message not found"}), call=status_call(4829174))
    assert str(err.value) == (
        "Octopods does not know SMS 4829174 (HTTP 400, error_code 6: Message not found). Check that the "
        "connection's Channel API key belongs to the channel that sent it, and that the id is the send's "
        "message_id (not its request_id or channel_message_id)."
    )
    assert (err.value.request, err.value.sent, err.value.error_code) == ("status", Sent.NO, 6)


@pytest.mark.parametrize(
    "raw",
    [
        body({}),
        body({"request_id": ""}),
        body({"message_id": None}),
        body([1]),
        body({"message_id": "x", "request_id": "r1"}),
        b"<html>ok</html>",
    ],
)
def test_a_success_answer_to_a_send_that_is_not_octopods_shape_may_have_sent_it(raw):
    from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError
    from airflow_provider_octopods.hooks.octopods import send_call

    call, _ = send_call("+12015550123", "Your code is 123456", ApiSettings(DEFAULT_HOST, key="k"))
    with pytest.raises(OctopodsSendUnconfirmedError, match="may have been sent") as err:
        interpret(201, raw, call=call)
    assert (err.value.request, err.value.sent, err.value.request_sent) == ("send", Sent.MAYBE, True)


@pytest.mark.parametrize("message_id", [None, "absent"])
def test_a_send_answered_with_a_request_id_and_no_message_id_is_a_confirmed_untrackable_send(message_id):
    # Octopods' SMS pages show HubSpot workspaces answering 201 without ids: sent, never "maybe".
    from airflow_provider_octopods.hooks.octopods import send_call

    call, _ = send_call("+12015550123", "Your code is 123456", ApiSettings(DEFAULT_HOST, key="k"))
    answer = {"request_id": "r1"} if message_id == "absent" else {"request_id": "r1", "message_id": None}
    sent = interpret(201, body(answer), call=call)
    assert (sent.message_id, sent.request_id, sent.destination_phone) == (None, "r1", "+12015550123")
    assert sent.to_dict()["message_id"] is None and sent.to_dict()["request_id"] == "r1"


@pytest.mark.parametrize("where", ["error", "message", "request_id"])
def test_the_key_is_redacted_from_every_text_of_an_error_answer(where):
    # Regression (the redesign's defect 4): a server echoing the key put it in the error.
    key = "octo-echo-key-1234"
    with pytest.raises(OctopodsBadRequestError) as err:
        interpret(400, body({"error_code": 3, where: f"unknown key {key}"}), key=key)
    as_json = json.dumps(err.value.to_dict())
    assert key not in str(err.value) and key not in as_json and key not in repr(err.value)
    assert "unknown key ***" in str(err.value) and "unknown key ***" in as_json


def test_the_key_is_redacted_from_a_status_answer():
    key = "octo-echo-key-1234"
    status = interpret(
        200,
        body({"message_id": 5, "status": "failed", "failure_reason": f"key {key} refused", key: [key]}),
        key=key,
        call=status_call(5),
    )
    assert status.failure_reason == "key *** refused"
    assert key not in json.dumps(status.to_dict()) and key not in repr(status)


@pytest.mark.parametrize("location", ["/api/v1/sms/messages/1 2", "/api/\x01x", "/api/v1/\x7f", "   "])
def test_a_redirect_to_something_that_is_not_a_url_is_transient(location):
    # Changed on purpose (the redesign's defect 7): it was a bare ValueError.
    with pytest.raises(OctopodsTransientError, match="which is not a URL") as err:
        follow("https://app.octopods.io/api/v1/sms/messages/1", location)
    assert err.value.status_code == 302


def test_a_redirect_location_holding_the_key_is_redacted():
    with pytest.raises(OctopodsBadRequestError) as err:
        follow(
            "https://app.octopods.io/api/v1/sms/messages/1",
            "https://octo-key-9.evil.example/x",
            key="octo-key-9",
        )
    assert "octo-key-9" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(OctopodsTransientError, match="which is not a URL") as err:
        follow("https://app.octopods.io/api/v1/sms/messages/1", "/x?k=octo-key-9 y", key="octo-key-9")
    assert "octo-key-9" not in str(err.value)


def test_a_redirect_of_a_send_is_not_followed_and_may_have_sent_it():
    from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError

    with pytest.raises(OctopodsSendUnconfirmedError, match="was not followed") as err:
        settings = ApiSettings(DEFAULT_HOST, key="k")
        send = Send("POST", DEFAULT_HOST + SEND_PATH, _headers("k", True), b"{}", 10.0, 30.0, None)
        redirect_target(Call("send", "POST", SEND_PATH), send, Answer(307, {"Location": SEND_PATH}), settings)
    assert err.value.sent is Sent.MAYBE


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "https://app.octopods.io/api", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://app.octopods.io/api", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8765/api", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8765/api", "http://proxy:3128"),
        ({"ALL_PROXY": "http://every:1"}, "https://app.octopods.io/api", "http://every:1"),
        (
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"},
            "https://a.io/",
            "http://lower:1",
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://app.octopods.io/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".octopods.io"}, "https://app.octopods.io/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "octopods.io"}, "https://app.octopods.io/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "pods.io"}, "https://app.octopods.io/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "app.octopods.io:443"}, "https://app.octopods.io/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, "https://11.1.2.3/", "http://p:1"),
    ],
)
def test_one_proxy_decision_for_both_transports(env, url, expected, monkeypatch):
    from airflow_provider_octopods.hooks.octopods import proxy_for

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTPS_PROXY", "socks5h://proxy:1080"),
        ("HTTPS_PROXY", "http://proxy:99999"),
        ("HTTPS_PROXY", "http://proxy:port"),
        ("ALL_PROXY", "socks5://user:pw@proxy:1080"),
    ],
)
def test_a_proxy_the_hooks_cannot_use_is_an_input_error_naming_the_variable(name, value, monkeypatch):
    # Changed on purpose (the redesign's defect 5): it failed inside the libraries, after the send began.
    from airflow_provider_octopods.hooks.octopods import proxy_for

    for variable in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.upper(), raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(OctopodsInputError) as err:
        proxy_for("https://app.octopods.io/api")
    assert name in str(err.value)
    assert "user:pw" not in str(err.value)


@pytest.mark.parametrize("value", [3600.5, 1e10, "1e10"])
def test_a_timeout_over_an_hour_is_refused_naming_the_extra(value):
    # Regression: 1e10 passed, and the sync hook crashed with OverflowError after the SMS had left.
    with pytest.raises(
        OctopodsInputError,
        match=r"Invalid extra 'timeout' of .*: must be a number of seconds above 0, at most 3600\.",
    ):
        connection_settings(conn(extra={"timeout": value}))
    assert connection_settings(conn(extra={"timeout": 3600})).timeout == 3600


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:9\\@api.example/api/v1/sms/messages/1",
        "https://evil.example\\.api.example/x",
        "https://user@api.example/api/v1/sms/messages/1",
        "//evil.example@api.example/x",
    ],
)
def test_a_redirect_whose_host_parsers_read_differently_is_never_followed(location):
    # Regression: urlsplit read the host of "http://localhost:9\\@api.example/..." as api.example
    # (same origin: followed), urllib3 as localhost: the sync hook sent the key there.
    with pytest.raises(OctopodsTransientError, match=r"which is not a URL\.$"):
        follow("https://api.example/api/v1/sms/messages/1", location)
