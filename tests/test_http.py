"""Unit tests of the HTTP rules shared by both hooks (airflow_provider_octopods._http)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_octopods._http import (
    BACKOFF_CAP,
    DEFAULT_HOST,
    api_key,
    api_settings,
    backoff_delay,
    interpret_response,
    parse_retry_after,
    redirect_target,
    request_headers,
    status_path,
)
from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsInputError,
    OctopodsTransientError,
)


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
    ],
)
def test_base_url(host, port, expected):
    assert api_settings(conn(host, port=port)).base_url == expected


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
        api_settings(conn(host))
    assert "connection 'octopods_default'" in str(err.value)


def test_plain_http_to_remote_host_needs_explicit_opt_in():
    settings = api_settings(conn("http://sms.example.com", extra={"allow_insecure_http": True}))
    assert settings.base_url == "http://sms.example.com"


def test_timeout_and_verify_extras():
    import certifi

    assert api_settings(conn(extra={"timeout": "5"})).timeout == 5.0
    assert api_settings(conn()).verify is True
    assert api_settings(conn(extra={"verify": False})).verify is False
    assert api_settings(conn(extra={"verify": certifi.where()})).verify == certifi.where()
    with pytest.raises(OctopodsInputError, match="extra 'timeout'"):
        api_settings(conn(extra={"timeout": "soon"}))


@pytest.mark.parametrize("value", [False, "false", "False", " 0 ", "no", "OFF", 0])
def test_only_an_explicit_false_turns_tls_verification_off(value):
    assert api_settings(conn(extra={"verify": value})).verify is False


@pytest.mark.parametrize("value", [None, "", "  ", True, "true", "1", "yes", "on", 1])
def test_null_empty_or_true_keep_tls_verification_on(value):
    # Regression (issue 10 #1): null and "" turned verification off.
    settings = api_settings(conn(extra={"verify": value} if value is not None else {"verify": None}))
    assert settings.verify is True


@pytest.mark.parametrize(
    "path", ["corp-ca.pem", "C:\\certs\\corp.pem", "certs/missing.pem", "/no/such/ca.pem"]
)
def test_a_ca_bundle_that_does_not_exist_is_a_clear_input_error(path, tmp_path, monkeypatch):
    # Regression (issue 10 #1): a relative or Windows path turned verification off.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OctopodsInputError) as err:
        api_settings(conn(extra={"verify": path}, conn_id="sms"))
    message = str(err.value)
    assert "extra 'verify' of connection 'sms'" in message
    assert repr(path) in message and "does not exist" in message


def test_a_relative_ca_bundle_that_exists_is_used(tmp_path, monkeypatch):
    import certifi

    monkeypatch.chdir(tmp_path)
    (tmp_path / "corp-ca.pem").write_bytes(Path(certifi.where()).read_bytes())
    assert api_settings(conn(extra={"verify": "corp-ca.pem"})).verify == "corp-ca.pem"


def test_a_ca_bundle_that_is_not_pem_is_a_clear_input_error(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(OctopodsInputError, match="could not be loaded"):
        api_settings(conn(extra={"verify": str(bad)}))


@pytest.mark.parametrize("value", [[], {}, 2, 0.5])
def test_a_verify_value_of_another_type_is_refused(value):
    with pytest.raises(OctopodsInputError, match="neither true, false nor a CA bundle path"):
        api_settings(conn(extra={"verify": value}))


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("octo-key\nsecond-line", "a line break at position 9"),
        ("octo\tkey", "a control character at position 5"),
        ("octo\x7fkey", "a control character at position 5"),
        ("\u201coctokey\u201d", "a character outside Latin-1 (a curly quote?) at position 1"),
    ],
)
def test_a_key_that_cannot_travel_in_a_header_is_refused_naming_the_password_field(key, what):
    # Regression (issue 10 #2): such a key was "Could not reach Octopods" (transient) or a bare ValueError.
    with pytest.raises(OctopodsInputError) as err:
        api_key(conn(password=key, conn_id="sms"))
    message = str(err.value)
    assert "password (Channel API key) of connection 'sms'" in message and what in message
    assert key.strip() not in message


def test_a_latin1_key_with_inner_spaces_is_kept():
    assert api_key(conn(password=" octo key\u00e9 ")) == "octo key\u00e9"


def test_missing_key_is_an_auth_error_that_says_where_to_put_it():
    with pytest.raises(OctopodsAuthError, match="password field \\(labelled 'Channel API key'\\)"):
        api_key(conn(password=""))


def test_key_travels_only_in_the_header():
    headers = request_headers("secret-key")
    assert headers["X-Octopods-Auth"] == "secret-key"
    assert status_path(4829174) == "/api/v1/sms/messages/4829174"


def test_2xx_json_is_returned():
    assert interpret_response(200, body({"status": "sent"}), {}, "c") == {"status": "sent"}


@pytest.mark.parametrize("raw", [b"", b"<html>oops</html>", b'{"status": "se', b"\xff\xfe"])
def test_2xx_without_json_is_transient(raw):
    with pytest.raises(OctopodsTransientError, match="not JSON"):
        interpret_response(200, raw, {}, "c")


def test_401_tells_to_update_the_key():
    with pytest.raises(OctopodsAuthError) as err:
        interpret_response(401, body({"request_id": "r", "error": "Unauthorized"}), {}, "my_conn")
    text = str(err.value)
    assert "connection 'my_conn'" in text and "missing or unknown" in text
    assert "Update the connection's Channel API key" in text
    assert err.value.status_code == 401 and err.value.request_id == "r"


def test_error_code_5_is_auth():
    with pytest.raises(OctopodsAuthError, match="rotated or revoked"):
        interpret_response(400, body({"error_code": 5, "error": "revoked"}), {}, "c")


@pytest.mark.parametrize("code", [1, 2, 3, 6, None])
def test_other_400s_are_permanent_bad_requests_with_their_text(code):
    payload = {"request_id": "r", "error": "You must supply message_id in your request payload."}
    if code is not None:
        payload["error_code"] = code
    with pytest.raises(OctopodsBadRequestError, match="You must supply message_id") as err:
        interpret_response(400, body(payload), {}, "c")
    assert err.value.error_code == code


def test_provider_error_4_may_be_retried_by_the_task():
    with pytest.raises(OctopodsApiError) as err:
        interpret_response(400, body({"error_code": 4, "error": "SMS provider error"}), {}, "c")
    assert type(err.value) is OctopodsApiError
    assert "SMS provider error" in str(err.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses(status):
    with pytest.raises(OctopodsTransientError, match=f"HTTP {status}") as err:
        interpret_response(status, b"<html>busy</html>", {"Retry-After": "3"}, "c")
    assert err.value.retry_after == 3.0
    # 408, 425 and 429 say the request was not processed; a 5xx leaves it open.
    assert err.value.request_sent is (status >= 500)
    assert "will ask again" not in str(err.value)


def test_the_auth_error_of_a_connection_test_says_this_connection():
    with pytest.raises(OctopodsAuthError, match="of this connection: the key"):
        interpret_response(401, body({"error": "Unauthorized"}), {}, None)


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
    delays = [backoff_delay(attempt) for attempt in range(1, 12)]
    assert all(0.5 <= d <= BACKOFF_CAP for d in delays)
    assert backoff_delay(1) <= 1.0
    assert BACKOFF_CAP / 2 <= backoff_delay(20) <= BACKOFF_CAP
    assert len({backoff_delay(5) for _ in range(20)}) > 1  # jittered
    assert backoff_delay(1, retry_after=7) == 7
    assert backoff_delay(1, retry_after=30, cap=10) == 30  # the server's word beats our cap
    assert backoff_delay(1, retry_after=500) == BACKOFF_CAP


def test_same_origin_redirect_is_followed():
    assert (
        redirect_target("https://app.octopods.io/api/v1/sms/messages/1", "/api/v1/sms/messages/1/")
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
    assert redirect_target(here, location).endswith("/api/x")


@pytest.mark.parametrize(
    "location",
    ["https://evil.example.com/x", "http://app.octopods.io/x", "https://app.octopods.io:444/x", "//evil/x"],
)
def test_cross_origin_redirect_is_refused(location):
    with pytest.raises(OctopodsBadRequestError, match="the API key was not sent there"):
        redirect_target("https://app.octopods.io/api/v1/sms/messages/1", location)


def test_errors_travel_as_facts_and_old_dicts_still_load():
    from airflow_provider_octopods.exceptions import OctopodsCertificateError, error_from_dict

    with pytest.raises(OctopodsTransientError) as raised:
        interpret_response(429, body({"error": "Slow down", "request_id": "r9"}), {"Retry-After": "4"}, "c")
    rebuilt = error_from_dict(json.loads(json.dumps(raised.value.to_dict())))
    assert isinstance(rebuilt, OctopodsTransientError)
    assert (rebuilt.request_sent, rebuilt.retry_after, rebuilt.status_code, rebuilt.request_id) == (
        False,
        4.0,
        429,
        "r9",
    )
    assert str(rebuilt) == str(raised.value)

    certificate = error_from_dict(OctopodsCertificateError("The TLS certificate ...").to_dict())
    assert type(certificate) is OctopodsCertificateError and certificate.request_sent is False

    # A dict written by 0.1.0 (a trigger event still in the metadata DB) has no request_sent.
    old = {"type": "OctopodsTransientError", "message": "HTTP 503; will ask again.", "status_code": 503}
    loaded = error_from_dict(old)
    assert isinstance(loaded, OctopodsTransientError) and loaded.request_sent is True


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
    from airflow_provider_octopods._http import proxy_for

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected
