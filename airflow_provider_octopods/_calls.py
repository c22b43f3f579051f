"""
The calls the hooks make: which :class:`~airflow_provider_octopods._core.Request` each method sends.

Shared by :class:`~airflow_provider_octopods.hooks.octopods.OctopodsHook` and
:class:`~airflow_provider_octopods.hooks.octopods.OctopodsAsyncHook`, so both validate the same
arguments and send the same bytes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from airflow_provider_octopods._core import Request, json_request
from airflow_provider_octopods._http import SEND_PATH, status_path
from airflow_provider_octopods._outgoing import SendRules, send_rules, with_send_facts
from airflow_provider_octopods._wait import seconds
from airflow_provider_octopods.exceptions import OctopodsSendUnconfirmedError, OctopodsTransientError
from airflow_provider_octopods.models import (
    SentSms,
    SmsStatus,
    validate_body,
    validate_message_id,
    validate_phone,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import timedelta

    from airflow_provider_octopods._http import ApiSettings

#: The message id the connection test asks about: no message has it, so a valid key gets a 400.
PROBE_MESSAGE_ID = 0


class SendOptions(TypedDict, total=False):
    """
    The optional arguments of a send, as keyword arguments of ``send_sms``.

    :param destination_user_name: the recipient's name, shown in Octopods.
    :param open_intercom_conversation: whether to open an Intercom conversation for the SMS.
    :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
    :param default_region: the region of national numbers (default: the connection's extra
        ``default_region``, else none: numbers must start with ``+``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the
        connection's extra ``strict_numbers``, else true); false sends them with a warning.
    :param max_segments: refuse a text that takes more SMS segments than this.
    """

    destination_user_name: str | None
    open_intercom_conversation: bool | None
    intercom_teammate_id: str | int | None
    default_region: str | None
    strict_numbers: bool | None
    max_segments: int | None


class SendArguments:
    """
    The arguments of a send, kept as attributes of the operator or notifier that makes it.

    Attributes rather than one :class:`SendOptions`: Airflow renders the templated ones
    (``destination_phone``, ``body``, ``destination_user_name``) in place, so the options of the
    send are built from them at send time (:meth:`_send_options`).
    """

    destination_phone: str
    body: str
    octopods_conn_id: str
    destination_user_name: str | None
    default_region: str | None
    strict_numbers: bool | None
    max_segments: int | None

    def _keep_send_arguments(self, arguments: Mapping[str, Any]) -> None:
        """
        Keep the send's arguments, each name annotated on this class, as attributes.

        :param arguments: the ``locals()`` of the ``__init__`` that takes (and documents) them.
        """
        for name in SendArguments.__annotations__:
            setattr(self, name, arguments[name])

    def _send_options(self) -> SendOptions:
        """Return the options of ``send_sms`` these attributes hold (as rendered, if templated)."""
        return SendOptions(
            destination_user_name=self.destination_user_name,
            default_region=self.default_region,
            strict_numbers=self.strict_numbers,
            max_segments=self.max_segments,
        )


def send_request(
    destination_phone: str, body: str, settings: ApiSettings, **options: Unpack[SendOptions]
) -> Request:
    """
    Validate a send's arguments and return its request (shared by both hooks).

    Its result is the :class:`~airflow_provider_octopods.models.SentSms` of Octopods' answer, with
    the number as sent (E.164), the text's encoding and its number of segments.

    :param settings: the connection's settings, for the defaults of the send rules.
    """
    rules = send_rules(
        settings, options.get("default_region"), options.get("strict_numbers"), options.get("max_segments")
    )
    payload = send_payload(
        destination_phone,
        body,
        rules,
        destination_user_name=options.get("destination_user_name"),
        open_intercom_conversation=options.get("open_intercom_conversation"),
        intercom_teammate_id=options.get("intercom_teammate_id"),
    )
    return json_request(
        "POST", SEND_PATH, payload, parse=lambda answer: with_send_facts(SentSms.from_api(answer), payload)
    )


@contextlib.contextmanager
def sent_at_most_once() -> Iterator[None]:
    """
    Turn a failed send that may have reached Octopods into an error no retry repeats.

    A transient failure after the request was written (a 5xx answer, a broken connection, a read
    timeout, an unreadable answer, a redirect) leaves unknown whether Octopods accepted the SMS:
    :class:`~airflow_provider_octopods.exceptions.OctopodsSendUnconfirmedError` fails the task
    without retries, so a retry cannot text the recipient twice. A failure before anything was
    sent (``request_sent`` False: no connection, HTTP 429 ...) stays transient, for the task's
    retries. Wraps the send of both hooks (a plain context manager serves ``await`` too).
    """
    try:
        yield
    except OctopodsTransientError as err:
        if not err.request_sent:
            raise
        unconfirmed = OctopodsSendUnconfirmedError(
            f"{err} The SMS may have been sent: it is not sent again, so that a retry cannot text "
            "the recipient twice. Check in Octopods whether it went out before sending it again (or "
            "clearing the task that sent it).",
            status_code=err.status_code,
            error_code=err.error_code,
            error=err.error,
        )
        unconfirmed.request_id = err.request_id  # already named in the message
        raise unconfirmed from None


def status_request(message_id: int | str, timeout: float | timedelta | None = None) -> Request:
    """
    Validate a message id (and a time limit) and return the request of its status (both hooks).

    :param message_id: the message's id.
    :param timeout: the most seconds (or a timedelta) the request may take, or None.
    """
    number = validate_message_id(message_id)
    return Request(
        "GET",
        status_path(number),
        parse=lambda body: SmsStatus.from_api(body, expected_message_id=number),
        timeout=None if timeout is None else seconds(timeout, "timeout"),
    )


def send_payload(
    destination_phone: str,
    body: str,
    rules: SendRules | None = None,
    *,
    destination_user_name: str | None = None,
    open_intercom_conversation: bool | None = None,
    intercom_teammate_id: str | int | None = None,
) -> dict[str, Any]:
    """Validate a send's arguments and return its JSON body (shared by both hooks)."""
    rules = rules or SendRules()
    payload: dict[str, Any] = {
        "destination_phone": validate_phone(
            destination_phone, default_region=rules.default_region, strict=rules.strict_numbers
        ),
        "body": validate_body(body, max_segments=rules.max_segments),
    }
    if destination_user_name is not None:
        payload["destination_user_name"] = str(destination_user_name)
    if open_intercom_conversation is not None:
        payload["open_intercom_conversation"] = bool(open_intercom_conversation)
    if intercom_teammate_id is not None:
        payload["intercom_teammate_id"] = intercom_teammate_id
    return payload


def probe_request() -> Request:
    """Return the connection test's request: a status no message has (a valid key gets a 400)."""
    return Request("GET", status_path(PROBE_MESSAGE_ID))
