"""
A local Octopods: a real HTTP server on 127.0.0.1 implementing the SMS and WhatsApp endpoints.

SMS: send (``POST /api/v1/sms/messages``) and status (``GET /api/v1/sms/messages/{id}``).
WhatsApp: the templates (``GET /api/v1/whatsapp/templates``), template sends (``POST
/api/v1/whatsapp/templates/{template_id}/messages``), status (``GET
/api/v1/whatsapp/messages/{id}``) and the list of sent messages (``GET
/api/v1/whatsapp/messages?limit=N``). Each channel has its own key (``api_key``,
``whatsapp_api_key``): the other channel's key, or any other, gets HTTP 401; a rotated or revoked
key gets HTTP 400 with ``error_code`` 5 on SMS and 6 on WhatsApp.

Each message follows a script. Either a list of steps, one consumed per status request (the last
one repeats), or a timeline of ``(seconds after creation, status)``. A step is a status
(``"delivered"`` or :class:`Status`), an arbitrary :class:`Reply` (HTTP 429 with ``Retry-After``,
a 5xx, an HTML page, truncated JSON ...), or a fault: :class:`Reset` (the connection breaks
mid-answer), :class:`Hang` (never answers), :class:`Trickle` (answers a byte at a time).
:meth:`OctopodsSimulator.inject` puts steps in front of the next requests whatever they ask.
A timeline-scripted message reports ``sent_at``, ``delivered_at`` and ``read_at`` as its
creation time plus the offset of the first step that reached the stage (``delivered`` implies
``sent``, ``read`` implies ``delivered``); a step-scripted one, plus ``sent_after``,
``deliver_after`` and ``read_after``.

Sent messages (``POST /api/v1/sms/messages``) are delivered after ``deliver_after`` seconds,
unless the destination number ends in one of the magic suffixes of :data:`MAGIC_NUMBERS` (all
of them within ``+1 201 555 0100`` to ``0199``, numbers libphonenumber calls valid and that are
reserved for fiction). A send to a number that is not in E.164 form, or whose length
libphonenumber calls impossible, is refused (HTTP 400, ``error_code`` 3); one to a number of a
possible length that libphonenumber does not call valid (``+1 555 123 4567``) is accepted and
then ``failed`` with the ``invalid_number`` reason, as a carrier would.

A WhatsApp template can be sent if it is in :attr:`OctopodsSimulator.templates` (a copy of
:data:`TEMPLATES` per simulator, by id) and ``Accepted``. The checks, in order, answer HTTP 400:
``error_code`` 1 for a body that is not an object or without ``destination_phone``, 5 for a
number :func:`check_destination` refuses, 7 (undocumented) for an unknown template, 10 for a
template not ``Accepted``, 1 for a media header without ``header_attachment_url``, 8 for one that
is not an http(s) URL (only checked for media headers), 1 for placeholders without
``message_variables``, 9 for ``message_variables`` of the wrong shape or count, 1 for an
``open_intercom_conversation`` that is not true/false/1/0/yes/no/on/off. ``message_variables``
is an array of strings in placeholder order or an object keyed ``"1"``, ``"2"`` ... for a
template whose placeholders are all in the body, and ``{"header": [...], "body": [...],
"footer": [...], "buttons": [...]}`` (every section present; accepted for any template) for
one with placeholders elsewhere. A sent WhatsApp message is ``unknown`` (Octopods' "not
available yet") until ``sent_after``, then ``sent``, ``delivered`` at ``deliver_after`` and
``read`` at ``read_after``, unless its number ends in one of the suffixes of
:data:`WHATSAPP_MAGIC_NUMBERS`; a number libphonenumber does not call valid fails at
``sent_after`` as not a WhatsApp user.

Octopods documents two shapes of WhatsApp status and of the list of sent messages; the
``status_shape`` (``"reference"`` or ``"overview"``) and ``list_shape`` (``"messages"`` or
``"array"``) attributes pick one (see ``docs/testing.rst``). The list reads each message's
current step without consuming it: for a step-scripted message, the step its next status
request will answer; a message whose current step is not a status (a :class:`Reply`,
:class:`Reset` or :class:`Hang`) is left out. With ``untrackable`` (the HubSpot workspaces of
Octopods), a successful send of either channel answers only ``{"request_id": ...}``; the
message is still recorded in :attr:`OctopodsSimulator.messages`.

The server runs its own event loop in a daemon thread, so it serves sync and async clients
alike, and counts the TCP connections it accepts (:attr:`OctopodsSimulator.connections_opened`).
Every request it answers, admin endpoints included, is logged at INFO on this module's logger
as one line ``METHOD PATH STATUS`` (the path with its query; a key in it is written ``***``;
headers are never logged).

For a simulator in another process (``octopods-simulator``, used by ``benchmarks/``), admin
endpoints script and observe it over HTTP. They need no key, are not recorded as requests, are
not rate limited and take no injected fault (their TCP connections are counted, like any other):

- ``POST /_simulator/messages`` with ``{"messages": [{"timeline": [[seconds, status], ...]}, ...]}``
  creates timeline-scripted messages (optional ``phone_number``, ``channel`` (``"sms"`` or
  ``"whatsapp"``) and ``template_id`` per message) and answers 201 with
  ``{"message_ids": [...], "created_at": <UNIX time the timelines start>}``.
- ``GET /_simulator/stats`` answers ``{"connections_opened", "requests", "status_requests",
  "whatsapp_status_requests", "list_requests", "sends", "messages", "cpu_seconds",
  "rate_limited"}`` (requests exclude the admin endpoints; ``status_requests`` counts SMS status
  requests, ``sends`` the send requests of both channels whatever their answer;
  ``cpu_seconds`` is the CPU time of the simulator's whole process, so a benchmark can price the
  server side of a poll; ``rate_limited`` counts the 429s of ``rate_limit``).
- ``GET /_simulator/settings`` answers ``{"untrackable", "status_shape", "list_shape"}``;
  ``POST /_simulator/settings`` with any of them changes them and answers the same.

With ``rate_limit=N`` (CLI ``--rate-limit N``), like Octopods, the simulator admits at most N
requests per key in any sliding one-second window, whatever the endpoint, and answers the others
HTTP 429 with a ``Retry-After`` (whole seconds until the window has room); refused requests do
not count against the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

AUTH_HEADER = "X-Octopods-Auth"
_STATUS_PATH = re.compile(r"/api/v1/sms/messages/(?P<id>[^/?#]*)")
_SEND_PATH = "/api/v1/sms/messages"
_WHATSAPP_PREFIX = "/api/v1/whatsapp/"
#: (method, path, route name) of the Octopods endpoints; the first match wins.
_ROUTES = (
    ("POST", re.compile(re.escape(_SEND_PATH)), "sms_send"),
    ("GET", _STATUS_PATH, "sms_status"),
    ("GET", re.compile(r"/api/v1/whatsapp/templates/?"), "templates"),
    ("POST", re.compile(r"/api/v1/whatsapp/templates/(?P<template>[^/]*)/messages"), "whatsapp_send"),
    ("GET", re.compile(r"/api/v1/whatsapp/messages/?"), "whatsapp_list"),
    ("GET", re.compile(r"/api/v1/whatsapp/messages/(?P<id>[^/]*)"), "whatsapp_status"),
)
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_ADMIN_PREFIX = "/_simulator/"
_ADMIN_MESSAGES = "/_simulator/messages"
_ADMIN_STATS = "/_simulator/stats"
_ADMIN_SETTINGS = "/_simulator/settings"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

ChannelName = Literal["sms", "whatsapp"]
StatusShape = Literal["reference", "overview"]
ListShape = Literal["messages", "array"]
CHANNELS: tuple[ChannelName, ...] = ("sms", "whatsapp")
#: The two documented shapes of a WhatsApp status answer.
STATUS_SHAPES: tuple[StatusShape, ...] = ("reference", "overview")
#: The two documented shapes of the list of sent WhatsApp messages.
LIST_SHAPES: tuple[ListShape, ...] = ("messages", "array")
#: The status of a message before its script says anything.
_INITIAL = {"sms": "queued", "whatsapp": "unknown"}
#: The answers to a rotated or revoked key: (error, error_code).
_REVOKED = {
    "sms": ("The API key has been rotated or revoked. Fetch the current key from Octopods.", 5),
    "whatsapp": ("Deprecated API Key. Please go to your Octopods App, and get your new API Key", 6),
}
#: The (undocumented) error_code of "message not found" per channel.
_NOT_FOUND = {"sms": 6, "whatsapp": 7}
#: How far each status went: 1 sent, 2 delivered, 3 read (the stages of sent_at, delivered_at, read_at).
_STAGE = {"sent": 1, "undelivered": 1, "delivered": 2, "deleted": 2, "read": 3}

#: The failure reasons Octopods documents for ``failed`` and ``undelivered`` messages.
FAILURE_REASONS = {
    "invalid_number": "The phone number is not a valid mobile subscriber.",
    "carrier_blocked": "The carrier blocked the message for content or sender reputation reasons.",
    "out_of_coverage": "The recipient\u2019s handset is out of coverage or powered off for too long.",
    "sender_not_approved": "The sender number is not approved to deliver to the recipient\u2019s country.",
}
#: The failure reasons of ``failed`` WhatsApp messages.
WHATSAPP_FAILURE_REASONS = {
    "not_whatsapp_user": "Recipient is not a WhatsApp user.",
    "template_not_approved": "Template not approved for the recipient's country.",
    "template_deactivated": "Template was deactivated after the send was queued.",
}
#: The ``status_message`` of each status in the WhatsApp "overview" status shape.
STATUS_MESSAGES = {
    "SENT": "Message handed to WhatsApp; not delivered yet.",
    "DELIVERED": "Message delivered to the recipient's device.",
    "READ": "Message read by the recipient.",
    "FAILED": "Message could not be delivered; see failure_reason.",
    "DELETED": "Message deleted by the recipient after delivery.",
    "UNKNOWN": "Status not available yet; ask again later.",
}


@dataclass(frozen=True)
class Status:
    """
    A status answer (HTTP 200).

    :param status: the status value, sent as given on SMS (so upper case or unknown values can be
        tested); on WhatsApp, in the case of the status shape (lower for "reference", upper for
        "overview").
    :param failure_reason: the reason, for ``failed`` and ``undelivered``.
    """

    status: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class Reply:
    """
    Any HTTP answer.

    :param status: the HTTP status code.
    :param body: a dict or list (sent as JSON), str or bytes (sent as is), or None (empty).
    :param headers: extra headers, e.g. ``{"Retry-After": "2"}``.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reset:
    """Send the status line and part of the body, then break the TCP connection."""


@dataclass(frozen=True)
class Hang:
    """
    Accept the request and never answer (until ``seconds`` pass or the simulator stops).

    :param seconds: how long to stay silent.
    """

    seconds: float = 3600.0


@dataclass(frozen=True)
class Trickle:
    """
    Answer a valid status one byte every ``interval`` seconds.

    :param status: the status to answer with, slowly.
    :param interval: seconds between bytes.
    """

    status: str = "delivered"
    interval: float = 0.5


Step = str | Status | Reply | Reset | Hang | Trickle

#: Destination numbers ending in these digits get a scripted fate when sent; e.g. +12015550102
#: (libphonenumber calls every ``+1 201 555 01xx`` number valid).
MAGIC_NUMBERS: dict[str, Any] = {
    "0101": Status("failed", FAILURE_REASONS["invalid_number"]),
    "0102": Status("undelivered", FAILURE_REASONS["carrier_blocked"]),
    "0103": Status("undelivered", FAILURE_REASONS["out_of_coverage"]),
    "0104": Status("failed", FAILURE_REASONS["sender_not_approved"]),
    "0109": Status("queued"),  # never leaves the queue
    "0140": Reply(400, {"error_code": 4, "error": "The SMS provider returned an error."}),
}
#: A number that gets the default fate (queued, sent, delivered): libphonenumber's US example.
DELIVERED_NUMBER = "+12015550123"

#: The statuses of a sent WhatsApp message at ``sent_after``, ``deliver_after`` and ``read_after``
#: (it is ``unknown`` before); a shorter path stops earlier, its last status staying.
WHATSAPP_PATH: tuple[str | Status, ...] = ("sent", "delivered", "read")
#: WhatsApp destination numbers ending in these digits follow another path, e.g. +12015550105.
WHATSAPP_MAGIC_NUMBERS: dict[str, tuple[str | Status, ...]] = {
    "0101": (Status("failed", WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]),),
    "0102": (Status("failed", WHATSAPP_FAILURE_REASONS["template_deactivated"]),),
    "0105": ("sent", "delivered"),  # never read (read receipts off)
    "0106": ("sent", "delivered", "deleted"),
    "0107": (),  # unknown for ever
    "0108": (Status("failed", WHATSAPP_FAILURE_REASONS["template_not_approved"]),),
}

#: The WhatsApp Business number the simulator's templates belong to.
WHATSAPP_SENDER = "+12015550100"
#: Body only, two placeholders: "Hi {{1}}, your order {{2}} has shipped."
TEMPLATE_BODY_ONLY = 539
#: Body only, no placeholder.
TEMPLATE_NO_VARIABLES = 540
#: A text header, a body, a footer and a URL button, each with placeholders.
TEMPLATE_SECTIONS = 541
#: An image header (needs ``header_attachment_url``) and a body with one placeholder.
TEMPLATE_MEDIA_HEADER = 542
#: Awaiting approval (``template_status`` "Pending", inactive): sends are refused.
TEMPLATE_PENDING = 543
#: In Spanish, body only, two placeholders.
TEMPLATE_SPANISH = 544


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


def _template(
    template_id: int,
    name: str,
    components: list[dict[str, Any]],
    created_at: str,
    *,
    language: str = "en",
    status: str = "Accepted",
    active: bool = True,
) -> dict[str, Any]:
    return {
        "template_id": template_id,
        "template_name": name,
        "template_body": next((c["text"] for c in components if c["type"] == "BODY"), ""),
        "template_components": components,
        "account_phone_number": WHATSAPP_SENDER,
        "created_at": created_at,
        "template_status": status,
        "language": language,
        "active": active,
    }


#: The WhatsApp templates of every new simulator, as ``GET /api/v1/whatsapp/templates`` lists them.
TEMPLATES: list[dict[str, Any]] = [
    _template(
        TEMPLATE_BODY_ONLY,
        "order_shipped",
        [_body("Hi {{1}}, your order {{2}} has shipped.")],
        "2026-01-05T09:00:00Z",
    ),
    _template(
        TEMPLATE_NO_VARIABLES,
        "subscription_confirmed",
        [_body("Thanks for subscribing to order updates!")],
        "2026-01-05T09:05:00Z",
    ),
    _template(
        TEMPLATE_SECTIONS,
        "delivery_update",
        [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            _body("Hi {{1}}, your parcel arrives on {{2}}."),
            {"type": "FOOTER", "text": "Sent by {{1}}"},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"}],
            },
        ],
        "2026-01-12T14:30:00Z",
    ),
    _template(
        TEMPLATE_MEDIA_HEADER,
        "receipt_image",
        [{"type": "HEADER", "format": "IMAGE"}, _body("Here is your receipt, {{1}}.")],
        "2026-02-02T08:15:00Z",
    ),
    _template(
        TEMPLATE_PENDING,
        "spring_sale",
        [_body("Our spring sale starts on {{1}}!")],
        "2026-03-01T10:00:00Z",
        status="Pending",
        active=False,
    ),
    _template(
        TEMPLATE_SPANISH,
        "pedido_enviado",
        [_body("Hola {{1}}, tu pedido {{2}} ha sido enviado.")],
        "2026-01-05T09:10:00Z",
        language="es",
    ),
]

_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_SECTIONS = ("header", "body", "footer", "buttons")
_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def check_destination(phone: Any) -> str | None:
    """
    Return how the simulator treats a destination: ``"refused"``, ``"not_valid"`` or None (fine).

    Refused: not a string in E.164 form, or of a length libphonenumber calls impossible.
    Not valid: of a possible length, but in no range libphonenumber calls valid.

    :param phone: the ``destination_phone`` of a send.
    """
    if not isinstance(phone, str) or not _E164.fullmatch(phone):
        return "refused"
    import phonenumbers

    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "refused"
    if not phonenumbers.is_possible_number(number):
        return "refused"
    return None if phonenumbers.is_valid_number(number) else "not_valid"


def template_placeholders(template: dict[str, Any]) -> dict[str, int]:
    """
    Count a template's placeholders per section, e.g. ``{"header": 1, "body": 2, "footer": 1, "buttons": 1}``.

    Buttons count the placeholders of their ``url``. A template without ``template_components``
    counts those of its ``template_body``.

    :param template: a template in Octopods' shape (an item of :data:`TEMPLATES`).
    """
    counts = dict.fromkeys(_SECTIONS, 0)
    components = template.get("template_components") or [_body(template.get("template_body", ""))]
    for component in components:
        section = str(component.get("type", "")).lower()
        if section == "buttons":
            texts = [button.get("url") for button in component.get("buttons", [])]
        elif section in counts:
            texts = [component.get("text")]
        else:
            continue
        counts[section] += sum(len(set(_PLACEHOLDER.findall(t))) for t in texts if isinstance(t, str))
    return counts


def media_header(template: dict[str, Any]) -> str | None:
    """
    Return the media type of a template's header (``"IMAGE"``, ``"VIDEO"``, ``"DOCUMENT"``), or None.

    :param template: a template in Octopods' shape.
    """
    for component in template.get("template_components") or ():
        kind = str(component.get("format", "TEXT")).upper()
        if str(component.get("type", "")).upper() == "HEADER" and kind != "TEXT":
            return kind
    return None


def _strings(values: Any, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(isinstance(v, str) for v in values)


def _variables_error(template: dict[str, Any], variables: Any) -> tuple[str, int] | None:
    """The error and error_code ``message_variables`` get for ``template``, or None if they fit."""
    counts = template_placeholders(template)
    if variables is None:
        return (
            ("You must supply message_variables in your request payload.", 1)
            if any(counts.values())
            else None
        )
    if isinstance(variables, dict) and not set(variables).isdisjoint(_SECTIONS):
        fits = all(_strings(variables.get(section), counts[section]) for section in _SECTIONS)
    elif counts["body"] != sum(counts.values()):  # placeholders outside the body need sections
        fits = False
    elif isinstance(variables, dict):
        numbers = {str(n) for n in range(1, counts["body"] + 1)}
        fits = set(variables) == numbers and all(isinstance(v, str) for v in variables.values())
    else:
        fits = _strings(variables, counts["body"])
    return None if fits else ("message_variables does not match the template's placeholders.", 9)


def _body_values(variables: Any) -> list[str]:
    """The body's values of valid ``message_variables``, in placeholder order."""
    if isinstance(variables, dict):
        if "body" in variables:
            return list(variables["body"])
        return [variables[number] for number in sorted(variables, key=int)]
    return list(variables or [])


def _render(text: str, values: list[str]) -> str:
    def value(match: re.Match[str]) -> str:
        number = int(match[1])
        return values[number - 1] if 0 < number <= len(values) else match[0]

    return _PLACEHOLDER.sub(value, text)


def _as_bool(value: Any) -> bool | None:
    """``value`` read as Octopods reads a boolean (true/false, 1/0, yes/no, on/off), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return _BOOLEANS.get(value.strip().lower()) if isinstance(value, str) else None


def _is_http_url(value: Any) -> bool:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        return False
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)


def _valid_setting(name: str, value: Any) -> bool:
    """Whether ``value`` is allowed for the setting ``name`` (untrackable, status_shape, list_shape)."""
    if name == "untrackable":
        return isinstance(value, bool)
    return isinstance(value, str) and value in {"status_shape": STATUS_SHAPES, "list_shape": LIST_SHAPES}.get(
        name, ()
    )


def _route(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    """The name of the Octopods endpoint of a request (None: none) and its path parameters."""
    for route_method, pattern, name in _ROUTES:
        match = pattern.fullmatch(path)
        if match and method == route_method:
            return name, match.groupdict()
    return None, {}


def _as_step(step: Step) -> Step:
    return Status(step) if isinstance(step, str) else step


def _as_status(step: Step) -> Status | None:
    """The status a step answers (a :class:`Trickle` answers one slowly); None for the others."""
    if isinstance(step, Trickle):
        return Status(step.status)
    return step if isinstance(step, Status) else None


def _stage(step: Step) -> int:
    status = _as_status(step)
    return _STAGE.get(status.status.lower(), 0) if status else 0


@dataclass
class SimulatedMessage:
    """
    A message the simulator knows about, with its script.

    :param message_id: Octopods' id of the message.
    :param phone_number: the destination.
    :param body: the text sent (for WhatsApp, the template's body with the variables filled in).
    :param steps: the answers to the next status requests (the last one repeats).
    :param timeline: instead of steps, ``(seconds after creation, step)`` pairs.
    :param created: when it was created (``time.monotonic()``), the start of its timeline.
    :param created_at: when it was created (UTC), the base of its timestamps.
    :param polls: how many status requests asked for it.
    :param channel: ``"sms"`` or ``"whatsapp"``.
    :param template_id: the WhatsApp template sent, if any.
    :param variables: the ``message_variables`` of a WhatsApp send, as received.
    :param payload: the JSON body of the send, as received (empty for scripted messages).
    :param channel_message_id: WhatsApp's ``wamid.`` id, or the SMS provider's id.
    """

    message_id: int
    phone_number: str
    body: str = ""
    steps: deque[Step] = field(default_factory=deque)
    timeline: list[tuple[float, Step]] | None = None
    created: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    polls: int = 0
    channel: ChannelName = "sms"
    template_id: int | None = None
    variables: Any = None
    payload: dict[str, Any] = field(default_factory=dict)
    channel_message_id: str = ""

    def __post_init__(self) -> None:
        if not self.channel_message_id:
            hex_id = uuid.uuid4().hex
            self.channel_message_id = (
                f"wamid.{hex_id}" if self.channel == "whatsapp" else f"sim-{hex_id[:12]}"
            )

    def reached(self) -> list[tuple[float, Step]]:
        """The steps of the timeline reached by now (none for a step-scripted message)."""
        elapsed = time.monotonic() - self.created
        return [(offset, step) for offset, step in self.timeline or () if elapsed >= offset]

    def current_step(self) -> Step:
        """The step a status request would answer now, without consuming it."""
        if self.timeline is not None:
            reached = self.reached()
            return reached[-1][1] if reached else Status(_INITIAL[self.channel])
        return self.steps[0] if self.steps else Status(_INITIAL[self.channel])

    def next_step(self) -> Step:
        """The answer to a status request: consumes a step (the last one repeats)."""
        self.polls += 1
        step = self.current_step()
        if self.timeline is None and len(self.steps) > 1:
            self.steps.popleft()
        return step


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator served (the key itself is never recorded)."""

    method: str
    path: str
    had_key: bool
    at: float


class _CountingServer(web.Server):
    def __init__(self, owner: OctopodsSimulator, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        with self._owner._lock:
            self._owner.connections_opened += 1
        super().connection_made(handler, transport)


class OctopodsSimulator:
    """
    A local Octopods server for tests and demos; see the module docstring for scripting.

    :param api_key: the valid SMS Channel API key.
    :param whatsapp_api_key: the valid WhatsApp Business API key.
    :param host: the loopback address to listen on.
    :param port: the port (0 picks a free one).
    :param deliver_after: seconds until a sent message is ``delivered``.
    :param sent_after: seconds until a sent message is ``sent``.
    :param read_after: seconds until a sent WhatsApp message is ``read``.
    :param rate_limit: requests per second admitted per key (sliding one-second window); past
        it, HTTP 429 with ``Retry-After``. None: no limit.
    :param untrackable: answer successful sends with only a ``request_id`` (also an attribute).
    :param status_shape: the shape of WhatsApp status answers, ``"reference"`` or
        ``"overview"`` (also an attribute).
    :param list_shape: the shape of the list of sent WhatsApp messages, ``"messages"`` or
        ``"array"`` (also an attribute).
    """

    def __init__(
        self,
        api_key: str = "sim-channel-key-0123456789",
        *,
        whatsapp_api_key: str = "sim-whatsapp-key-0123456789",
        host: str = "127.0.0.1",
        port: int = 0,
        deliver_after: float = 1.0,
        sent_after: float = 0.3,
        read_after: float = 2.0,
        rate_limit: int | None = None,
        untrackable: bool = False,
        status_shape: StatusShape = "reference",
        list_shape: ListShape = "messages",
    ) -> None:
        for name, value in (("status_shape", status_shape), ("list_shape", list_shape)):
            if not _valid_setting(name, value):
                raise ValueError(f"{name} cannot be {value!r}")
        self.api_key = api_key
        self.whatsapp_api_key = whatsapp_api_key
        self.host = host
        self.port = port
        self.deliver_after = deliver_after
        self.sent_after = sent_after
        self.read_after = read_after
        self.untrackable = untrackable
        self.status_shape: StatusShape = status_shape
        self.list_shape: ListShape = list_shape
        #: Rotated or revoked SMS keys (answered ``error_code`` 5).
        self.revoked_keys: set[str] = set()
        #: Rotated or revoked WhatsApp keys (answered ``error_code`` 6).
        self.revoked_whatsapp_keys: set[str] = set()
        self.messages: dict[int, SimulatedMessage] = {}
        #: The WhatsApp templates by id: a copy of :data:`TEMPLATES`; add or change some freely.
        self.templates: dict[int, dict[str, Any]] = {t["template_id"]: copy.deepcopy(t) for t in TEMPLATES}
        self.requests: list[RequestRecord] = []
        self.connections_opened = 0
        self.rate_limit = rate_limit
        #: Requests answered HTTP 429 because of ``rate_limit``.
        self.rate_limited = 0
        self._routes_served: Counter[str | None] = Counter()
        self._admitted: dict[str | None, deque[float]] = {}
        self._faults: deque[Step] = deque()
        self._next_id = 4829174
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.ServerRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to put in the connection's host, e.g. ``http://127.0.0.1:8765``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> OctopodsSimulator:
        """Start serving in a background thread; returns when the port is open."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, errors), daemon=True, name="octopods-simulator"
        )
        self._thread.start()
        if not ready.wait(15) or errors:
            raise RuntimeError(f"The Octopods simulator did not start: {errors[0] if errors else 'timeout'}")
        return self

    def stop(self) -> None:
        """Stop serving and free the port (hanging requests are released)."""
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(15)
        self._loop = self._thread = None

    def __enter__(self) -> OctopodsSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as err:
            errors.append(err)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        server = _CountingServer(self, self._handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- scripting ---------------------------------------------------------------------------

    def add_message(
        self,
        *steps: Step,
        message_id: int | None = None,
        phone_number: str = DELIVERED_NUMBER,
        timeline: Iterable[tuple[float, Step]] | None = None,
        channel: ChannelName = "sms",
        template_id: int | None = None,
    ) -> int:
        """
        Create a message with a script and return its id.

        :param steps: answers to successive status requests; the last one repeats (default: one
            ``queued`` for SMS, ``unknown`` for WhatsApp).
        :param message_id: the id to use (default: the next free one).
        :param phone_number: the number reported in status answers.
        :param timeline: instead of steps, ``(seconds after now, step)`` pairs.
        :param channel: ``"sms"`` or ``"whatsapp"``: the path and key that find it.
        :param template_id: the WhatsApp template it was sent with.
        """
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        with self._lock:
            if message_id is None:
                message_id = self._next_id
                self._next_id += 1
            self.messages[message_id] = SimulatedMessage(
                message_id=message_id,
                phone_number=phone_number,
                steps=deque(_as_step(s) for s in (steps or (_INITIAL[channel],))),
                timeline=None if timeline is None else [(float(t), _as_step(s)) for t, s in timeline],
                channel=channel,
                template_id=template_id,
            )
        return message_id

    def inject(self, *steps: Step, times: int = 1) -> None:
        """
        Answer the next requests (any endpoint, before checking the key) with these steps.

        :param steps: the answers, in order.
        :param times: how many times to repeat the sequence.
        """
        with self._lock:
            self._faults.extend([_as_step(s) for s in steps] * times)

    def _keys(self, channel: ChannelName) -> tuple[str, set[str]]:
        """The valid key and the revoked keys of ``channel``."""
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        if channel == "whatsapp":
            return self.whatsapp_api_key, self.revoked_whatsapp_keys
        return self.api_key, self.revoked_keys

    def rotate_key(self, new_key: str, channel: ChannelName = "sms") -> None:
        """
        Make ``new_key`` the channel's valid key; the old one now gets ``error_code`` 5 (SMS) or 6 (WhatsApp).

        :param new_key: the new key.
        :param channel: ``"sms"`` or ``"whatsapp"``.
        """
        with self._lock:
            old, revoked = self._keys(channel)
            revoked.add(old)
            revoked.discard(new_key)
            if channel == "whatsapp":
                self.whatsapp_api_key = new_key
            else:
                self.api_key = new_key

    def revoke_key(self, channel: ChannelName = "sms") -> None:
        """
        Revoke the channel's current key: its requests then get ``error_code`` 5 (SMS) or 6 (WhatsApp).

        :param channel: ``"sms"`` or ``"whatsapp"``.
        """
        with self._lock:
            key, revoked = self._keys(channel)
            revoked.add(key)

    def request_count(self, path: str | None = None) -> int:
        """Return how many requests were served (for one path if given)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def connection_extra(self, channel: ChannelName = "sms") -> dict[str, Any]:
        """
        Return the Airflow connection (as a dict) that points at this simulator.

        :param channel: whose key the connection holds, ``"sms"`` or ``"whatsapp"``.
        """
        return {"conn_type": "octopods", "host": self.url, "password": self._keys(channel)[0]}

    def connection_uri_env(
        self, conn_id: str = "octopods_default", channel: ChannelName = "sms"
    ) -> dict[str, str]:
        """
        Return the environment variable that defines an Airflow connection to this simulator.

        :param conn_id: the connection id.
        :param channel: whose key the connection holds, ``"sms"`` or ``"whatsapp"``.
        """
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.connection_extra(channel))}

    @property
    def settings(self) -> dict[str, Any]:
        """The settings ``POST /_simulator/settings`` changes: untrackable, status_shape, list_shape."""
        return {
            "untrackable": self.untrackable,
            "status_shape": self.status_shape,
            "list_shape": self.list_shape,
        }

    # -- serving -----------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/json", headers=headers
        )

    def _error(self, status: int, error: str, error_code: int | None = None) -> web.Response:
        payload: dict[str, Any] = {"request_id": str(uuid.uuid4()), "error": error}
        if error_code is not None:
            payload["error_code"] = error_code
        return self._json(status, payload)

    async def _admin(self, request: web.BaseRequest) -> web.StreamResponse:
        """Serve the ``/_simulator/`` endpoints described in the module docstring."""
        if request.path == _ADMIN_STATS and request.method == "GET":
            with self._lock:
                served = self._routes_served
                return self._json(
                    200,
                    {
                        "connections_opened": self.connections_opened,
                        "requests": len(self.requests),
                        "status_requests": served["sms_status"],
                        "whatsapp_status_requests": served["whatsapp_status"],
                        "list_requests": served["whatsapp_list"],
                        "sends": served["sms_send"] + served["whatsapp_send"],
                        "messages": len(self.messages),
                        "cpu_seconds": time.process_time(),
                        "rate_limited": self.rate_limited,
                    },
                )
        if request.path == _ADMIN_SETTINGS and request.method in ("GET", "POST"):
            if request.method == "POST":
                try:
                    settings = await request.json()
                except ValueError:
                    settings = None
                if not isinstance(settings, dict) or not all(
                    _valid_setting(*item) for item in settings.items()
                ):
                    return self._error(
                        400,
                        'Send any of {"untrackable": true|false, "status_shape": "reference"|"overview", '
                        '"list_shape": "messages"|"array"}.',
                        1,
                    )
                with self._lock:
                    for name, value in settings.items():
                        setattr(self, name, value)
            return self._json(200, self.settings)
        if request.path == _ADMIN_MESSAGES and request.method == "POST":
            try:
                specs = (await request.json())["messages"]
                scripts = [
                    (
                        [(float(t), str(s)) for t, s in spec["timeline"]],
                        spec.get("phone_number") or DELIVERED_NUMBER,
                        spec.get("channel", "sms"),
                        None if spec.get("template_id") is None else int(spec["template_id"]),
                    )
                    for spec in specs
                ]
                if any(channel not in CHANNELS for _, _, channel, _ in scripts):
                    raise ValueError("unknown channel")
            except (ValueError, KeyError, TypeError):
                return self._error(
                    400,
                    'Send {"messages": [{"timeline": [[seconds, status], ...], "phone_number": "+1...", '
                    '"channel": "sms"|"whatsapp", "template_id": 539}, ...]} (timeline required).',
                    1,
                )
            created_at, started = time.time(), time.monotonic()
            ids = [
                self.add_message(
                    timeline=timeline, phone_number=phone, channel=channel, template_id=template_id
                )
                for timeline, phone, channel, template_id in scripts
            ]
            with self._lock:
                for message_id in ids:  # one clock for the batch, so delivery times are exact
                    self.messages[message_id].created = started
                    self.messages[message_id].created_at = datetime.fromtimestamp(created_at, UTC)
            return self._json(201, {"message_ids": ids, "created_at": created_at})
        return self._error(404, f"No simulator route for {request.method} {request.path}.")

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer a request, and log it as ``METHOD PATH STATUS`` (any key in the path as ``***``)."""
        response = await self._respond(request)
        if log.isEnabledFor(logging.INFO):
            path = request.path + (f"?{request.query_string}" if request.query_string else "")
            with self._lock:
                secrets = {
                    self.api_key,
                    self.whatsapp_api_key,
                    *self.revoked_keys,
                    *self.revoked_whatsapp_keys,
                }
            for secret in secrets | {request.headers.get(AUTH_HEADER)}:
                if secret:
                    path = path.replace(secret, "***")
            log.info("%s %s %s", request.method, path, response.status)
        return response

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(_ADMIN_PREFIX):
            return await self._admin(request)
        key = request.headers.get(AUTH_HEADER)
        route, params = _route(request.method, request.path)
        channel: ChannelName = "whatsapp" if request.path.startswith(_WHATSAPP_PREFIX) else "sms"
        with self._lock:
            self.requests.append(RequestRecord(request.method, request.path, key is not None, time.time()))
            self._routes_served[route] += 1
            fault = self._faults.popleft() if self._faults else None
            valid, revoked = self._keys(channel)
            is_revoked = key in revoked
            retry_after = self._admit(key)
        if retry_after is not None:
            return self._json(
                429,
                {"request_id": str(uuid.uuid4()), "error": "Too many requests for this API key."},
                {"Retry-After": str(retry_after)},
            )
        if fault is not None:
            return await self._answer(request, fault, None)
        if is_revoked:
            return self._error(400, *_REVOKED[channel])
        if key != valid:
            return self._error(401, "Unauthorized: missing or unknown X-Octopods-Auth key.")
        if route == "sms_send":
            return await self._send(request)
        if route == "whatsapp_send":
            return await self._send_whatsapp(request, params["template"])
        if route == "templates":
            return self._templates(request)
        if route == "whatsapp_list":
            return self._list(request)
        if route in ("sms_status", "whatsapp_status"):
            return await self._status(request, params["id"], channel)
        return self._error(404, f"No route for {request.method} {request.path}.")

    def _admit(self, key: str | None) -> int | None:
        """Admit one request of ``key`` under ``rate_limit`` (lock held); else the Retry-After."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        window = self._admitted.setdefault(key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) < self.rate_limit:
            window.append(now)
            return None
        self.rate_limited += 1
        return max(1, math.ceil(window[0] + 1.0 - now))

    async def _status(
        self, request: web.BaseRequest, raw_id: str, channel: ChannelName
    ) -> web.StreamResponse:
        """Serve a status request of ``channel``: a message of the other channel is not found."""
        if not (raw_id.isascii() and raw_id.isdigit()):
            return self._error(400, "You must supply message_id in your request payload.", 1)
        with self._lock:
            message = self.messages.get(int(raw_id))
            if message is not None and message.channel != channel:
                message = None
            step = message.next_step() if message else None
        if message is None or step is None:
            return self._error(400, "Message not found.", _NOT_FOUND[channel])
        return await self._answer(request, step, message)

    def _stamps(self, status: str, message: SimulatedMessage | None) -> dict[str, str | None]:
        """
        The ``sent_at``, ``delivered_at`` and ``read_at`` of a message now in ``status``.

        None for a stage not reached. A timeline-scripted message reached a stage at the offset of
        its first reached step at that stage or later; a step-scripted one, at ``sent_after``,
        ``deliver_after`` or ``read_after``.
        """
        created = message.created_at if message else datetime.now(UTC)
        reached = message.reached() if message is not None else []
        now_at = _STAGE.get(status.lower(), 0)
        stamps: dict[str, str | None] = {}
        defaults = (
            ("sent_at", self.sent_after),
            ("delivered_at", self.deliver_after),
            ("read_at", self.read_after),
        )
        for stage, (name, default) in enumerate(defaults, start=1):
            offset = min((t for t, step in reached if _stage(step) >= stage), default=default)
            stamps[name] = (
                (created + timedelta(seconds=offset)).strftime(_TIME_FORMAT) if now_at >= stage else None
            )
        return stamps

    def _status_payload(self, step: Status, message: SimulatedMessage | None) -> dict[str, Any]:
        if message is not None and message.channel == "whatsapp":
            return self._whatsapp_status(step, message)
        stamps = self._stamps(step.status, message)
        return {
            "request_id": str(uuid.uuid4()),
            "message_id": message.message_id if message else 0,
            "status": step.status,
            "phone_number": message.phone_number if message else None,
            "sent_at": stamps["sent_at"],
            "delivered_at": stamps["delivered_at"],
            "failure_reason": step.failure_reason,
        }

    def _whatsapp_status(self, step: Status, message: SimulatedMessage) -> dict[str, Any]:
        """A WhatsApp status answer, in the ``status_shape`` of the moment."""
        if self.status_shape == "overview":
            status = step.status.upper()
            if message.timeline is None:
                updated = datetime.now(UTC)
            else:
                updated = message.created_at + timedelta(
                    seconds=max((t for t, _ in message.reached()), default=0)
                )
            payload = {
                "status": status,
                "status_message": STATUS_MESSAGES.get(status, ""),
                "channel_message_id": message.channel_message_id,
                "intercom_conversation_id": "",
                "intercom_conversation_part_id": "",
                "last_updated": updated.strftime(_TIME_FORMAT),
            }
            if status == "FAILED":
                payload["failure_reason"] = step.failure_reason or ""
            return payload
        status = step.status.lower()
        return {
            "request_id": str(uuid.uuid4()),
            "message_id": message.message_id,
            "status": status,
            "phone_number": message.phone_number,
            "channel_message_id": message.channel_message_id,
            **self._stamps(status, message),
            "failure_reason": step.failure_reason if status == "failed" else None,
        }

    async def _answer(
        self, request: web.BaseRequest, step: Step, message: SimulatedMessage | None
    ) -> web.StreamResponse:
        assert self._stopping is not None
        if isinstance(step, Status):
            return self._json(200, self._status_payload(step, message))
        if isinstance(step, Reply):
            body = step.body
            if isinstance(body, (dict, list)):
                return self._json(step.status, body, step.headers)
            data = body.encode() if isinstance(body, str) else (body or b"")
            return web.Response(status=step.status, body=data, headers=step.headers)
        if isinstance(step, Hang):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=step.seconds)
            return self._error(503, "Hung request released.")
        data = json.dumps(
            self._status_payload(Status(getattr(step, "status", "delivered")), message)
        ).encode()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        if isinstance(step, Reset):
            await response.write(data[: len(data) // 3])
            if request.transport is not None:
                request.transport.abort()
            return response
        assert isinstance(step, Trickle)
        for i in range(len(data)):
            if self._stopping.is_set():
                break
            try:
                await response.write(data[i : i + 1])
            except ConnectionResetError:  # the client gave up waiting: what a trickle is for
                break
            await asyncio.sleep(step.interval)
        return response

    def _accepted(self, answer: dict[str, Any]) -> web.Response:
        """The 201 of a successful send: only its ``request_id`` when ``untrackable``."""
        return self._json(201, {"request_id": answer["request_id"]} if self.untrackable else answer)

    async def _send(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self._error(400, "You must supply destination_phone in your request payload.", 1)
        for name in ("destination_phone", "body"):
            if name not in payload or payload[name] is None:
                return self._error(400, f"You must supply {name} in your request payload.", 1)
        phone, body = payload["destination_phone"], payload["body"]
        if not isinstance(body, str) or not body.strip():
            return self._error(400, "The message body is empty.", 2)
        checked = check_destination(phone)
        if checked == "refused":
            return self._error(400, "The destination phone number is invalid.", 3)
        fate = next((f for suffix, f in MAGIC_NUMBERS.items() if phone.endswith(suffix)), None)
        if checked == "not_valid":
            fate = Status("failed", FAILURE_REASONS["invalid_number"])
        if isinstance(fate, Reply):
            return self._json(fate.status, {"request_id": str(uuid.uuid4()), **fate.body})
        if isinstance(fate, Status) and fate.status == "queued":
            timeline: list[tuple[float, Step]] = [(0, Status("queued"))]
        elif isinstance(fate, Status):
            timeline = [(0, Status("queued")), (self.sent_after, Status("sent")), (self.deliver_after, fate)]
        else:
            timeline = [
                (0, Status("queued")),
                (self.sent_after, Status("sent")),
                (self.deliver_after, Status("delivered")),
            ]
        message_id = self.add_message(phone_number=phone, timeline=timeline)
        with self._lock:
            message = self.messages[message_id]
            message.body, message.payload = body, payload
        return self._accepted(
            {
                "request_id": str(uuid.uuid4()),
                "message_id": message_id,
                "channel_message_id": message.channel_message_id,
            }
        )

    async def _send_whatsapp(self, request: web.BaseRequest, raw_template_id: str) -> web.StreamResponse:
        """Serve a template send; the checks run in the order of the module docstring."""
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("destination_phone") is None:
            return self._error(400, "You must supply destination_phone in your request payload.", 1)
        phone = payload["destination_phone"]
        checked = check_destination(phone)
        if checked == "refused":
            return self._error(400, "The destination phone number is invalid.", 5)
        template_id = (
            int(raw_template_id) if raw_template_id.isascii() and raw_template_id.isdigit() else None
        )
        with self._lock:
            template = None if template_id is None else self.templates.get(template_id)
        if template is None:
            return self._error(400, "Template not found.", 7)
        if template.get("template_status") != "Accepted":
            return self._error(400, "Only templates in the Accepted state can be sent.", 10)
        if media_header(template) is not None:
            if payload.get("header_attachment_url") is None:
                return self._error(400, "You must supply header_attachment_url in your request payload.", 1)
            if not _is_http_url(payload["header_attachment_url"]):
                return self._error(400, "header_attachment_url must be a public http(s) URL.", 8)
        variables = payload.get("message_variables")
        problem = _variables_error(template, variables)
        if problem is not None:
            return self._error(400, *problem)
        intercom = payload.get("open_intercom_conversation")
        if intercom is not None and _as_bool(intercom) is None:
            return self._error(400, "open_intercom_conversation must be true or false.", 1)
        path = next(
            (p for suffix, p in WHATSAPP_MAGIC_NUMBERS.items() if phone.endswith(suffix)), WHATSAPP_PATH
        )
        if checked == "not_valid":
            path = (Status("failed", WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]),)
        offsets = (self.sent_after, self.deliver_after, self.read_after)
        timeline = [(0.0, "unknown"), *zip(offsets, path, strict=False)]
        message_id = self.add_message(
            phone_number=phone, timeline=timeline, channel="whatsapp", template_id=template_id
        )
        with self._lock:
            message = self.messages[message_id]
            message.variables, message.payload = variables, payload
            message.body = _render(str(template.get("template_body", "")), _body_values(variables))
        return self._accepted(
            {
                "request_id": str(uuid.uuid4()),
                "message_id": message_id,
                "message_status_url": f"{request.url.origin()}/api/v1/whatsapp/messages/{message_id}",
            }
        )

    def _templates(self, request: web.BaseRequest) -> web.Response:
        """Serve the list of templates, filtered by the ``active`` and ``lang`` queries."""
        active, lang = request.query.get("active"), request.query.get("lang")
        wanted = None if active is None else _as_bool(active)
        if active is not None and wanted is None:
            return self._error(400, "active must be true or false.", 1)
        with self._lock:
            listed = [
                t
                for t in self.templates.values()
                if (wanted is None or t.get("active") == wanted)
                and (lang is None or str(t.get("language", "")).lower() == lang.lower())
            ]
            return self._json(200, listed)

    def _list(self, request: web.BaseRequest) -> web.Response:
        """Serve the newest WhatsApp messages, current statuses read without consuming steps."""
        raw = request.query.get("limit", "100")
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            return self._error(400, "limit must be a whole number from 1 to 100.", 1)
        with self._lock:
            sent = [m for m in self.messages.values() if m.channel == "whatsapp"]
            sent.sort(key=lambda m: (m.created, m.message_id), reverse=True)
            listed = [(m, status) for m in sent if (status := _as_status(m.current_step())) is not None]
            listed = listed[: min(int(raw), 100)]
        if not sent:
            return self._error(400, "No messages have been sent on this channel yet.", 7)
        if self.list_shape == "array":
            return self._json(200, [self._array_item(m, status) for m, status in listed])
        return self._json(
            200,
            {"request_id": str(uuid.uuid4()), "messages": [self._messages_item(m, s) for m, s in listed]},
        )

    def _messages_item(self, message: SimulatedMessage, status: Status) -> dict[str, Any]:
        """A message as the "messages" list shape has it."""
        lowered = status.status.lower()
        item = {
            "message_id": message.message_id,
            "status": lowered,
            "phone_number": message.phone_number,
            "sent_at": self._stamps(lowered, message)["sent_at"],
        }
        if lowered == "failed":
            item["failure_reason"] = status.failure_reason or ""
        return item

    def _array_item(self, message: SimulatedMessage, status: Status) -> dict[str, Any]:
        """A message as the "array" list shape has it."""
        upper = status.status.upper()
        reason = {"code": 470, "title": status.failure_reason or ""} if upper == "FAILED" else ""
        return {
            "user_phone_number": message.phone_number,
            "created_at": message.created_at.strftime(_TIME_FORMAT),
            "message_content": message.body,
            "message_status": {
                "channel_message_id": message.message_id,
                "message_status": upper,
                "failure_reason": reason,
            },
        }
