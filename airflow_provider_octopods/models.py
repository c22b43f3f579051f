"""
The data of the provider: what Octopods says about an SMS, parsed once for the sync and async paths.

Also the checks of user input that every kind shares (message ids, durations, deadlines), the
arguments of a send, and the sentences that describe a failed or timed-out wait, so the poke and
deferrable paths of the sensor say the same. Phone numbers and texts are checked by
:mod:`airflow_provider_octopods.utils.phone` and :mod:`airflow_provider_octopods.utils.segments`.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, overload

import pendulum

from airflow_provider_octopods.exceptions import OctopodsInputError, OctopodsTransientError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
UNDELIVERED = "undelivered"
#: The recipient read the message (some channels report it): delivered, and more.
READ = "read"
#: Octopods does not know yet; polling goes on.
UNKNOWN = "unknown"

#: Terminal statuses that mean the SMS reached the handset.
DELIVERED_STATUSES: frozenset[str] = frozenset({DELIVERED, READ})
#: Terminal statuses that mean the SMS did not reach the handset.
FAILED_STATUSES: frozenset[str] = frozenset({FAILED, UNDELIVERED})
#: Polling further will not change these.
TERMINAL_STATUSES: frozenset[str] = DELIVERED_STATUSES | FAILED_STATUSES
#: Statuses Octopods documents; another one is logged once and treated as not final.
KNOWN_STATUSES: frozenset[str] = TERMINAL_STATUSES | {QUEUED, SENT, UNKNOWN}

#: The largest message id accepted (a signed 64-bit integer), so an id always fits in a path.
MAX_MESSAGE_ID = 2**63 - 1
#: The longest rendered list (characters) read as a literal; a longer one is read as comma-separated.
MAX_RENDERED_LENGTH = 2_000_000
_DIGITS = re.compile(r"[0-9]+")
#: The longest duration accepted (ten years): a deadline must stay a date Airflow can store.
MAX_SECONDS = 10 * 365 * 24 * 3600.0


def seconds(value: Any, field: str, *, positive: bool = False) -> float:
    """
    Return a duration in seconds from a number or a :class:`~datetime.timedelta`, or raise clearly.

    :param value: the duration.
    :param field: the argument's name, for the error message.
    :param positive: refuse zero too (an interval of 0 would poll in a busy loop).
    """
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number != number:
        raise OctopodsInputError(field, f"got {value!r:.40}; pass seconds as a number or a timedelta.")
    if number < 0 or (positive and number == 0):
        least = "more than 0" if positive else "at least 0"
        raise OctopodsInputError(field, f"got {number:g} s; pass {least} seconds.")
    if number > MAX_SECONDS:
        raise OctopodsInputError(field, f"got {number:g} s; pass at most {MAX_SECONDS:.0f} s (ten years).")
    return float(number)


def deadline(value: Any, field: str = "end_time") -> float | None:
    """
    Return a deadline as a UNIX timestamp, or None for none.

    Accepts a timestamp, a datetime or an ISO 8601 string; a naive one is UTC, as everywhere in
    Airflow.

    :param value: the deadline.
    :param field: the argument's name, for the error message.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            raise OctopodsInputError(field, f"{value!r:.40} is not an ISO 8601 date and time.")
        return parsed.timestamp()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
        raise OctopodsInputError(
            field, f"got {value!r:.40}; pass a UNIX time, a datetime or an ISO 8601 text."
        )
    return float(value)


def _literal(text: str) -> Any:
    """Return the Python or JSON literal a rendered template holds (``"['1', '2']"``), else ``text``."""
    if text[:1] in "[({" and len(text) <= MAX_RENDERED_LENGTH:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return text


def validate_message_id(value: Any, field: str = "message_id") -> int:
    """
    Return ``value`` as a positive ``int`` message id, or raise a clear :class:`OctopodsInputError`.

    Accepts an ``int``, a string of ASCII digits (as rendered from XCom), or the send operator's
    XCom (a dict, or its rendered text, holding ``message_id``). Rejects everything else, in
    particular anything that could alter the request path or query (``../1``, ``1?x=1``).

    :param value: the message id to check.
    :param field: the argument's name, for the error message.
    """
    hint = "pass the integer message_id returned when the SMS was sent (e.g. 4829174)"
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _literal(value.strip())
    if isinstance(value, Mapping) and "message_id" in value:
        value = value["message_id"]
    if isinstance(value, bool):
        raise OctopodsInputError(field, f"got a boolean ({value!r}); {hint}.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().strip("'\"")
        shown = repr(value) if len(value) <= 40 else repr(value[:40] + "...")
        if not _DIGITS.fullmatch(text):
            raise OctopodsInputError(field, f"{shown} is not a string of digits; {hint}.")
        if len(text.lstrip("0")) > len(str(MAX_MESSAGE_ID)):  # before int(): Python refuses > 4300 digits
            raise OctopodsInputError(field, f"{shown} has more digits than any message id; {hint}.")
        number = int(text)
    else:
        raise OctopodsInputError(field, f"got {type(value).__name__} {value!r:.40}; {hint}.")
    if not 0 < number <= MAX_MESSAGE_ID:
        what = str(number) if number.bit_length() <= 64 else "a number of more than 19 digits"
        problem = "is not a positive integer" if number <= 0 else "is larger than any message id"
        raise OctopodsInputError(field, f"{what} {problem}; {hint}.")
    return number


def validate_message_ids(values: Any, field: str = "message_ids") -> list[int]:
    """
    Return the message ids as a non-empty list of ints, in input order, without duplicates.

    Accepts any sequence or iterable of ids that is not a string (a list, a tuple, the output of a
    mapped task), each item an id or the send operator's XCom (a dict holding ``message_id``); or
    a string: comma-separated ids (``"4829174, 4829175"``), or a rendered Python or JSON list
    (``"[4829174, 4829175]"``, ``"['4829174', '4829175']"``).

    :param values: the ids to check.
    :param field: the argument's name, for the error message.
    """
    if isinstance(values, str):
        values = _literal(values.strip())
    if isinstance(values, str):
        text = values.strip().removeprefix("[").removesuffix("]")
        items: Iterable[Any] = [part for part in (p.strip() for p in text.split(",")) if part]
    elif isinstance(values, Iterable) and not isinstance(values, (bytes, Mapping)):
        items = values
    else:
        raise OctopodsInputError(
            field, f"got {type(values).__name__}; pass a list of message ids or a comma-separated string."
        )
    ids = list(dict.fromkeys(validate_message_id(item, f"{field}[{i}]") for i, item in enumerate(items)))
    if not ids:
        raise OctopodsInputError(field, "the list is empty; pass at least one message id.")
    return ids


#: ``2026-04-24T10:23:45Z``, with optional fractions and offset: the timestamps Octopods sends.
_COMMON_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)


def parse_timestamp(value: str) -> datetime | None:
    """
    Parse an ISO 8601 date and time into an aware datetime (UTC when it has no offset), or None.

    A date alone is its midnight, UTC; a time alone or a duration is not a timestamp and gives None.

    :param value: the text, e.g. ``2026-04-24T10:23:45Z``.
    """
    text = value.strip()
    if _COMMON_TIMESTAMP.fullmatch(text):  # what Octopods sends: the standard library reads it 50x faster
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:  # out of range: month 13, second 61
            return None
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    try:
        parsed = pendulum.parse(text, exact=True)
    except (ValueError, TypeError, OverflowError):  # pendulum's ParserError is a ValueError
        return None
    if isinstance(parsed, datetime):
        return parsed
    if isinstance(parsed, date):
        return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    return None


def _parse_time(value: Any, field: str) -> datetime | None:
    """Parse a timestamp of Octopods' answer; None, with a warning, if absent or unreadable."""
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        log.warning("Octopods sent an unreadable %s (%.40r); ignoring it.", field, value)
    return parsed


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _malformed(what: str, request_id: Any = None, answer: str = "status") -> OctopodsTransientError:
    return OctopodsTransientError(
        f"Octopods sent a malformed {answer} answer ({what}).",
        request_id=request_id if isinstance(request_id, str) else None,
    )


class _StatusIn:
    """
    A read-only attribute of :class:`SmsStatus`: whether its ``status`` is one of ``statuses``.

    Each such attribute is documented by the string after its assignment, as any attribute.

    :param statuses: the statuses for which the attribute is true.
    """

    def __init__(self, statuses: frozenset[str]) -> None:
        self.statuses = statuses

    @overload
    def __get__(self, sms: None, owner: type[SmsStatus]) -> _StatusIn: ...
    @overload
    def __get__(self, sms: SmsStatus, owner: type[SmsStatus] | None = None) -> bool: ...
    def __get__(self, sms: SmsStatus | None, owner: type[SmsStatus] | None = None) -> _StatusIn | bool:
        return self if sms is None else sms.status in self.statuses


@dataclass(frozen=True)
class SmsStatus:
    """
    The status of one SMS, as Octopods reports it.

    :param message_id: the message id.
    :param status: the status, lower-cased (``queued``, ``sent``, ``unknown``, ``delivered``,
        ``read``, ``failed``, ``undelivered``, or a value Octopods added later).
    :param phone_number: the destination number.
    :param sent_at: when the SMS provider handed the message to the network, if it did.
    :param delivered_at: when the carrier confirmed delivery, if it did.
    :param failure_reason: Octopods' reason, verbatim, when the status is a failure (its
        ``failure_reason``, else its ``status_message``).
    :param request_id: Octopods' id of the request that returned this status.
    """

    message_id: int
    status: str
    phone_number: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    failure_reason: str | None = None
    request_id: str | None = None

    is_terminal = _StatusIn(TERMINAL_STATUSES)
    """Whether polling further cannot change the status."""
    is_delivered = _StatusIn(DELIVERED_STATUSES)
    """Whether the carrier confirmed delivery (``delivered``, or ``read``)."""
    is_failed = _StatusIn(FAILED_STATUSES)
    """Whether the SMS ended without reaching the handset."""
    is_known = _StatusIn(KNOWN_STATUSES)
    """Whether the status is one Octopods documents."""

    @classmethod
    def from_api(cls, payload: Any, expected_message_id: int | None = None) -> SmsStatus:
        """
        Parse the JSON body of ``GET /api/v1/sms/messages/:message_id``.

        A body that is not an object, lacks ``status`` or carries the wrong types raises
        :class:`OctopodsTransientError` (treated like any transient trouble: ask again), never a
        ``KeyError`` or ``TypeError``.

        :param payload: the decoded JSON body.
        :param expected_message_id: the id that was asked for; used when the body omits it.
        """
        if not isinstance(payload, dict):
            raise _malformed(f"expected a JSON object, got {type(payload).__name__}")
        request_id = payload.get("request_id")
        status = payload.get("status")
        if not isinstance(status, str) or not status.strip():
            raise _malformed("no status", request_id)
        raw_id = payload.get("message_id", expected_message_id)
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)):
            raise _malformed("no message_id", request_id)
        try:
            message_id = validate_message_id(raw_id)
        except OctopodsInputError:
            raise _malformed(f"message_id {raw_id!r:.30}", request_id) from None
        if expected_message_id is not None and message_id != expected_message_id:
            raise _malformed(f"asked for {expected_message_id}, answered {message_id}", request_id)
        return cls(
            message_id=message_id,
            status=status.strip().lower(),
            phone_number=_optional_str(payload.get("phone_number")),
            sent_at=_parse_time(payload.get("sent_at"), "sent_at"),
            delivered_at=_parse_time(payload.get("delivered_at"), "delivered_at"),
            failure_reason=_optional_str(payload.get("failure_reason") or payload.get("status_message")),
            request_id=_optional_str(request_id),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe values (timestamps as ISO-8601 strings) for XCom and trigger events."""
        return {
            "message_id": self.message_id,
            "status": self.status,
            "phone_number": self.phone_number,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "failure_reason": self.failure_reason,
            "request_id": self.request_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SmsStatus:
        """
        Rebuild a status from :meth:`to_dict`.

        :param data: the dictionary made by ``to_dict``.
        """
        return cls(
            message_id=int(data["message_id"]),
            status=str(data["status"]),
            phone_number=data.get("phone_number"),
            sent_at=_parse_time(data.get("sent_at"), "sent_at"),
            delivered_at=_parse_time(data.get("delivered_at"), "delivered_at"),
            failure_reason=data.get("failure_reason"),
            request_id=data.get("request_id"),
        )

    def describe(self) -> str:
        """One line for logs and error messages."""
        text = f"SMS {self.message_id}: {self.status}"
        if self.failure_reason:
            text += f": {self.failure_reason}"
        return text


@dataclass(frozen=True)
class SentSms:
    """The answer of ``POST /api/v1/sms/messages``, with what the hook knows of the send."""

    message_id: int
    """The id to poll the status with."""
    request_id: str | None = None
    """Octopods' id of the send request."""
    channel_message_id: str | None = None
    """The id of the message in the SMS channel."""
    destination_phone: str | None = None
    """The number the SMS was sent to, in E.164 form (set by the hook)."""
    encoding: str | None = None
    """``GSM-7`` or ``UCS-2`` (set by the hook)."""
    segments: int | None = None
    """How many SMS segments the text took (set by the hook)."""

    @classmethod
    def from_api(cls, payload: Any) -> SentSms:
        """
        Parse the JSON body of a ``201`` answer to a send.

        :param payload: the decoded JSON body.
        """
        if not isinstance(payload, dict):
            raise _malformed(f"expected a JSON object, got {type(payload).__name__}", answer="send")
        raw_id = payload.get("message_id")
        try:
            message_id = validate_message_id(raw_id)
        except OctopodsInputError:
            raise _malformed(f"message_id {raw_id!r:.30}", payload.get("request_id"), "send") from None
        return cls(
            message_id=message_id,
            request_id=_optional_str(payload.get("request_id")),
            channel_message_id=_optional_str(payload.get("channel_message_id")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe values for XCom (the send's facts only when the hook set them)."""
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "request_id": self.request_id,
            "channel_message_id": self.channel_message_id,
        }
        facts = {
            "destination_phone": self.destination_phone,
            "encoding": self.encoding,
            "segments": self.segments,
        }
        data.update({key: value for key, value in facts.items() if value is not None})
        return data


def failure_message(statuses: Sequence[SmsStatus]) -> str | None:
    """
    Describe the failed deliveries among ``statuses``, or return None when none failed.

    The text holds each failed message's id, status and Octopods' ``failure_reason`` verbatim.

    :param statuses: terminal statuses.
    """
    failed = [s for s in statuses if s.is_failed]
    if not failed:
        return None
    lines = [
        f"SMS {s.message_id} was not delivered: status '{s.status}', "
        f"failure_reason: {s.failure_reason or 'none given by Octopods'}"
        for s in failed
    ]
    if len(statuses) > 1:
        lines.insert(0, f"{len(failed)} of {len(statuses)} SMS were not delivered.")
    return "\n".join(lines)


def timeout_message(
    message_ids: Sequence[int],
    last_seen: Mapping[int, SmsStatus],
    timeout: float | None,
    last_error: str | None = None,
) -> str:
    """
    Describe a wait that passed its deadline, naming the last status seen of each pending message.

    :param message_ids: the ids still not terminal.
    :param last_seen: the last status seen for each id (missing when none was seen).
    :param timeout: the wait's timeout in seconds, if known.
    :param last_error: the last transient error, if the last poll failed.
    """
    waited = f" after {timeout:g} s" if timeout is not None else ""
    parts = []
    for message_id in message_ids:
        seen = last_seen.get(message_id)
        parts.append(
            f"SMS {message_id}: last status '{seen.status}'" if seen else f"SMS {message_id}: no status seen"
        )
    text = f"Timed out{waited} waiting for delivery. " + "; ".join(parts) + "."
    if last_error:
        text += f" Last error: {last_error}"
    return text


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
