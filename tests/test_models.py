"""Unit tests: status parsing, input validation, serialization of statuses and errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsError,
    OctopodsInputError,
    OctopodsTransientError,
    Sent,
    error_from_dict,
)
from airflow_provider_octopods.models import (
    SentSms,
    SmsStatus,
    failure_message,
    timeout_message,
    validate_message_id,
    validate_message_ids,
)
from airflow_provider_octopods.utils.phone import normalize_phone
from airflow_provider_octopods.utils.segments import check_body

DOC_EXAMPLE = {
    "request_id": "b14f0e5a-3f3c-4e9c-b1d1-6d19f0c4a721",
    "message_id": 4829174,
    "status": "delivered",
    "phone_number": "+12015550123",
    "sent_at": "2026-04-24T10:23:45Z",
    "delivered_at": "2026-04-24T10:23:49Z",
    "failure_reason": None,
}


def test_parses_the_documented_example():
    status = SmsStatus.from_api(DOC_EXAMPLE, expected_message_id=4829174)

    assert status.message_id == 4829174
    assert status.status == "delivered"
    assert status.is_terminal and status.is_delivered and not status.is_failed
    assert status.sent_at == datetime(2026, 4, 24, 10, 23, 45, tzinfo=UTC)
    assert status.delivered_at == datetime(2026, 4, 24, 10, 23, 49, tzinfo=UTC)
    assert status.request_id == DOC_EXAMPLE["request_id"]


@pytest.mark.parametrize(
    ("raw", "terminal", "delivered", "failed"),
    [
        ("queued", False, False, False),
        ("SENT", False, False, False),
        ("Delivered", True, True, False),
        ("FAILED", True, False, True),
        (" undelivered ", True, False, True),
        ("rejected_by_moon", False, False, False),
    ],
)
def test_status_is_compared_case_insensitively(raw, terminal, delivered, failed):
    status = SmsStatus.from_api({**DOC_EXAMPLE, "status": raw})

    assert status.status == raw.strip().lower()
    assert (status.is_terminal, status.is_delivered, status.is_failed) == (terminal, delivered, failed)


def test_unknown_status_is_kept_not_terminal():
    status = SmsStatus.from_api({**DOC_EXAMPLE, "status": "scheduled"})

    assert not status.is_known
    assert not status.is_terminal


def test_null_timestamps_for_stages_not_reached():
    status = SmsStatus.from_api({**DOC_EXAMPLE, "status": "queued", "sent_at": None, "delivered_at": None})

    assert status.sent_at is None and status.delivered_at is None


def test_timestamps_without_offset_are_utc_and_bad_ones_are_dropped():
    status = SmsStatus.from_api(
        {**DOC_EXAMPLE, "sent_at": "2026-04-24T10:23:45", "delivered_at": "yesterday"}
    )

    assert status.sent_at == datetime(2026, 4, 24, 10, 23, 45, tzinfo=UTC)
    assert status.delivered_at is None


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "delivered",
        {},
        {"message_id": 4829174},
        {"message_id": 4829174, "status": 3},
        {"message_id": 4829174, "status": ""},
        {"message_id": "abc", "status": "sent"},
        {"message_id": True, "status": "sent"},
        {"message_id": 1, "status": "sent"},
    ],
)
def test_malformed_answers_are_transient_errors_not_crashes(payload):
    with pytest.raises(OctopodsTransientError, match="malformed status answer"):
        SmsStatus.from_api(payload, expected_message_id=4829174)


def test_to_dict_is_json_safe_and_round_trips():
    status = SmsStatus.from_api({**DOC_EXAMPLE, "status": "undelivered", "failure_reason": "out of coverage"})

    data = json.loads(json.dumps(status.to_dict()))

    assert data["sent_at"] == "2026-04-24T10:23:45+00:00"
    assert SmsStatus.from_dict(data) == status


def test_sent_sms_parses_and_serializes():
    sent = SentSms.from_api({"request_id": "r", "message_id": 42, "channel_message_id": "c-1"})

    assert sent == SentSms(message_id=42, request_id="r", channel_message_id="c-1")
    assert sent.to_dict() == {"message_id": 42, "request_id": "r", "channel_message_id": "c-1"}


@pytest.mark.parametrize(("value", "expected"), [(4829174, 4829174), ("4829174", 4829174), (" 12 ", 12)])
def test_message_id_accepts_int_and_digit_strings(value, expected):
    assert validate_message_id(value) == expected


@pytest.mark.parametrize(
    "value", ["", "   ", "../1", "1?x=1", "1/2", "-1", -5, 0, 1.5, "1.5", None, True, [1], "١٢٣", "0x10"]
)
def test_message_id_rejects_anything_else_naming_the_field(value):
    with pytest.raises(OctopodsInputError, match=r"^Invalid message_id: ") as err:
        validate_message_id(value)

    assert err.value.field == "message_id"
    assert "message_id returned when the message was sent" in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([1, "2", 3], [1, 2, 3]),
        ("1, 2,3", [1, 2, 3]),
        ("[4, 5]", [4, 5]),
        ((7, 7, 8), [7, 8]),
        # One id, as native rendering gives "{{ ... | join(',') }}" of one send: a list of one
        # (it was refused as "got int"); one send's XCom too.
        (4829174, [4829174]),
        ({"message_id": 9, "request_id": "r"}, [9]),
    ],
)
def test_message_ids_accept_lists_and_rendered_strings(value, expected):
    assert validate_message_ids(value) == expected


@pytest.mark.parametrize("value", [[], "", "[]", None, True, 1.5, b"5", [1, "x"]])
def test_message_ids_reject_empty_and_bad_items(value):
    with pytest.raises(OctopodsInputError, match="message_ids"):
        validate_message_ids(value)


@pytest.mark.parametrize("phone", ["+12015550123", "+4915112345678", "+68271234"])
def test_valid_phones(phone):
    assert normalize_phone(phone) == phone


@pytest.mark.parametrize(
    "phone", ["15551234567", "+0123456789", "+1555", "+1 555 123 4567", "+1234567890123456", 1]
)
def test_invalid_phones_name_the_field_and_the_format(phone):
    with pytest.raises(OctopodsInputError, match=r"^Invalid destination_phone: "):
        normalize_phone(phone)


def test_body_rules():
    assert check_body("x" * 1600).length == 1600
    with pytest.raises(OctopodsInputError, match="Invalid body: the SMS text is empty"):
        check_body("  ")
    with pytest.raises(OctopodsInputError, match="1601 characters; Octopods accepts at most 1600"):
        check_body("x" * 1601)


def test_failure_message_names_each_failed_message_with_reason_verbatim():
    ok = SmsStatus(1, "delivered")
    bad = SmsStatus(2, "failed", failure_reason="The phone number is not a valid mobile subscriber.")
    worse = SmsStatus(3, "undelivered")

    assert failure_message([ok]) is None
    text = failure_message([ok, bad, worse])

    assert text is not None
    assert text.splitlines() == [
        "2 of 3 SMS were not delivered.",
        "SMS 2 was not delivered: status 'failed', failure_reason: "
        "The phone number is not a valid mobile subscriber.",
        "SMS 3 was not delivered: status 'undelivered', failure_reason: none given by Octopods",
    ]


def test_timeout_message_names_last_status_and_error():
    text = timeout_message([1, 2], {1: SmsStatus(1, "queued")}, 30, "Octopods answered HTTP 503")

    assert text == (
        "Timed out after 30 s waiting for delivery. SMS 1: last status 'queued'; SMS 2: no status seen."
        " Last error: Octopods answered HTTP 503"
    )


@pytest.mark.parametrize(
    "error",
    [
        OctopodsAuthError("bad key", status_code=401, request_id="r1"),
        OctopodsBadRequestError("nope", status_code=400, error_code=1, error="missing"),
        OctopodsTransientError("slow", status_code=429, retry_after=2.0),
        OctopodsTransientError("slow", sent=Sent.NO, request="status", status_code=429, retry_after=2.0),
        OctopodsTransientError("broke", sent=Sent.MAYBE, request="run"),
        OctopodsApiError("provider", status_code=400, error_code=4, sent=Sent.NO, request="send"),
        OctopodsInputError("message_id", "bad"),
        OctopodsError("plain"),
    ],
)
def test_errors_round_trip_through_json(error):
    rebuilt = error_from_dict(json.loads(json.dumps(error.to_dict())))

    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    for attr in ("status_code", "error_code", "error", "request_id", "retry_after", "field"):
        assert getattr(rebuilt, attr, None) == getattr(error, attr, None)
    assert (rebuilt.request, rebuilt.sent, rebuilt.request_sent) == (
        error.request,
        error.sent,
        error.request_sent,
    )


def test_permanent_errors_fail_without_retry_and_transient_ones_do_not():
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert issubclass(OctopodsAuthError, AirflowFailException)
    assert issubclass(OctopodsBadRequestError, AirflowFailException)
    assert not issubclass(OctopodsTransientError, AirflowFailException)
    assert not issubclass(OctopodsApiError, AirflowFailException)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-24T10:23:45Z", datetime(2026, 4, 24, 10, 23, 45, tzinfo=UTC)),
        ("2026-04-24T10:23:45", datetime(2026, 4, 24, 10, 23, 45, tzinfo=UTC)),  # no offset: UTC
        ("2026-04-24T15:53:45.5+05:30", datetime(2026, 4, 24, 10, 23, 45, 500000, tzinfo=UTC)),
        ("2026-04-24 10:23:45+00:00", datetime(2026, 4, 24, 10, 23, 45, tzinfo=UTC)),
        ("2026-04-24", datetime(2026, 4, 24, tzinfo=UTC)),
        ("12:00", None),  # a time alone is no timestamp
        ("P1D", None),
        ("yesterday", None),
    ],
)
def test_iso_8601_timestamps_parse_through_pendulum(text, expected):
    from airflow_provider_octopods.models import parse_timestamp

    assert parse_timestamp(text) == expected
