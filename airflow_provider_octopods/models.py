"""
The data of the provider: Octopods' channels, and what Octopods says about a message, parsed once.

A channel (:data:`SMS`, :data:`WHATSAPP`) is data: its paths, its connection, its table of error
codes. Everything else (the request core, the wait, the ledger, the budget) is shared.

Also the checks of user input that every kind shares (message ids, durations, deadlines), the
arguments of a send, and the sentences that describe a failed or timed-out wait, so the poke and
deferrable paths of the sensor say the same. Phone numbers and texts are checked by
:mod:`airflow_provider_octopods.utils.phone` and :mod:`airflow_provider_octopods.utils.segments`.
"""

from __future__ import annotations

import ast
import json
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
#: The recipient deleted the message after delivery (WhatsApp): final, and it was delivered.
DELETED = "deleted"

#: Terminal statuses that mean the message reached the handset.
DELIVERED_STATUSES: frozenset[str] = frozenset({DELIVERED, READ, DELETED})
#: Terminal statuses that mean the SMS did not reach the handset.
FAILED_STATUSES: frozenset[str] = frozenset({FAILED, UNDELIVERED})
#: Polling further will not change these.
TERMINAL_STATUSES: frozenset[str] = DELIVERED_STATUSES | FAILED_STATUSES
#: Statuses Octopods documents; another one is logged once and treated as not final.
KNOWN_STATUSES: frozenset[str] = TERMINAL_STATUSES | {QUEUED, SENT, UNKNOWN}
#: What a wait may wait for: delivery (``read`` and ``deleted`` count), or a read receipt.
WAIT_FOR = (DELIVERED, READ)

#: The names of Octopods' ``error_code`` values that the request core acts on.
KEY_REVOKED = "KEY_REVOKED"
PROVIDER_ERROR = "PROVIDER_ERROR"


@dataclass(frozen=True)
class Channel:
    """
    What differs between Octopods' channels; the request core, the wait and the ledger read it.

    :param name: ``sms`` or ``whatsapp``, as in trigger kwargs and XCom.
    :param noun: how messages name one message (``SMS 4829174``).
    :param plural: how they name several.
    :param messages_path: the status path of a message is ``{messages_path}/{message_id}``.
    :param conn_id: the default connection (each channel has its own key).
    :param error_codes: Octopods' ``error_code`` table of the channel: code -> name.
    :param listable: ``GET {messages_path}`` lists the newest sends (a batch wait reads it).
    """

    name: str
    noun: str
    plural: str
    messages_path: str
    conn_id: str
    error_codes: Mapping[int, str]
    listable: bool = False

    def count(self, number: int) -> str:
        """``1 WhatsApp message``, ``3 WhatsApp messages``."""
        return f"{number} {self.noun if number == 1 else self.plural}"


SMS = Channel(
    "sms",
    "SMS",
    "SMS",
    "/api/v1/sms/messages",
    "octopods_default",
    {1: "ARGUMENT_MISSING", 2: "EMPTY_BODY", 3: "PHONE_INVALID", 4: PROVIDER_ERROR, 5: KEY_REVOKED},
)
WHATSAPP = Channel(
    "whatsapp",
    "WhatsApp message",
    "WhatsApp messages",
    "/api/v1/whatsapp/messages",
    "octopods_whatsapp_default",
    {1: "ARGUMENT_MISSING", 5: "PHONE_INVALID", 6: KEY_REVOKED, 8: "INVALID_HEADER", 9: "VARIABLES_SHAPE"},
    listable=True,
)
CHANNELS = {channel.name: channel for channel in (SMS, WHATSAPP)}


def parse_choice(value: Any, field: str, choices: Sequence[str]) -> str:
    """
    Return ``value`` as one of ``choices`` (any case, surrounding whitespace ignored), or raise naming the field.

    :param value: what the user gave.
    :param field: the argument's name, for the error message.
    :param choices: the accepted words, lower case.
    """
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in choices:
        raise OctopodsInputError(field, f"got {value!r:.40}; pass {' or '.join(map(repr, choices))}.")
    return str(word)


def parse_wait_for(value: Any, field: str = "wait_for") -> str:
    """Return ``delivered`` or ``read`` (any case), or raise naming the field."""
    return parse_choice(value, field, WAIT_FOR)


#: The largest message id accepted (a signed 64-bit integer), so an id always fits in a path.
MAX_MESSAGE_ID = 2**63 - 1
#: The longest rendered list (characters) read as a literal; a longer one is read as comma-separated.
MAX_RENDERED_LENGTH = 2_000_000
_DIGITS = re.compile(r"[0-9]+")
#: The longest duration accepted (ten years): a deadline must stay a date Airflow can store.
MAX_SECONDS = 10 * 365 * 24 * 3600.0


def parse_count(value: Any, field: str, most: int | None = None) -> int:
    """
    Return ``value`` as a whole number from 1 (to ``most``), or raise naming ``field``.

    :param value: the number given.
    :param field: the argument's name, for the error message.
    :param most: the largest allowed, if any.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < 1
        or (most is not None and value > most)
    ):
        upto = f" to {most}" if most is not None else " up"
        raise OctopodsInputError(field, f"got {value!r:.20}; pass a whole number from 1{upto}.")
    return value


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
    given = value
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            raise OctopodsInputError(field, f"{value!r:.40} is not an ISO 8601 date and time.")
        value = parsed
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    # one range for every form, so that what a trigger serializes always rebuilds it
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
        raise OctopodsInputError(
            field,
            f"got {given!s:.40}; pass a UNIX time, a datetime or an ISO 8601 text from 1970 to 5138 "
            "(None: no deadline).",
        )
    return float(value)


def parse_literal(text: str) -> Any:
    """Return the Python or JSON literal a rendered template holds (``"['1', '2']"``), else ``text``."""
    if text[:1] in "[({" and len(text) <= MAX_RENDERED_LENGTH:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        try:  # JSON's null, true and false are no Python literals (``| tojson``, an API's answer)
            return json.loads(text)
        except (ValueError, RecursionError):
            pass
    return text


def validate_message_id(value: Any, field: str = "message_id", channel: Channel | None = None) -> int:
    """
    Return ``value`` as a positive ``int`` message id, or raise a clear :class:`OctopodsInputError`.

    Accepts an ``int``, a string of ASCII digits (as rendered from XCom), or the send operator's
    XCom (a dict, or its rendered text, holding ``message_id``). Rejects everything else, in
    particular anything that could alter the request path or query (``../1``, ``1?x=1``).

    :param value: the message id to check.
    :param field: the argument's name, for the error message.
    :param channel: the channel waited on: a send's XCom of another channel is refused.
    """
    hint = "pass the integer message_id returned when the message was sent (e.g. 4829174)"
    if isinstance(value, str) and value.strip().startswith("{"):
        value = parse_literal(value.strip())
    if isinstance(value, Mapping) and "message_id" in value:
        sent_on = value.get("channel")
        if channel is not None and sent_on not in (None, channel.name):
            raise OctopodsInputError(
                field,
                f"is the XCom of a {sent_on!s:.20} send, but this waits on {channel.plural}; wait on it "
                f"with the {sent_on!s:.20} channel's sensor or trigger.",
            )
        if value["message_id"] is None:
            raise OctopodsInputError(
                field,
                f"the send (request_id {value.get('request_id')}) has no message_id: this Octopods "
                "workspace gives no id to track, so its delivery cannot be waited on.",
            )
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


def validate_message_ids(
    values: Any, field: str = "message_ids", channel: Channel | None = None
) -> list[int]:
    """
    Return the message ids as a non-empty list of ints, in input order, without duplicates.

    Accepts any sequence or iterable of ids that is not a string (a list, a tuple, the output of a
    mapped task), each item an id or the send operator's XCom (a dict holding ``message_id``); or
    a string: comma-separated ids (``"4829174, 4829175"``), or a rendered Python or JSON list
    (``"[4829174, 4829175]"``, ``"['4829174', '4829175']"``). One id, or one send's XCom, is a
    list of one (native rendering reads ``"{{ ... | join(',') }}"`` of one id as an int).

    :param values: the ids to check.
    :param field: the argument's name, for the error message.
    :param channel: the channel waited on: a send's XCom of another channel is refused.
    """
    if isinstance(values, str):
        values = parse_literal(values.strip())
    if isinstance(values, str):
        text = values.strip().removeprefix("[").removesuffix("]")
        items: Iterable[Any] = [part for part in (p.strip() for p in text.split(",")) if part]
    elif isinstance(values, Mapping) or (isinstance(values, int) and not isinstance(values, bool)):
        items = [values]
    elif isinstance(values, Iterable) and not isinstance(values, bytes):
        items = values
    else:
        raise OctopodsInputError(
            field, f"got {type(values).__name__}; pass a list of message ids or a comma-separated string."
        )
    ids = list(
        dict.fromkeys(validate_message_id(item, f"{field}[{i}]", channel) for i, item in enumerate(items))
    )
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


def malformed_answer(what: str, request_id: Any = None, answer: str = "status") -> OctopodsTransientError:
    """Return the transient error of an answer not in Octopods' shape (``what`` is wrong with it)."""
    return OctopodsTransientError(
        f"Octopods sent a malformed {answer} answer ({what}).",
        request_id=request_id if isinstance(request_id, str) else None,
    )


class _StatusIn:
    """
    A read-only attribute of :class:`MessageStatus`: whether its ``status`` is one of ``statuses``.

    Each such attribute is documented by the string after its assignment, as any attribute.

    :param statuses: the statuses for which the attribute is true.
    """

    def __init__(self, statuses: frozenset[str]) -> None:
        self.statuses = statuses

    @overload
    def __get__(self, message: None, owner: type[MessageStatus]) -> _StatusIn: ...
    @overload
    def __get__(self, message: MessageStatus, owner: type[MessageStatus] | None = None) -> bool: ...
    def __get__(
        self, message: MessageStatus | None, owner: type[MessageStatus] | None = None
    ) -> _StatusIn | bool:
        return self if message is None else message.status in self.statuses


def _time_text(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _reason(value: Any) -> str | None:
    """Octopods' ``failure_reason``: text, or ``{"code", "title"}`` (the list's second shape), or none."""
    if isinstance(value, Mapping):
        title, code = value.get("title"), value.get("code")
        return f"{title} (code {code})" if title and code is not None else _optional_str(title or code)
    return _optional_str(value) or None


@dataclass(frozen=True)
class MessageStatus:
    """
    The status of one message (an SMS or a WhatsApp message), as Octopods reports it.

    :param message_id: the message id.
    :param status: the status, lower-cased (``queued``, ``sent``, ``unknown``, ``delivered``,
        ``read``, ``deleted``, ``failed``, ``undelivered``, or a value Octopods added later).
    :param phone_number: the destination number.
    :param sent_at: when the message was handed to the network, if it was.
    :param delivered_at: when delivery was confirmed, if it was.
    :param failure_reason: Octopods' reason, verbatim, only when the status is a failure (its
        ``failure_reason``, else its ``status_message``).
    :param request_id: Octopods' id of the request that returned this status.
    :param read_at: when the recipient read it, if Octopods says.
    :param status_message: Octopods' text about the status (any status), verbatim.
    :param channel: the channel's name (``sms``, ``whatsapp``).
    :param template_id: the WhatsApp template sent, when known.
    """

    message_id: int
    status: str
    phone_number: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    failure_reason: str | None = None
    request_id: str | None = None
    read_at: datetime | None = None
    status_message: str | None = None
    channel: str = SMS.name
    template_id: int | None = None

    is_terminal = _StatusIn(TERMINAL_STATUSES)
    """Whether polling further cannot change whether it was delivered."""
    is_delivered = _StatusIn(DELIVERED_STATUSES)
    """Whether delivery was confirmed (``delivered``, ``read`` or ``deleted``)."""
    is_failed = _StatusIn(FAILED_STATUSES)
    """Whether the message ended without reaching the handset."""
    is_known = _StatusIn(KNOWN_STATUSES)
    """Whether the status is one Octopods documents."""

    @classmethod
    def from_api(
        cls, payload: Any, expected_message_id: int | None = None, channel: Channel = SMS
    ) -> MessageStatus:
        """
        Parse the JSON body of ``GET {messages_path}/:message_id`` (either documented shape).

        A body that is not an object, lacks ``status``, carries the wrong types or another
        message's id raises :class:`OctopodsTransientError` (treated like any transient trouble:
        ask again), never a ``KeyError`` or ``TypeError``. ``last_updated`` stands for the time of
        delivery or read when the answer gives no other.

        :param payload: the decoded JSON body.
        :param expected_message_id: the id that was asked for; used when the body omits it.
        :param channel: the channel asked.
        """
        if not isinstance(payload, dict):
            raise malformed_answer(f"expected a JSON object, got {type(payload).__name__}")
        request_id = payload.get("request_id")
        status = payload.get("status")
        if not isinstance(status, str) or not status.strip():
            raise malformed_answer("no status", request_id)
        raw_id = payload.get("message_id", expected_message_id)
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)):
            raise malformed_answer("no message_id", request_id)
        try:
            message_id = validate_message_id(raw_id)
        except OctopodsInputError:
            raise malformed_answer(f"message_id {raw_id!r:.30}", request_id) from None
        if expected_message_id is not None and message_id != expected_message_id:
            raise malformed_answer(f"asked for {expected_message_id}, answered {message_id}", request_id)
        word = status.strip().lower()
        updated = _parse_time(payload.get("last_updated"), "last_updated")
        said = _optional_str(payload.get("status_message")) or None
        return cls(
            message_id=message_id,
            status=word,
            phone_number=_optional_str(payload.get("phone_number")),
            sent_at=_parse_time(payload.get("sent_at"), "sent_at"),
            delivered_at=_parse_time(payload.get("delivered_at"), "delivered_at")
            or (updated if word == DELIVERED else None),
            failure_reason=(_reason(payload.get("failure_reason")) or said)
            if word in FAILED_STATUSES
            else None,
            request_id=_optional_str(request_id),
            read_at=_parse_time(payload.get("read_at"), "read_at") or (updated if word == READ else None),
            status_message=said,
            channel=channel.name,
        )

    @classmethod
    def from_list_item(cls, item: Any, channel: Channel) -> MessageStatus | None:
        """
        Parse one item of ``GET {messages_path}`` (either documented shape), or None if unusable.

        An item without a status or a message id (shape 2 names it ``channel_message_id``) is
        skipped, never guessed: its message is then asked for by id.

        :param item: one element of the list.
        :param channel: the channel listed.
        """
        if not isinstance(item, dict):
            return None
        nested = item.get("message_status")
        fields = nested if isinstance(nested, dict) else item
        status = fields.get("message_status") if isinstance(nested, dict) else item.get("status")
        raw_id = fields.get("channel_message_id") if isinstance(nested, dict) else item.get("message_id")
        if not isinstance(status, str) or not status.strip() or isinstance(raw_id, bool):
            return None
        try:
            message_id = validate_message_id(raw_id)
        except OctopodsInputError:
            return None
        word = status.strip().lower()
        return cls(
            message_id=message_id,
            status=word,
            phone_number=_optional_str(item.get("phone_number") or item.get("user_phone_number")),
            sent_at=_parse_time(item.get("sent_at") or item.get("created_at"), "sent_at"),
            failure_reason=_reason(fields.get("failure_reason")) if word in FAILED_STATUSES else None,
            channel=channel.name,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe values (timestamps as ISO-8601 strings) for XCom and trigger events."""
        data = {
            "message_id": self.message_id,
            "status": self.status,
            "phone_number": self.phone_number,
            "sent_at": _time_text(self.sent_at),
            "delivered_at": _time_text(self.delivered_at),
            "read_at": _time_text(self.read_at),
            "failure_reason": self.failure_reason,
            "status_message": self.status_message,
            "request_id": self.request_id,
            "channel": self.channel,
        }
        if self.channel == WHATSAPP.name:
            data["template_id"] = self.template_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MessageStatus:
        """
        Rebuild a status from :meth:`to_dict` (of any version of this provider).

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
            read_at=_parse_time(data.get("read_at"), "read_at"),
            status_message=data.get("status_message"),
            channel=str(data.get("channel") or SMS.name),
            template_id=data.get("template_id"),
        )

    @property
    def noun(self) -> str:
        """How messages name this one: ``SMS 4829174``, ``WhatsApp message 4829174``."""
        return f"{CHANNELS[self.channel].noun if self.channel in CHANNELS else 'Message'} {self.message_id}"

    def describe(self) -> str:
        """One line for logs and error messages."""
        text = f"{self.noun}: {self.status}"
        if self.failure_reason:
            text += f": {self.failure_reason}"
        return text


#: The name of 0.1: every status is a :class:`MessageStatus`.
SmsStatus = MessageStatus


def reached(status: MessageStatus, wait_for: str = DELIVERED) -> bool | None:
    """
    Whether ``status`` reached what a wait waits for: True, False (it never will), None (not yet).

    The one rule of when a wait ends. Waiting for ``delivered``, ``delivered``, ``read`` and
    ``deleted`` succeed. Waiting for ``read``, only ``read`` does; ``delivered`` is not final, and
    ``deleted`` is final: read if Octopods gives a ``read_at``, else never read. A failure is final.

    :param status: the status seen.
    :param wait_for: ``delivered`` or ``read``.
    """
    if status.is_failed:
        return False
    if wait_for != READ:
        return True if status.is_delivered else None
    if status.status == DELETED:
        return status.read_at is not None
    return True if status.status == READ else None


@dataclass(frozen=True)
class SentMessage:
    """The answer to a send (SMS or WhatsApp template), with what the hook knows of the send."""

    message_id: int | None
    """The id to poll the status with; None when the workspace gives none (HubSpot workspaces)."""
    request_id: str | None = None
    """Octopods' id of the send request."""
    channel_message_id: str | None = None
    """The id of the message in the channel."""
    destination_phone: str | None = None
    """The number the message was sent to, in E.164 form (set by the hook)."""
    encoding: str | None = None
    """SMS: ``GSM-7`` or ``UCS-2`` (set by the hook)."""
    segments: int | None = None
    """SMS: how many segments the text took (set by the hook)."""
    template_id: int | None = None
    """WhatsApp: the template sent (set by the hook)."""
    channel: str = SMS.name
    """The channel's name."""

    @classmethod
    def from_api(cls, payload: Any) -> SentMessage:
        """
        Parse the JSON body of a ``201`` answer to a send.

        An answer with a ``request_id`` and no ``message_id`` (null or absent) is a confirmed send
        that cannot be tracked (Octopods' pages show it for HubSpot workspaces), not a malformed one.

        :param payload: the decoded JSON body.
        """
        if not isinstance(payload, dict):
            raise malformed_answer(f"expected a JSON object, got {type(payload).__name__}", answer="send")
        raw_id, request_id = payload.get("message_id"), payload.get("request_id")
        message_id = None
        if raw_id is not None or not isinstance(request_id, str) or not request_id:
            try:
                message_id = validate_message_id(raw_id)
            except OctopodsInputError:
                raise malformed_answer(f"message_id {raw_id!r:.30}", request_id, "send") from None
        return cls(
            message_id=message_id,
            request_id=_optional_str(request_id),
            channel_message_id=_optional_str(payload.get("channel_message_id")),
        )

    @property
    def noun(self) -> str:
        """``SMS 4829174 to +12015550123``; ``the SMS to +12015550123`` when it has no id."""
        noun, to = (
            CHANNELS[self.channel].noun,
            f" to {self.destination_phone}" if self.destination_phone else "",
        )
        return f"{noun} {self.message_id}{to}" if self.message_id else f"the {noun}{to}"

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
            "template_id": self.template_id,
        }
        data.update({key: value for key, value in facts.items() if value is not None})
        if self.channel != SMS.name:
            data["channel"] = self.channel
        return data


#: The name of 0.1: every send's answer is a :class:`SentMessage`.
SentSms = SentMessage


def failure_message(statuses: Sequence[MessageStatus], wait_for: str = DELIVERED) -> str | None:
    """
    Describe the messages among ``statuses`` that did not reach ``wait_for``, or return None.

    The text holds each message's id, status and Octopods' ``failure_reason`` verbatim.

    :param statuses: final statuses.
    :param wait_for: what the wait waited for.
    """
    failed = [s for s in statuses if reached(s, wait_for) is False]
    if not failed:
        return None
    lines = [
        f"{s.noun} was not delivered: status '{s.status}', "
        f"failure_reason: {s.failure_reason or 'none given by Octopods'}"
        if s.is_failed
        else f"{s.noun} was {_delivered_when(s)}, then deleted by the recipient without a read receipt."
        for s in failed
    ]
    if len(statuses) > 1:
        plural = CHANNELS.get(statuses[0].channel, SMS).plural
        lines.insert(0, f"{len(failed)} of {len(statuses)} {plural} were not {wait_for}.")
    return "\n".join(lines)


def _delivered_when(status: MessageStatus) -> str:
    when = status.delivered_at.isoformat() if status.delivered_at else "a time Octopods did not report"
    return f"delivered at {when}"


def timeout_message(
    message_ids: Sequence[int],
    last_seen: Mapping[int, MessageStatus],
    timeout: float | None,
    last_error: str | None = None,
    wait_for: str = DELIVERED,
    noun: str = SMS.noun,
) -> str:
    """
    Describe a wait that passed its deadline, naming the last status seen of each pending message.

    :param message_ids: the ids still not final.
    :param last_seen: the last status seen for each id (missing when none was seen).
    :param timeout: the wait's timeout in seconds, if known.
    :param last_error: the last transient error, if the last poll failed.
    :param wait_for: what the wait waited for.
    :param noun: how to name a message whose status was never seen.
    """
    waited = f" after {timeout:g} s" if timeout is not None else ""
    parts = []
    for message_id in message_ids:
        seen = last_seen.get(message_id)
        if seen is None:
            parts.append(f"{noun} {message_id}: no status seen")
        elif wait_for == READ and seen.is_delivered:
            parts.append(f"{seen.noun} was {_delivered_when(seen)} and not read")
        else:
            parts.append(f"{seen.noun}: last status '{seen.status}'")
    goal = "a read receipt" if wait_for == READ else "delivery"
    text = f"Timed out{waited} waiting for {goal}. " + "; ".join(parts) + "."
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


class RenderedAsText:
    """
    Render the templated fields as text, even in a DAG that renders native objects.

    ``render_template_as_native_obj`` reads every rendered text as a Python literal, and a literal
    number with no Jinja at all with it: ``"+12015550123"`` becomes the int ``12015550123``, its
    ``+`` gone, which no check can give back. A number, a text and a name are text; a list given
    as a template (``message_variables``) is read from its text.
    """

    def _render(self, template: Any, context: Any, dag: Any = None) -> str:
        """
        Render ``template`` to text: Airflow's step that decides native rendering, whose signature
        every supported Airflow (2.11 to 3.3) shares; its text path, whatever the DAG says.
        """
        env = template.environment
        context.update((k, v) for k, v in template.globals.items() if k not in context)
        try:
            nodes = template.root_render_func(env.context_class(env, context, template.name, template.blocks))
            return "".join(map(str, nodes))  # a native environment yields its values as they are
        except Exception:
            env.handle_exception()  # raises the error, its traceback pointing into the template
            raise


class SendArguments(RenderedAsText):
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


class TemplateArguments(RenderedAsText):
    """
    The arguments of a WhatsApp template send, kept as attributes of the operator or notifier that makes it.

    The WhatsApp counterpart of :class:`SendArguments`: Airflow renders the templated ones in
    place, so the keyword arguments of ``send_whatsapp_template`` are built from them at send
    time (:meth:`_template_options`).
    """

    template_id: int | str
    destination_phone: str
    message_variables: Any
    header_attachment_url: str | None
    octopods_conn_id: str
    check_template: bool
    destination_user_name: str | None
    default_region: str | None

    def _keep_template_arguments(self, arguments: Mapping[str, Any]) -> None:
        """
        Keep the send's arguments, each name annotated on this class, as attributes.

        :param arguments: the ``locals()`` of the ``__init__`` that takes (and documents) them.
        """
        for name in TemplateArguments.__annotations__:
            setattr(self, name, arguments[name])

    def _template_options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``send_whatsapp_template`` after the first three (as rendered)."""
        return {
            "header_attachment_url": self.header_attachment_url,
            "check_template": self.check_template,
            "destination_user_name": self.destination_user_name,
            "default_region": self.default_region,
        }
