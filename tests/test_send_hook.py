"""
Sending through the hooks: ``OctopodsHook.send_sms`` and ``OctopodsAsyncHook.send_sms`` against the
simulator over real HTTP. Input is checked before any request; every Octopods error surfaces
with Octopods' own text; a send is made once, never repeated.
"""

from __future__ import annotations

import json
from typing import Any

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
    ApiSettings,
    OctopodsAsyncHook,
    OctopodsHook,
    send_call,
)
from airflow_provider_octopods.models import SentSms
from airflow_provider_octopods.testing import Reply
from tests.conftest import TEST_API_KEY

SEND = "/api/v1/sms/messages"

#: Octopods' documented send errors (HTTP 400): error_code, error text, the exception raised.
API_ERRORS = [
    (1, "You must supply destination_phone in your request payload.", OctopodsBadRequestError),
    (2, "The message body is empty.", OctopodsBadRequestError),
    (3, "The destination phone number is invalid.", OctopodsBadRequestError),
    (4, "The SMS provider returned an error.", OctopodsApiError),
]
BAD_PHONES = [
    "15551234567",
    "+1555123",
    "+1234567890123456",
    "+1 555 123 4567",
    "+1555123456a",
    "",
    None,
    15551234567,
]


def _send_payload(destination_phone: str, body: str, **options: Any) -> dict[str, Any]:
    """The JSON body ``send_call`` builds (it checks the number and text, then encodes the payload)."""
    call, _ = send_call(destination_phone, body, ApiSettings("https://app.octopods.io", "k"), **options)
    assert call.body is not None
    return json.loads(call.body)


def _api_error(code: int, text: str) -> Reply:
    return Reply(400, {"request_id": f"req-{code}", "error_code": code, "error": text})


def test_send_returns_sent_sms_and_delivers_the_text_intact(octopods_conn):
    body = "Grüße 👋 — your report is ready."

    sent = OctopodsHook().send_sms("+4915112345678", body)

    assert isinstance(sent, SentSms)
    assert isinstance(sent.message_id, int)
    assert sent.to_dict() == {
        "message_id": sent.message_id,
        "request_id": sent.request_id,
        "channel_message_id": sent.channel_message_id,
        "destination_phone": "+4915112345678",
        "encoding": "UCS-2",
        "segments": 1,
    }
    assert sent.request_id and sent.channel_message_id
    message = octopods_conn.messages[sent.message_id]
    assert (message.phone_number, message.body) == ("+4915112345678", body)
    assert octopods_conn.request_count(SEND) == 1


@pytest.mark.parametrize("phone", ["+68271234", "+498001234567890"])
def test_e164_bounds_8_and_15_digits_are_sent(phone, octopods_conn):
    assert OctopodsHook().send_sms(phone, "hi").message_id in octopods_conn.messages


def test_body_of_exactly_1600_characters_is_sent(octopods_conn):
    sent = OctopodsHook().send_sms("+12015550123", "x" * 1600)
    assert len(octopods_conn.messages[sent.message_id].body) == 1600


@pytest.mark.parametrize("phone", BAD_PHONES)
def test_bad_phone_names_the_field_and_makes_no_request(phone, octopods_conn):
    with pytest.raises(OctopodsInputError, match=r"^Invalid destination_phone: ") as err:
        OctopodsHook().send_sms(phone, "hello")  # type: ignore[arg-type]
    assert err.value.field == "destination_phone"
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [("", "the SMS text is empty"), ("  \n", "the SMS text is empty"), ("x" * 1601, "at most 1600")],
)
def test_bad_body_names_the_field_and_makes_no_request(body, why, octopods_conn):
    with pytest.raises(OctopodsInputError, match=f"^Invalid body: .*{why}") as err:
        OctopodsHook().send_sms("+12015550123", body)
    assert err.value.field == "body"
    assert octopods_conn.request_count() == 0


async def test_async_hook_validates_before_any_request(octopods_conn):
    async with OctopodsAsyncHook() as hook:
        with pytest.raises(OctopodsInputError, match="destination_phone"):
            await hook.send_sms("+1 555", "hello")
        with pytest.raises(OctopodsInputError, match="body"):
            await hook.send_sms("+12015550123", "")
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize(("code", "text", "error_type"), API_ERRORS)
def test_api_errors_1_to_4_surface_with_their_text(code, text, error_type, octopods_conn):
    octopods_conn.inject(_api_error(code, text))

    with pytest.raises(error_type) as err:
        OctopodsHook().send_sms("+12015550123", "hello")

    assert text in str(err.value)
    assert f"request_id req-{code}" in str(err.value)
    assert (err.value.status_code, err.value.error_code, err.value.error) == (400, code, text)
    assert not isinstance(err.value, OctopodsTransientError)
    assert octopods_conn.request_count(SEND) == 1


@pytest.mark.parametrize(("code", "text", "error_type"), API_ERRORS)
async def test_async_api_errors_1_to_4_surface_with_their_text(code, text, error_type, octopods_conn):
    octopods_conn.inject(_api_error(code, text))

    async with OctopodsAsyncHook() as hook:
        with pytest.raises(error_type, match=text.replace(".", r"\.")) as err:
            await hook.send_sms("+12015550123", "hello")

    assert err.value.error_code == code
    assert octopods_conn.request_count(SEND) == 1


def test_provider_error_from_the_simulator_magic_number(octopods_conn):
    with pytest.raises(OctopodsApiError, match=r"error_code 4\): The SMS provider returned an error\."):
        OctopodsHook().send_sms("+12015550140", "hello")
    assert octopods_conn.messages == {}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply(400, {"error_code": 5, "error": "The API key has been rotated or revoked."}), "rotated"),
        (Reply(401, {"error": "Unauthorized"}), "missing or unknown"),
    ],
)
def test_rejected_key_tells_to_update_the_connection(reply, match, octopods_conn):
    octopods_conn.inject(reply)

    with pytest.raises(OctopodsAuthError, match=match) as err:
        OctopodsHook().send_sms("+12015550123", "hello")

    assert "Update the connection's Channel API key" in str(err.value)
    assert TEST_API_KEY not in str(err.value)
    assert TEST_API_KEY not in json.dumps(err.value.to_dict())


def test_rate_limit_is_raised_with_retry_after_and_not_retried(octopods_conn):
    octopods_conn.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "7"}))

    with pytest.raises(OctopodsTransientError, match="rate limit") as err:
        OctopodsHook(max_retries=5).send_sms("+12015550123", "hello")

    assert err.value.retry_after == 7.0
    assert octopods_conn.request_count(SEND) == 1


def test_malformed_success_answer_is_unconfirmed_not_a_crash(octopods_conn):
    from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError

    octopods_conn.inject(Reply(201, {"request_id": "req-x", "message_id": "abc"}))

    with pytest.raises(OctopodsSendUnconfirmedError, match=r"malformed.*The SMS may have been sent") as err:
        OctopodsHook().send_sms("+12015550123", "hello")
    assert octopods_conn.request_count(SEND) == 1
    assert (err.value.sent, err.value.request, err.value.request_id) == (Sent.MAYBE, "send", "req-x")


def test_payload_carries_optional_fields_only_when_given():
    assert _send_payload("+12015550123", "hi") == {
        "destination_phone": "+12015550123",
        "body": "hi",
    }
    assert _send_payload(
        "+12015550123",
        "hi",
        destination_user_name="Ada",
        open_intercom_conversation=False,
        intercom_teammate_id=42,
    ) == {
        "destination_phone": "+12015550123",
        "body": "hi",
        "destination_user_name": "Ada",
        "open_intercom_conversation": False,
        "intercom_teammate_id": 42,
    }


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_answer_to_a_send_is_never_followed_and_never_called_refused(status, octopods_conn):
    # Regression (issue 10 #4): the body was re-POSTed to the Location, and the 405 that followed
    # was reported as "Octopods refused the request" though the send had been accepted.
    from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError
    from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator

    octopods_conn.inject(Reply(status, b"", {"Location": "/api/v1/sms/messages/4829999"}))
    with pytest.raises(OctopodsSendUnconfirmedError) as err:
        OctopodsHook().send_sms("+12015550123", "hi")
    assert err.value.request_sent is True and err.value.status_code == status
    assert "may have been processed" in str(err.value)
    assert "refused" not in str(err.value)

    octopods_conn.inject(Reply(status, b"", {"Location": "/api/v1/sms/messages/4829999"}))
    operator = OctopodsSendSmsOperator(task_id="send", destination_phone="+12015550123", body="hi")
    with pytest.raises(OctopodsSendUnconfirmedError, match="The SMS may have been sent"):
        operator.execute({})
    assert [r.method for r in octopods_conn.requests] == ["POST", "POST"], "one POST per send, nothing else"
