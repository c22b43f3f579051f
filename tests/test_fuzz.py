"""
Property-based tests (hypothesis) of everything that reads untrusted input.

- Answers: any status code, any bytes or JSON body, any ``Retry-After`` go through
  ``hooks.octopods.read_answer`` with the parse of a status or a send call
  (``SmsStatus.from_api`` / ``SentSms.from_api``) and come out as a valid value or a clear
  :class:`OctopodsError` that names its request: never a ``KeyError``, ``TypeError``,
  ``ValueError``, ``OverflowError`` ...; a send's error that may hide a sent SMS is always an
  ``OctopodsSendUnconfirmedError``.
- Backoff: any attempt count and ``Retry-After`` give a finite wait within the cap
  (``utils.budget.retry_delay``).
- User input: ``validate_message_id(s)``, ``utils.phone.normalize_phone``,
  ``utils.segments.check_body`` and ``hooks.octopods.connection_settings`` accept a value only in
  its safe form (a message id becomes digits in the path, a connection becomes a plain origin) and
  refuse everything else with an :class:`OctopodsInputError` naming the field.

Examples are generated afresh on each run (no example database is written).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_octopods.exceptions import (
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsTransientError,
    Sent,
    error_from_dict,
)
from airflow_provider_octopods.hooks.octopods import (
    DEFAULT_HOST,
    SEND_PATH,
    Answer,
    ApiSettings,
    Call,
    connection_settings,
    read_answer,
    status_call,
)
from airflow_provider_octopods.models import (
    KNOWN_STATUSES,
    SentSms,
    SmsStatus,
    validate_message_id,
    validate_message_ids,
)
from airflow_provider_octopods.utils.budget import BACKOFF_CAP, parse_retry_after, retry_delay
from airflow_provider_octopods.utils.phone import normalize_phone
from airflow_provider_octopods.utils.segments import MAX_BODY_LENGTH, check_body

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- strategies ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=40) | st.integers(4301, 6000).map(
    lambda n: "9" * n
)
json_message_ids = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | digit_strings
    | digit_strings.map(lambda s: f"  {s}\n")
    | st.text(max_size=40)
    | st.sampled_from(
        ["../1", "1/../2", "1?x=1", "1#f", "%31", "1%2F2", "\uff11\uff12", "٣", "1e3", "+1", "-1", "0x1f"]
    )
    | json_values
)
message_id_values = json_message_ids | st.binary(max_size=10)
timestamps = (
    st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
    | st.text(max_size=30)
    | json_values
)
status_values = st.sampled_from([*KNOWN_STATUSES, "DELIVERED", " sent ", "scheduled", "", "  "]) | json_values
status_objects = st.fixed_dictionaries(
    {},
    optional={
        "message_id": json_message_ids,
        "status": status_values,
        "phone_number": json_values,
        "sent_at": timestamps,
        "delivered_at": timestamps,
        "failure_reason": json_values,
        "request_id": json_values,
        "error": json_values,
        "error_code": json_values,
        "channel_message_id": json_values,
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Bytes, JSON of anything, JSON of status-like objects, or such JSON cut short."""
    kind = draw(st.sampled_from(["bytes", "json", "status", "truncated", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        return ("[" * depth + "]" * depth).encode()
    value = draw(json_values) if kind == "json" else draw(status_objects)
    text = json.dumps(value)
    if kind == "truncated":
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode("utf-8", errors="surrogatepass")


retry_after_values = (
    st.none()
    | st.text(max_size=40)
    | st.integers(-(10**20), 10**20).map(str)
    | st.floats(allow_nan=True, allow_infinity=True).map(str)
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
        lambda d: format_datetime(d, usegmt=True)
    )
    | st.sampled_from(["Mon, 01 Jan 99999 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:60 +2359", "0", "-0", "nan"])
)


def assert_clear(err: OctopodsError, request: str | None = None) -> None:
    """
    An error is clear: a one-sentence message and a JSON form that rebuilds the same type and facts.

    With ``request``, the error names it and says whether anything was sent; a send that may have
    been processed is never a (retryable) transient error.
    """
    message = str(err)
    assert message.strip()
    assert "Traceback" not in message
    data = err.to_dict()
    rebuilt = error_from_dict(json.loads(json.dumps(data)))
    assert type(rebuilt) is type(err)
    assert (rebuilt.request, rebuilt.sent, rebuilt.request_sent) == (err.request, err.sent, err.request_sent)
    if isinstance(err, OctopodsTransientError) and err.retry_after is not None:
        assert 0.0 <= err.retry_after <= BACKOFF_CAP
    if request is not None:
        assert err.request == request
        assert err.sent in (Sent.NO, Sent.MAYBE)
        if request == "send" and err.sent is Sent.MAYBE:
            assert isinstance(err, OctopodsSendUnconfirmedError)


#: The connection of the answers below (its key is redacted from every text they hold).
SETTINGS = ApiSettings(DEFAULT_HOST, key="octo-fuzz-key", label="connection 'octopods_default'")


# -- answers ----------------------------------------------------------------------------------


@FUZZ
@given(
    status_code=st.integers(100, 599) | st.sampled_from([200, 201, 400, 401, 429, 500, 503]),
    body=bodies(),
    retry_after=retry_after_values,
    expected=st.none() | st.integers(1, 2**63 - 1),
)
def test_any_status_answer_is_a_status_or_a_clear_error(status_code, body, retry_after, expected):
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    if expected is not None:
        call = status_call(expected)
    else:  # a status call that does not check the id in the answer
        call = Call("status", "GET", f"{SEND_PATH}/1", parse=SmsStatus.from_api, subject="SMS 1")
    try:
        status = read_answer(call, Answer(status_code, headers, body), SETTINGS)
    except OctopodsError as err:
        assert_clear(err, "status")
        return
    assert 200 <= status_code < 300
    assert isinstance(status, SmsStatus)
    assert status.message_id > 0
    if expected is not None:
        assert status.message_id == expected
    assert status.status == status.status.strip().lower() and status.status
    assert status.is_terminal <= (status.status in KNOWN_STATUSES)
    for stamp in (status.sent_at, status.delivered_at):
        assert stamp is None or stamp.tzinfo is not None
    as_json = json.loads(json.dumps(status.to_dict()))
    assert SmsStatus.from_dict(as_json) == status


@FUZZ
@given(status_code=st.integers(100, 599), body=bodies())
@example(status_code=200, body=b'{"request_id": "0"}')  # found on the 2.11 leg: an untrackable send
def test_any_send_answer_is_a_sent_sms_or_a_clear_error(status_code, body):
    call = Call("send", "POST", SEND_PATH, b"{}", parse=SentSms.from_api, subject="the SMS")
    try:
        sent = read_answer(call, Answer(status_code, {}, body), SETTINGS)
    except OctopodsError as err:
        assert_clear(err, "send")
        return
    assert 200 <= status_code < 300
    assert isinstance(sent, SentSms)
    # a message id, or none with a request id: an untrackable send (HubSpot workspaces answer so)
    assert (sent.message_id is None and sent.request_id) or sent.message_id > 0
    assert json.loads(json.dumps(sent.to_dict()))["message_id"] == sent.message_id


@FUZZ
@given(value=retry_after_values)
def test_retry_after_is_none_or_a_capped_number_of_seconds(value):
    seconds = parse_retry_after(value)
    assert seconds is None or 0.0 <= seconds <= BACKOFF_CAP


@FUZZ
@given(
    attempt=st.integers(-5, 10**6),
    retry_after=st.none() | st.floats(0, BACKOFF_CAP),
    cap=st.floats(0.01, 3600),
)
def test_backoff_is_finite_positive_and_capped_for_any_attempt(attempt, retry_after, cap):
    delay = retry_delay(attempt, retry_after, cap=cap)
    assert math.isfinite(delay)
    assert delay >= 0
    assert delay <= max(cap, min(retry_after or 0.0, BACKOFF_CAP)) + 1e-9
    if retry_after is not None:
        assert delay >= retry_after - 1e-9


# -- user input -------------------------------------------------------------------------------

_PATH = re.compile(r"/api/v1/sms/messages/[1-9][0-9]*")


@FUZZ
@given(value=message_id_values)
def test_message_id_is_a_positive_int_in_a_plain_path_or_a_clear_error(value):
    try:
        number = validate_message_id(value)
    except OctopodsInputError as err:
        assert str(err).startswith("Invalid message_id: ")
        assert_clear(err)
        return
    assert type(number) is int and number > 0
    assert _PATH.fullmatch(status_call(number).path)
    if isinstance(value, str):
        assert value.strip().isascii() and value.strip().isdigit()


@FUZZ
@given(values=st.lists(message_id_values, max_size=5) | message_id_values)
def test_message_ids_are_positive_ints_or_a_clear_error(values):
    try:
        ids = validate_message_ids(values)
    except OctopodsInputError as err:
        assert str(err).startswith("Invalid message_ids")
        return
    assert ids and len(ids) == len(set(ids))
    assert all(_PATH.fullmatch(status_call(i).path) for i in ids)


phone_values = (
    st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)
    | st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True).flatmap(
        lambda p: st.sampled_from(
            [p + "\n", p + "?x=1", p + "\r\nX-Evil: 1", " " + p, p + "\x00", p + "\uff10"]
        )
    )
    | st.text(max_size=30)
    | json_values
)


@FUZZ
@given(value=phone_values)
def test_phone_is_e164_or_a_clear_error(value):
    try:
        phone = normalize_phone(value)
    except OctopodsInputError as err:
        assert str(err).startswith("Invalid destination_phone: ")
        return
    # E.164: a "+", then at most 15 digits (libphonenumber calls some 7-digit numbers valid, e.g. +4312000).
    assert re.fullmatch(r"\+[1-9][0-9]{1,14}", phone, flags=re.ASCII)


@FUZZ
@given(value=st.text(max_size=MAX_BODY_LENGTH + 20) | json_values)
def test_body_is_a_non_empty_bounded_text_or_a_clear_error(value):
    try:
        cost = check_body(value)
    except OctopodsInputError as err:
        assert str(err).startswith("Invalid body: ")
        return
    assert isinstance(value, str) and value.strip() and len(value) <= MAX_BODY_LENGTH
    assert cost.length <= MAX_BODY_LENGTH and cost.segments >= 1


hosts = (
    st.none()
    | st.just("")
    | st.sampled_from(
        [
            "app.octopods.io",
            "https://app.octopods.io",
            "https://app.octopods.io/",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9000",
            "http://octopods.example",
            "https://app.octopods.io:99999",
            "https://app.octopods.io:0",
            "https://app.octopods.io:-1",
            "https://exa mple.com",
            "https://user:pw@app.octopods.io",
            "https://app.octopods.io/api?x=1",
            "ftp://app.octopods.io",
            "https://",
            "https://[::1",
            "https://app.octopods.io\r\nX-Evil: 1",
            "https://app\u3002octopods.io",
            "https://münchen.example",
        ]
    )
    | st.text(max_size=40)
    | st.builds(
        lambda scheme, host, port: f"{scheme}{host}{port}",
        st.sampled_from(["", "http://", "https://", "HTTPS://", "//"]),
        st.text(max_size=20),
        st.sampled_from(["", ":443", ":8080", ":65536", ":abc", ":"]),
    )
)
extras = (
    st.none()
    | st.dictionaries(
        st.sampled_from(
            [
                "timeout",
                "verify",
                "allow_insecure_http",
                "default_region",
                "strict_numbers",
                "max_requests_per_second",
                "other",
            ]
        ),
        json_values,
        max_size=4,
    ).map(json.dumps)
    | json_values.map(json.dumps)
    | st.text(max_size=20)
)


class _Conn:
    """The fields of an Airflow connection that ``connection_settings`` reads (any values at all)."""

    def __init__(self, host: Any, port: Any, extra: str | None, password: str = "octo-fuzz-key") -> None:
        self.conn_id = "octopods_fuzz"
        self.host, self.port, self.extra, self.password = host, port, extra, password

    @property
    def extra_dejson(self) -> Any:  # as Airflow's: the parsed JSON, whatever its type, or {}
        try:
            return json.loads(self.extra) if self.extra else {}
        except ValueError:
            return {}


@FUZZ
@given(host=hosts, port=st.none() | st.integers(-(2**20), 2**20), extra=extras)
def test_connection_settings_are_a_plain_origin_or_a_clear_error(host, port, extra):
    try:
        result = connection_settings(_Conn(host, port, extra))
    except OctopodsInputError as err:
        assert "connection 'octopods_fuzz'" in str(err)
        return
    assert isinstance(result, ApiSettings)
    parts = urlsplit(result.base_url)
    assert parts.scheme in {"http", "https"}
    assert parts.hostname
    assert not (parts.path or parts.query or parts.fragment or parts.username or parts.password)
    assert parts.port is None or 1 <= parts.port <= 65535
    assert not re.search(r"[\s\x00-\x1f\x7f]", result.base_url)
    assert math.isfinite(result.timeout) and result.timeout > 0
    assert result.verify is True or result.verify is False or isinstance(result.verify, str)


passwords = (
    st.none()
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(codec="latin-1"), max_size=40)
    | st.sampled_from(["octo-key", " octo-key\n", "octo\r\nX-Evil: 1", "\u201coctokey\u201d", "octo\x00key"])
)


@FUZZ
@given(password=passwords)
def test_a_key_is_one_ascii_line_without_control_characters_or_a_clear_error(password):
    try:
        key = connection_settings(_Conn("app.octopods.io", None, None, password)).key
    except OctopodsError as err:  # an empty key is an auth error, one that cannot travel an input error
        assert type(err).__name__ in ("OctopodsAuthError", "OctopodsInputError")
        assert "connection 'octopods_fuzz'" in str(err).lower()
        assert not (password or "").strip() or password.strip() not in str(err)
        return
    assert key == password.strip() and key
    assert key.isascii() and not re.search(r"[\x00-\x1f\x7f]", key)


def test_connection_settings_refuses_a_connection_whose_extra_is_not_an_object():
    with pytest.raises(OctopodsInputError, match="extra of connection 'octopods_fuzz'"):
        connection_settings(_Conn("app.octopods.io", None, json.dumps([1, 2])))


@pytest.mark.parametrize("timeout", ["nan", "inf", float("inf"), "-1", 0])
def test_connection_settings_refuses_a_timeout_that_is_not_a_positive_finite_number(timeout):
    with pytest.raises(OctopodsInputError, match="extra 'timeout'"):
        connection_settings(_Conn("app.octopods.io", None, json.dumps({"timeout": timeout})))


def test_a_message_id_too_long_for_int_is_an_input_error_not_a_value_error():
    with pytest.raises(OctopodsInputError, match="message_id"):
        validate_message_id("9" * 5000)
    with pytest.raises(OctopodsTransientError, match="malformed"):
        SmsStatus.from_api({"message_id": "9" * 5000, "status": "delivered"})


def test_backoff_after_a_day_of_failures_is_still_the_cap():
    assert retry_delay(100_000, cap=60.0) <= 60.0
    assert retry_delay(100_000, cap=60.0) >= 30.0


def test_far_future_retry_after_is_capped():
    far = format_datetime(datetime.now(UTC) + timedelta(days=3650), usegmt=True)
    assert parse_retry_after(far) == BACKOFF_CAP
