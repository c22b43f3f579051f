"""
Hooks for the Octopods API: :class:`OctopodsHook` (``requests``) and :class:`OctopodsAsyncHook` (``aiohttp``).

Every rule of a call is written once in this module, and both hooks run it:

- :func:`connection_settings` reads a connection into :class:`ApiSettings` (once per hook);
- :func:`time_limit` is how long a request may take;
- :func:`~airflow_provider_octopods.utils.budget.retry_delay` is the delay before the next try;
- :func:`failure_error` says whether a request that got no answer was sent (:class:`Failure`);
- :func:`read_answer` turns an answer into a result or an error.

:func:`exchange` strings them together without doing I/O: it yields what to do (:class:`Send` a
request, :class:`Load` the connection again, :class:`Pause` before a retry, :class:`Notice` a log
line) and receives what came of it. The hooks only carry those actions out, with ``requests``
or ``aiohttp``; :func:`_requests_failure` and :func:`_aiohttp_failure` name what went wrong in
each library's terms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import json
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import requests
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_octopods import __version__
from airflow_provider_octopods.exceptions import (
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsCertificateError,
    OctopodsError,
    OctopodsInputError,
    OctopodsSendUnconfirmedError,
    OctopodsThrottledError,
    OctopodsTransientError,
    Sent,
)
from airflow_provider_octopods.models import (
    KEY_REVOKED,
    PROVIDER_ERROR,
    SMS,
    WHATSAPP,
    Channel,
    MessageStatus,
    SendOptions,
    SentMessage,
    SentSms,
    SmsStatus,
    seconds,
    validate_message_id,
)
from airflow_provider_octopods.utils.budget import (
    coalesce,
    group_budget,
    group_id,
    parse_retry_after,
    read_rate,
    retry_delay,
)
from airflow_provider_octopods.utils.phone import normalize_phone, parse_region, parse_strict
from airflow_provider_octopods.utils.segments import check_body, parse_max_segments, ucs2_culprit
from airflow_provider_octopods.utils.templates import (
    WhatsAppTemplate,
    attachment_url,
    check_template,
    message_variables,
    parse_templates,
    template_id_of,
)

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = ["MessageStatus", "OctopodsAsyncHook", "OctopodsHook", "SentMessage", "SentSms", "SmsStatus"]

AUTH_HEADER = "X-Octopods-Auth"
DEFAULT_HOST = "https://app.octopods.io"
SEND_PATH = SMS.messages_path
#: WhatsApp's templates; ``{TEMPLATES_PATH}/{template_id}/messages`` sends one.
TEMPLATES_PATH = "/api/v1/whatsapp/templates"
#: The most messages one list answer holds (Octopods caps ``limit`` there and documents no pagination).
LIST_LIMIT = 100
USER_AGENT = f"airflow-provider-octopods/{__version__}"
#: Seconds to open a TCP (and TLS) connection.
CONNECT_TIMEOUT = 10.0
#: Seconds for a whole request, unless the connection's ``timeout`` extra says otherwise ...
DEFAULT_TIMEOUT = 30.0
#: ... which may not exceed this (an hour): longer is a typo, and past ``threading.TIMEOUT_MAX`` a crash.
MAX_TIMEOUT = 3600.0
#: Octopods' answers are a few hundred bytes; anything larger than this is refused unread.
MAX_RESPONSE_BYTES = 64 * 1024
#: ... but a list of the newest 100 WhatsApp sends carries each one's text: it may take this much.
MAX_LIST_BYTES = 1024 * 1024
#: ... and the templates of a key (Meta allows a verified business up to 6,000, each with its texts).
MAX_TEMPLATES_BYTES = 16 * 1024 * 1024
#: Same-origin redirects of a GET followed at most; a redirect to another origin is never followed.
MAX_REDIRECTS = 3
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: HTTP statuses by which a server says it did not process the request: repeating it is safe.
NOT_PROCESSED_STATUSES = frozenset({408, 425, 429})
#: The message id the connection test asks about: no message has it, so a valid key gets a 400.
PROBE_MESSAGE_ID = 0
#: What stands for the key in any text a server sends back.
REDACTED = "***"

# -- the connection -----------------------------------------------------------------------------

#: The only values of the ``verify`` extra that turn TLS certificate verification off.
VERIFY_OFF = frozenset({"false", "0", "no", "off"})
#: Values of the ``verify`` extra that mean "verify with the default CA bundle" (as do null and "").
VERIFY_ON = frozenset({"true", "1", "yes", "on", ""})
_HOST_LABELS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ApiSettings:
    """
    Where and how to reach Octopods, read from an Airflow connection by :func:`connection_settings`.

    :param base_url: scheme, host and port, without a trailing slash.
    :param key: the Channel API key (never in a repr).
    :param timeout: seconds for a whole request.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param default_region: the region of national phone numbers (extra ``default_region``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (extra ``strict_numbers``).
    :param max_requests_per_second: the key's request budget in this process; None adapts to 429s.
    :param label: how messages name the connection (``connection 'x'``).
    """

    base_url: str
    key: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True
    default_region: str | None = None
    strict_numbers: bool = True
    max_requests_per_second: float | None = None
    label: str = "this connection"

    @cached_property
    def proxy(self) -> str | None:
        """The proxy to reach ``base_url`` through (:func:`proxy_for`), decided once per read."""
        return proxy_for(self.base_url)

    @cached_property
    def group(self) -> str:
        """The request budget's group of this URL and key (a keyed hash, never the key)."""
        return group_id(self.base_url, self.key)

    @cached_property
    def tls(self) -> ssl.SSLContext:
        """aiohttp's TLS context for :attr:`ca_bundle`, looked up once per read of the connection (not per poll)."""
        return ssl_context(self.ca_bundle)

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle both libraries verify servers with (certifi's by default); None: no checks."""
        if self.verify is False:
            return None
        if self.verify is True:
            import certifi

            return certifi.where()
        return self.verify


def connection_label(conn_id: str | None) -> str:
    """Name a connection in a message: ``connection 'x'``, or ``this connection`` (the UI's Test)."""
    return "this connection" if conn_id is None else f"connection '{conn_id}'"


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_hostname(host: str) -> bool:
    """Whether ``host`` is an IP address or a DNS name (IDNA allowed): no spaces or stray characters."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        return _HOST_LABELS.fullmatch(host.encode("idna").decode("ascii").lower()) is not None
    except UnicodeError:
        return False


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


def parse_verify(value: Any, label: str) -> bool | str:
    """
    Read the ``verify`` extra; fail closed: only an explicit false turns verification off.

    ``false`` (or ``"false"``, ``"0"``, ``"no"``, ``"off"``) turns it off; ``true``, null or an
    empty string keep it on with the default CA bundle; any other string is the path of a CA
    bundle (a PEM file or a directory of them) that must exist.

    :param value: the extra's value.
    :param label: the connection, as :func:`connection_label` names it.
    """
    if value is None or isinstance(value, bool):
        return value is not False
    field_name = f"extra 'verify' of {label}"
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise OctopodsInputError(
            field_name, f"{value!r:.40} is neither true, false nor a CA bundle path; give one of those."
        )
    word = value.strip().lower()
    if word in VERIFY_OFF or word in VERIFY_ON:
        return word not in VERIFY_OFF
    path = os.path.expanduser(value.strip())
    if not os.path.exists(path):
        raise OctopodsInputError(
            field_name,
            f"the CA bundle {value.strip()!r} does not exist (looked for {os.path.abspath(path)!r}); give "
            'the path of a PEM file readable by the worker and the triggerer, or {"verify": false} to turn '
            "certificate checks off.",
        )
    try:
        ssl_context(path)
    except (OSError, ssl.SSLError) as err:  # a file that is not PEM, a directory we may not read
        raise OctopodsInputError(
            field_name, f"the CA bundle {value.strip()!r} could not be loaded ({err}); give a PEM file."
        ) from None
    return path


def ssl_context(bundle: str | None) -> ssl.SSLContext:
    """
    Return the client TLS context that trusts exactly ``bundle`` (aiohttp's side of :attr:`ApiSettings.ca_bundle`).

    Built once per version of the file: a CA bundle replaced in place (a rotated private CA) is
    read again at the next read of the connection (:attr:`ApiSettings.tls`), as ``requests``
    reads it on every new connection.

    :param bundle: a PEM file or directory, or None: no verification (``verify`` explicitly false).
    """
    try:
        found = os.stat(bundle) if bundle is not None else None
    except OSError:  # gone since the connection was read: the handshake will say so
        found = None
    return _ssl_context(bundle, found and (found.st_mtime_ns, found.st_size, found.st_ino))


@lru_cache(maxsize=8)
def _ssl_context(bundle: str | None, version: tuple[int, int, int] | None) -> ssl.SSLContext:
    if bundle is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def _parse_timeout(value: Any, label: str) -> float:
    """Read the ``timeout`` extra: a finite number of seconds above 0 (default :data:`DEFAULT_TIMEOUT`)."""
    field_name = f"extra 'timeout' of {label}"
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        timeout = DEFAULT_TIMEOUT if value in (None, "") else float(value)
    except (TypeError, ValueError, OverflowError):
        raise OctopodsInputError(field_name, "give a number of seconds, e.g. 30.") from None
    if not 0 < timeout <= MAX_TIMEOUT:  # also refuses NaN
        raise OctopodsInputError(field_name, f"must be a number of seconds above 0, at most {MAX_TIMEOUT:g}.")
    return timeout


def _api_key(conn: Any, label: str) -> str:
    """Return the connection's Channel API key, or raise before any request if it cannot be sent."""
    key = (conn.password or "").strip()
    if not key:
        raise OctopodsAuthError(
            f"{label[0].upper()}{label[1:]} has no Channel API key: put the key "
            "from Octopods in the connection's password field (labelled 'Channel API key')."
        )
    for position, char in enumerate(key, start=1):
        bad = (
            "a line break"
            if char in "\r\n"
            else "a control character"
            if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F
            else "a character that is not ASCII (a curly quote, a non-breaking space?)"
            if ord(char) > 0x7E
            else None
        )
        if bad:
            raise OctopodsInputError(
                f"password (Channel API key) of {label}",
                f"the key holds {bad} at position {position}; paste the key from Octopods again, as "
                "plain text on one line.",
            )
    return key


def connection_settings(conn: Any, label: str | None = None) -> ApiSettings:
    """
    Read an Airflow connection of type ``octopods``: the one place its fields and extras are read.

    An empty host means ``https://app.octopods.io``; a host without a scheme gets ``https://``.
    Plain ``http://`` to a host that is not loopback needs the extra ``allow_insecure_http``.
    Every problem is an :class:`~airflow_provider_octopods.exceptions.OctopodsInputError` (an
    empty key an ``OctopodsAuthError``) naming the field, raised before any request.

    :param conn: the Airflow connection.
    :param label: how messages name the connection (default: by its id).
    """
    label = label or connection_label(getattr(conn, "conn_id", None) or "octopods")
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    if not isinstance(extra, dict):
        raise OctopodsInputError(
            f"extra of {label}", 'give a JSON object, e.g. {"timeout": 30}, or leave it empty.'
        )
    key = _api_key(conn, label)
    host = str(conn.host or "").strip().rstrip("/") or DEFAULT_HOST
    host = host if "://" in host else f"https://{host}"
    not_a_url = OctopodsInputError(
        f"host of {label}",
        f"{host!r:.80} is not an http(s) URL; use https://app.octopods.io or leave it empty.",
    )
    try:
        parts = urlsplit(host)
        port = conn.port or parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number from 0 to 65535
        raise not_a_url from None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise OctopodsInputError(
            f"port of {label}", f"{port!r:.20} is not a port; give a number from 1 to 65535."
        )
    if parts.scheme not in {"http", "https"} or not parts.hostname or not _is_hostname(parts.hostname):
        raise not_a_url
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
        raise OctopodsInputError(
            f"host of {label}",
            "give only scheme, host and port (e.g. https://app.octopods.io), no path, query or credentials.",
        )
    if (
        parts.scheme == "http"
        and not _is_loopback(parts.hostname)
        and not _truthy(extra.get("allow_insecure_http"))
    ):
        raise OctopodsInputError(
            f"host of {label}",
            f"plain http:// to {parts.hostname} would send the API key unencrypted; use https:// "
            'or set the extra {"allow_insecure_http": true} if you really mean it.',
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return ApiSettings(
        # the default port left out: https://h and https://h:443 are one origin, one request budget
        base_url=f"{parts.scheme}://{netloc}"
        + (f":{port}" if port and port != _DEFAULT_PORTS.get(parts.scheme) else ""),
        key=key,
        timeout=_parse_timeout(extra.get("timeout"), label),
        verify=parse_verify(extra.get("verify"), label),
        default_region=parse_region(extra.get("default_region"), f"extra 'default_region' of {label}"),
        strict_numbers=parse_strict(extra.get("strict_numbers"), f"extra 'strict_numbers' of {label}"),
        max_requests_per_second=read_rate(extra, label),
        label=label,
    )


def missing_connection(conn_id: str) -> OctopodsInputError:
    """The error of a connection id Airflow does not know, pointing to the connection page."""
    return OctopodsInputError(
        "octopods_conn_id",
        f"there is no connection '{conn_id}'. Add it in Admin > Connections (type Octopods, the Channel "
        f"API key as password) or set AIRFLOW_CONN_{conn_id.upper()}; the docs' Connection page "
        "(docs/connections/octopods.rst) shows every field.",
    )


# -- where a request goes -----------------------------------------------------------------------


@lru_cache(maxsize=256)
def origin(url: str) -> tuple[str, str | None, int | None]:
    """Return a URL's origin (scheme, host, port), the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


def proxy_for(url: str) -> str | None:
    """
    Return the proxy to reach ``url`` through, or None: the one proxy decision of both hooks.

    ``requests`` reads the environment as it always does (``HTTPS_PROXY``/``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY`` with host names, domain suffixes, ``host:port`` and IPv4 networks;
    lowercase variables first); the answer is given to both libraries, neither of which reads the
    environment itself. A proxy both cannot use (not ``http://`` or ``https://``, a bad port) is an
    :class:`~airflow_provider_octopods.exceptions.OctopodsInputError`: nothing is sent.

    :param url: the URL of the request.
    """
    scheme, host, port = origin(url)
    # requests matches a NO_PROXY "host:port" only against a port the URL spells out: spell out the default.
    where = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/" if host and port else url
    proxy = requests.utils.select_proxy(where, requests.utils.get_environ_proxies(where))
    if not proxy:
        return None
    try:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number from 0 to 65535
        usable = False
    if not usable:
        raise OctopodsInputError(
            f"proxy for {origin(url)[0]}:// (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY)",
            f"{proxy.split('@')[-1]!r:.60} is not a proxy both hooks can use; give http://host:port (or "
            "https://), or list Octopods' host in NO_PROXY.",
        )
    return parts.geturl()


# -- the calls ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """
    One call a caller wants made.

    :param request: what errors name it (``send``, ``status``, ``test``, ``run``).
    :param method: the HTTP method.
    :param path: the path (and query) below the connection's URL, starting with ``/``.
    :param body: the encoded JSON body, if any.
    :param headers: extra headers; the key and the defaults win.
    :param parse: turns the decoded JSON into the result.
    :param within: the caller's own limit in seconds (a trigger's time left), if less than the
        connection's ``timeout``; any wait for the key's request budget counts against it.
    :param subject: what the call is about, for messages (``SMS 4829174``).
    :param channel: the channel whose rules apply (its error codes, its noun).
    :param max_bytes: the largest answer read; a larger one is refused unread.
    """

    request: str
    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parse: Callable[[Any], Any] | None = None
    within: float | None = None
    subject: str = ""
    channel: Channel = SMS
    max_bytes: int = MAX_RESPONSE_BYTES

    def error(self, cls: type[OctopodsError], message: str, sent: Sent, **facts: Any) -> OctopodsError:
        """
        Return the error ``cls`` of this call, with what it was and whether it may have sent anything.

        A send that may have reached Octopods becomes an
        :class:`~airflow_provider_octopods.exceptions.OctopodsSendUnconfirmedError`: no retry repeats it.
        """
        if self.request == "send" and sent is Sent.MAYBE:
            cls = OctopodsSendUnconfirmedError
            message += (
                f" The {self.channel.noun} may have been sent: it is not sent again, so that a retry cannot "
                "text the recipient twice. Check in Octopods whether it went out before sending it again (or "
                "clearing the task that sent it)."
            )
        if not issubclass(cls, OctopodsApiError):
            facts = {}
        return cls(message, request=self.request, sent=sent, **facts)


def _within(timeout: float | timedelta | None) -> float | None:
    return None if timeout is None else seconds(timeout, "timeout")


def status_call(
    message_id: int | str, timeout: float | timedelta | None = None, channel: Channel = SMS
) -> Call:
    """
    Validate a message id (and a time limit) and return the call of its status.

    :param message_id: the message's id.
    :param timeout: the most seconds (or a timedelta) the request may take, or None.
    :param channel: the channel that sent it.
    """
    number = validate_message_id(message_id)
    return Call(
        "status",
        "GET",
        f"{channel.messages_path}/{number}",
        parse=functools.partial(MessageStatus.from_api, expected_message_id=number, channel=channel),
        within=_within(timeout),
        subject=f"{channel.noun} {number}",
        channel=channel,
    )


def list_call(
    channel: Channel = WHATSAPP, limit: int = LIST_LIMIT, timeout: float | timedelta | None = None
) -> Call:
    """
    Return the call of the channel's newest sends: ``{message_id: MessageStatus}``, newest first.

    Either documented answer (``{"messages": [...]}`` or a bare array) is read; an item without a
    status or a usable id is left out (:meth:`MessageStatus.from_list_item`), and an id listed
    twice keeps its first (newest) item.

    :param channel: a channel that lists (``listable``).
    :param limit: how many, 1 to :data:`LIST_LIMIT`.
    :param timeout: the most seconds the request may take, or None.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= LIST_LIMIT:
        raise OctopodsInputError("limit", f"got {limit!r:.20}; pass a number from 1 to {LIST_LIMIT}.")

    def parse(payload: Any) -> dict[int, MessageStatus]:
        items = payload.get("messages") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise OctopodsTransientError("Octopods sent a malformed list answer (no list of messages).")
        listed: dict[int, MessageStatus] = {}
        for item in items:
            status = MessageStatus.from_list_item(item, channel)
            if status is not None:
                listed.setdefault(status.message_id, status)
        return listed

    return Call(
        "list",
        "GET",
        f"{channel.messages_path}?limit={limit}",
        parse=parse,
        within=_within(timeout),
        channel=channel,
        max_bytes=MAX_LIST_BYTES,
    )


def templates_call(active: bool | None = None, lang: str | None = None) -> Call:
    """
    Return the call of the WhatsApp templates of the key (a list of :class:`WhatsAppTemplate`).

    :param active: only active (True) or inactive (False) templates; None: all.
    :param lang: only templates in this ISO 639-1 language, e.g. ``en``.
    """
    query = {"active": None if active is None else str(bool(active)).lower(), "lang": lang}
    text = urlencode({k: v for k, v in query.items() if v is not None})
    return Call(
        "templates",
        "GET",
        TEMPLATES_PATH + (f"?{text}" if text else ""),
        parse=parse_templates,
        subject="the WhatsApp templates",
        channel=WHATSAPP,
        max_bytes=MAX_TEMPLATES_BYTES,
    )


def send_call(
    destination_phone: Any, body: Any, settings: ApiSettings, **options: Unpack[SendOptions]
) -> tuple[Call, str | None]:
    """
    Check a send's arguments and return its call, and a warning about its cost if it has one.

    ``default_region`` and ``strict_numbers`` come from the options, else from the connection.
    The call's result is the :class:`~airflow_provider_octopods.models.SentSms` of Octopods'
    answer, with the number as sent (E.164), the text's encoding and its number of segments.

    :param destination_phone: the recipient.
    :param body: the text.
    :param settings: the connection's settings.
    :param options: the optional arguments (:class:`~airflow_provider_octopods.models.SendOptions`).
    """
    phone, payload = _recipient(destination_phone, settings, options)
    cost = check_body(body, max_segments=parse_max_segments(options.get("max_segments")))
    call = prepared_send_call(
        SMS,
        SEND_PATH,
        _json({**payload, "body": body}),
        phone,
        encoding=cost.encoding,
        segments=cost.segments,
    )
    culprit = ucs2_culprit(body)
    warning = None
    if culprit is not None and culprit[2].segments < cost.segments:
        char, position, gsm7 = culprit
        warning = (
            f"The SMS text is sent in UCS-2 because of {char!r} (U+{ord(char):04X}) at position "
            f"{position}: it costs {cost.segments} segments instead of {gsm7.segments} in GSM-7."
        )
    return call, warning


def _recipient(
    destination_phone: str, settings: ApiSettings, options: SendOptions
) -> tuple[str, dict[str, Any]]:
    """The number in E.164 form, and the fields of a send's payload that every channel shares."""
    region, strict = options.get("default_region"), options.get("strict_numbers")
    phone = normalize_phone(
        destination_phone,
        default_region=settings.default_region if region is None else parse_region(region),
        strict=settings.strict_numbers if strict is None else parse_strict(strict),
    )
    payload: dict[str, Any] = {"destination_phone": phone}
    if options.get("destination_user_name") is not None:
        payload["destination_user_name"] = str(options["destination_user_name"])
    if options.get("open_intercom_conversation") is not None:
        payload["open_intercom_conversation"] = bool(options["open_intercom_conversation"])
    if options.get("intercom_teammate_id") is not None:
        payload["intercom_teammate_id"] = options["intercom_teammate_id"]
    return phone, payload


def _json(payload: dict[str, Any]) -> bytes:
    try:
        return json.dumps(payload, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise OctopodsInputError("intercom_teammate_id", f"cannot be sent as JSON ({err}).") from None


def whatsapp_call(
    template_id: Any,
    destination_phone: str,
    variables: Any,
    settings: ApiSettings,
    templates: list[WhatsAppTemplate] | None,
    header_attachment_url: str | None = None,
    **options: Unpack[SendOptions],
) -> Call:
    """
    Check a WhatsApp template send against its template and return its call.

    :param template_id: the template to send.
    :param destination_phone: the recipient.
    :param variables: ``message_variables`` in any form :func:`~airflow_provider_octopods.utils.templates.message_variables` reads.
    :param settings: the connection's settings.
    :param templates: the key's templates to check against, or None not to check.
    :param header_attachment_url: the media header's public URL.
    :param options: the optional arguments (:class:`~airflow_provider_octopods.models.SendOptions`).
    """
    number = template_id_of(template_id)
    url = attachment_url(header_attachment_url)
    template = None if templates is None else check_template(number, templates, url)
    phone, payload = _recipient(destination_phone, settings, options)
    fitted = message_variables(variables, template)
    if fitted is not None:
        payload["message_variables"] = fitted
    if url:
        payload["header_attachment_url"] = url
    return prepared_send_call(
        WHATSAPP, f"{TEMPLATES_PATH}/{number}/messages", _json(payload), phone, template_id=number
    )


def prepared_send_call(channel: Channel, path: str, body: bytes, phone: str, **facts: Any) -> Call:
    """
    Return the call of a checked send: the one place a send's :class:`Call` and its result are made.

    :func:`send_call` and :func:`whatsapp_call` check and encode a send, then build it here; a bulk
    send keeps each recipient as its path and body only, and rebuilds its call here when it sends.

    :param channel: the channel.
    :param path: the send's path.
    :param body: the send's JSON body.
    :param phone: the number in E.164 form.
    :param facts: what the hook knows of the send, set on the
        :class:`~airflow_provider_octopods.models.SentMessage` (``encoding``, ``template_id`` ...).
    """
    return Call(
        "send",
        "POST",
        path,
        body,
        parse=lambda answer: dataclasses.replace(
            SentMessage.from_api(answer), destination_phone=phone, channel=channel.name, **facts
        ),
        subject=f"the {channel.noun} to {phone}",
        channel=channel,
    )


def may_send_again(err: OctopodsError) -> bool:
    """Whether a failed send may be sent again at once: Octopods certainly did not process it, and it may pass (a 429)."""
    return isinstance(err, OctopodsTransientError) and err.sent is Sent.NO


def endpoint_call(
    method: str, endpoint: str | None, data: Any = None, headers: Mapping[str, str] | None = None
) -> Call:
    """
    Return the call of ``HttpHook.run(endpoint, data, headers)`` for any Octopods path.

    For GET, HEAD and DELETE, ``data`` is the query string (a mapping or a string); for other
    methods it is the JSON body (a mapping or list is encoded, a string or bytes sent as is).

    :param method: the HTTP method.
    :param endpoint: a path below the connection's URL, e.g. ``api/v1/sms/messages/42``.
    :param data: the query or body.
    :param headers: extra headers.
    """
    text = (endpoint or "").strip()
    if not text or "://" in text or text.startswith("//") or any(c.isspace() or ord(c) < 0x21 for c in text):
        raise OctopodsInputError(
            "endpoint",
            f"{text!r:.60} is not a path; give a path below the connection's URL such as "
            "'api/v1/sms/messages/42' (the key only goes to the connection's host).",
        )
    path, method = "/" + text.lstrip("/"), method.upper()
    body: bytes | None = None
    if method in ("GET", "HEAD", "DELETE"):
        query = urlencode(data, doseq=True) if isinstance(data, Mapping) else str(data or "").lstrip("?")
        path += ("&" if "?" in path else "?") + query if query else ""
    elif isinstance(data, str | bytes):
        body = data.encode() if isinstance(data, str) else data
    elif data is not None:
        try:
            body = json.dumps(data, separators=(",", ":")).encode()
        except (TypeError, ValueError) as err:
            raise OctopodsInputError(
                "data", f"cannot be sent as JSON ({err}); give a dict, a list or text."
            ) from None
    return Call("run", method, path, body, headers or {})


# -- the rules ----------------------------------------------------------------------------------


class Failure(Enum):
    """How a request failed to get an answer; the value is the sentence's reason."""

    INVALID = "the request could not be made"
    DNS = "the host name could not be resolved"
    CONNECT = "no connection could be opened"
    PROXY = "the proxy could not open a tunnel to it"
    TLS = "the TLS handshake failed"
    CERTIFICATE = "its TLS certificate could not be verified"
    #: The key's request budget in this process had no slot within the caller's limit.
    QUEUED = "the key's request budget in this process had no free slot in time"
    #: The caller's limit was used up before the request could leave.
    EXPIRED = "the time allowed for the call ran out before the request could leave"
    TIMEOUT = "no answer in time"
    BROKEN = "the connection broke"


#: Failures before the request was written: Octopods certainly did not process it.
NOT_SENT = frozenset(Failure) - {Failure.TIMEOUT, Failure.BROKEN}


@dataclass(frozen=True, slots=True)
class Send:
    """
    Action: send one HTTP request and read at most ``max_bytes`` + 1 bytes of its answer.

    :param timeout: seconds for the whole exchange, from when the request is sent
        (:func:`time_limit`); ``connect_timeout`` for the connection alone.
    :param ca_bundle: the CA bundle to verify the server with; None when verification is off.
    :param proxy: the proxy to go through (:func:`proxy_for`), or None.
    :param within: the caller's own limit (:attr:`Call.within`), which a wait for the budget uses up.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)  # the key travels here: never in a repr
    body: bytes | None
    connect_timeout: float
    timeout: float
    ca_bundle: str | None
    proxy: str | None = None
    within: float | None = None
    max_bytes: int = MAX_RESPONSE_BYTES


@dataclass(frozen=True, slots=True)
class Load:
    """Action: read the connection again (after an auth error) and return its :class:`ApiSettings`."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Action: wait ``delay`` seconds before retry ``attempt`` of ``attempts`` after ``error``."""

    delay: float
    error: OctopodsTransientError
    attempt: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Action: log ``message`` at INFO."""

    message: str


@dataclass(frozen=True, slots=True)
class Answer:
    """Outcome of a :class:`Send`: the answer's status, headers and (bounded) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Failed:
    """Outcome of a :class:`Send` that got no answer; ``detail`` is optional, library-free text."""

    kind: Failure
    detail: str = ""


def time_limit(call: Call, settings: ApiSettings) -> float:
    """Return the seconds one request of ``call`` may take: the connection's ``timeout``, or less."""
    return settings.timeout if call.within is None else max(min(call.within, settings.timeout), 0.001)


def _sentence(text: str) -> str:
    """``text`` as the end of a sentence: one final period."""
    return text.rstrip().rstrip(".") + "."


def failure_error(call: Call, failed: Failed, settings: ApiSettings, send: Send) -> OctopodsError:
    """Return the error of a request that got no answer: whether it was sent is decided here, by :data:`NOT_SENT`."""
    where = settings.base_url
    if failed.kind is Failure.CERTIFICATE:
        return call.error(
            OctopodsCertificateError,
            f"The TLS certificate of {where} could not be verified{f' ({failed.detail})' if failed.detail else ''}, "
            'so nothing was sent. If a proxy or a private CA signs it, set the connection\'s extra "verify" '
            "to the path of that CA's bundle (PEM); check the host name and the machine's clock otherwise.",
            Sent.NO,
        )
    if failed.kind in NOT_SENT:
        cls = OctopodsThrottledError if failed.kind is Failure.QUEUED else OctopodsTransientError
        verb = "Did not ask" if failed.kind in (Failure.QUEUED, Failure.EXPIRED) else "Could not reach"
        return call.error(
            cls, f"{verb} Octopods at {where}: {failed.kind.value}, so nothing was sent.", Sent.NO
        )
    path = urlsplit(send.url).path
    if failed.kind is Failure.TIMEOUT:
        message = f"Octopods did not answer {send.method} {path} within {send.timeout:.3g} s."
    else:
        message = f"The connection to Octopods broke during {send.method} {path}."
    return call.error(OctopodsTransientError, message, Sent.MAYBE)


def scrub(value: Any, key: str) -> Any:
    """Return ``value`` (decoded JSON or text from a server) with every copy of ``key`` redacted."""
    if isinstance(value, str):
        return value.replace(key, REDACTED) if key and key in value else value
    if isinstance(value, dict):
        return {scrub(k, key): scrub(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, key) for v in value]
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def read_answer(call: Call, answer: Answer, settings: ApiSettings) -> Any:
    """
    Turn an answer into the call's result, or raise the error it stands for.

    - 2xx with a JSON body: the parsed result (a 2xx that is not JSON is transient).
    - 401, or 400 with the channel's rotated-key ``error_code`` (SMS 5, WhatsApp 6):
      :class:`~airflow_provider_octopods.exceptions.OctopodsAuthError`.
    - 408, 425, 429 (not processed), 5xx or a 400 without Octopods' body: transient.
    - 400 with the channel's provider-error code (SMS 4): ``OctopodsApiError``.
    - any other 4xx: ``OctopodsBadRequestError``; for a status, with what to check.

    Every text the server sent has the key redacted (:func:`scrub`) before it reaches an error.

    :param call: the call answered.
    :param answer: the answer.
    :param settings: the connection's settings (its key, its label).
    """
    status = answer.status
    if not wants_body(status, answer.headers, call.max_bytes) or len(answer.body) > call.max_bytes:
        hint = " Send with check_template=False not to read them." if call.request == "templates" else ""
        raise call.error(
            OctopodsTransientError,
            f"Octopods sent an answer larger than {call.max_bytes} bytes; it was refused unread.{hint}",
            Sent.MAYBE,
            status_code=status,
        )
    try:
        payload = scrub(json.loads(answer.body.decode("utf-8")), settings.key)
    except (UnicodeDecodeError, ValueError, RecursionError):
        payload = None
    if 200 <= status < 300:
        if payload is None:
            raise call.error(
                OctopodsTransientError,
                f"Octopods answered HTTP {status} with a body that is not JSON.",
                Sent.MAYBE,
                status_code=status,
            )
        if call.parse is None:
            return payload
        try:
            return call.parse(payload)
        except RecursionError:  # JSON nested deeper than the parser's stack: not Octopods' shape either
            raise call.error(
                OctopodsTransientError, "Octopods sent an answer nested too deeply to read.", Sent.MAYBE
            ) from None
        except OctopodsApiError as err:  # a malformed answer: the models raise it without the call's facts
            raise call.error(
                type(err),
                str(err),
                Sent.MAYBE,
                status_code=err.status_code,
                error_code=err.error_code,
                error=err.error,
                request_id=err.request_id,
            ) from None
    fields = payload if isinstance(payload, dict) else {}
    code = fields.get("error_code")
    facts: dict[str, Any] = {
        "status_code": status,
        "error_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "error": _text(fields.get("error")) or _text(fields.get("message")),
        "request_id": _text(fields.get("request_id")),
    }
    code, said = facts["error_code"], f": {_sentence(facts['error'])[:-1]}" if facts["error"] else ""
    meaning = call.channel.error_codes.get(code) if status == 400 else None
    if status == 401 or meaning == KEY_REVOKED:
        why = "was rotated or revoked" if meaning == KEY_REVOKED else "is missing or unknown"
        raise call.error(
            OctopodsAuthError,
            f"Octopods rejected the Channel API key of {settings.label}: the key {why} (HTTP {status}{said}). "
            "Update the connection's Channel API key (password field) with the current key from Octopods.",
            Sent.NO,
            **facts,
        )
    if status in NOT_PROCESSED_STATUSES or not 400 <= status < 500 or (status == 400 and not fields):
        # Only a 4xx refuses; a 1xx or 3xx that is not a redirect may stand before an answer.
        what = "server trouble" if status >= 400 else "not a final answer"
        what = "rate limit reached" if status == 429 else what
        raise call.error(
            OctopodsTransientError,
            f"Octopods answered HTTP {status} ({what}){said}.",
            Sent.NO if status in NOT_PROCESSED_STATUSES else Sent.MAYBE,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            **facts,
        )
    if meaning == PROVIDER_ERROR:
        raise call.error(
            OctopodsApiError,
            f"Octopods' {call.channel.noun} provider failed (HTTP 400, error_code {code}){said}.",
            Sent.NO,
            **facts,
        )
    coded = f", error_code {code}" if code is not None else ""
    message = f"Octopods refused the request (HTTP {status}{coded}){said}."
    if call.request == "status":
        message = (
            f"Octopods does not know {call.subject} (HTTP {status}{coded}{said}). Check that the connection's "
            "Channel API key belongs to the channel that sent it, and that the id is the send's message_id "
            "(not its request_id or channel_message_id)."
        )
    raise call.error(OctopodsBadRequestError, message, Sent.NO, **facts)


def redirect_target(call: Call, send: Send, answer: Answer, settings: ApiSettings) -> str:
    """
    Return the URL a redirect leads to, if the call may follow it (a GET, to the same origin); else raise.

    ``requests`` and ``aiohttp`` both forward custom headers such as ``X-Octopods-Auth`` to
    another host; neither follows redirects here, this function decides, for both.
    ``https://host`` and ``https://host:443`` are the same origin.
    """
    path = urlsplit(send.url).path
    if call.method != "GET":
        raise call.error(
            OctopodsTransientError,
            f"Octopods answered {call.method} {path} with a redirect (HTTP {answer.status}); it was not "
            "followed, so the request is not repeated, and it may have been processed.",
            Sent.MAYBE,
            status_code=answer.status,
        )
    location = scrub(answer.headers.get("Location") or "", settings.key).strip()
    target = urljoin(send.url, location) if location else ""
    # A backslash or a user name: URL parsers disagree on the host (urllib3 ends it at "\", urlsplit
    # at "@"); the origin checked below must be the one the library connects to.
    if (
        not location
        or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E or c == "\\" for c in location)
        or "@" in urlsplit(target).netloc
    ):
        raise call.error(
            OctopodsTransientError,
            f"Octopods answered with a redirect (HTTP {answer.status}) to {location!r:.80}, which is not a URL.",
            Sent.MAYBE,
            status_code=answer.status,
        )
    if origin(send.url) != origin(target):
        there = urlsplit(target)
        raise call.error(
            OctopodsBadRequestError,
            f"Octopods redirected to another origin ({there.scheme}://{there.hostname}); the API key was not "
            "sent there. If the API moved, update the connection's host to that origin.",
            Sent.NO,
            status_code=answer.status,
        )
    return target


@lru_cache(maxsize=16)
def _headers(key: str, with_body: bool) -> Mapping[str, str]:
    """The headers of a request: one read-only copy per key, not per poll; the key travels only here."""
    from types import MappingProxyType

    headers = {AUTH_HEADER: key, "Accept": "application/json", "User-Agent": USER_AGENT}
    if with_body:
        headers["Content-Type"] = "application/json"
    return MappingProxyType(headers)


def _follow(call: Call, settings: ApiSettings) -> Generator[Send, Any, Any]:
    """Make one request, following same-origin redirects of a GET; return the result."""
    total = time_limit(call, settings)
    headers = _headers(settings.key, call.body is not None)
    if call.headers:  # run(headers=...): the key and the defaults still win
        headers = {**call.headers, **headers}
    url = settings.base_url + call.path
    for _ in range(MAX_REDIRECTS + 1):
        send = Send(
            call.method,
            url,
            headers,
            call.body,
            min(CONNECT_TIMEOUT, total),
            total,
            settings.ca_bundle,
            settings.proxy,
            call.within,
            call.max_bytes,
        )
        outcome = yield send
        if isinstance(outcome, Failed):
            raise failure_error(call, outcome, settings, send)
        if outcome.status not in REDIRECT_CODES:
            return read_answer(call, outcome, settings)
        url = redirect_target(call, send, outcome, settings)
    raise call.error(
        OctopodsTransientError, f"Octopods redirected more than {MAX_REDIRECTS} times.", Sent.MAYBE
    )


def exchange(call: Call, settings: ApiSettings, max_retries: int = 0) -> Generator[Any, Any, Any]:
    """
    Make ``call`` with the rules of every call; the generator's return value is the result.

    After an auth error the connection is read again once: if the key changed, the call is made
    again with it (a key rotated while a sensor waits is picked up). A transient error of a GET
    is retried ``max_retries`` times after :func:`~airflow_provider_octopods.utils.budget.retry_delay`;
    any other method is never repeated (a send may have reached Octopods).

    :param call: the call.
    :param settings: the connection's settings.
    :param max_retries: retries of a transient GET failure.
    """
    attempt, refreshed = 0, False
    while True:
        try:
            return (yield from _follow(call, settings))
        except OctopodsAuthError:
            if refreshed:
                raise
            refreshed, old_key = True, settings.key
            settings = yield Load()
            if settings.key == old_key:
                raise
            yield Notice(f"The Channel API key of {settings.label} changed; retrying with it.")
        except OctopodsTransientError as err:
            attempt += 1
            if call.method != "GET" or attempt > max_retries:
                raise
            yield Pause(retry_delay(attempt, err.retry_after), err, attempt, max_retries)


class Exchange:
    """Step through :func:`exchange` for a hook: ``action = step(outcome)`` until it returns None."""

    def __init__(self, call: Call, settings: ApiSettings, max_retries: int = 0) -> None:
        self._steps = exchange(call, settings, max_retries)
        self.result: Any = None

    def step(self, outcome: Any = None) -> Any:
        """Feed the outcome of the last action; return the next, or None when the call is done."""
        try:
            return self._steps.send(outcome)
        except StopIteration as done:
            self.result = done.value
            return None


def wants_body(status: int, headers: Mapping[str, str], limit: int = MAX_RESPONSE_BYTES) -> bool:
    """Whether to read the body: not for a redirect or one declared over ``limit`` bytes."""
    declared = headers.get("Content-Length", "")
    too_large = declared.isascii() and declared.isdigit() and int(declared) > limit
    return status not in REDIRECT_CODES and not too_large


def _causes(err: BaseException) -> Generator[BaseException, None, None]:
    """Yield ``err`` and every exception behind it (cause, context, the libraries' wrapped reasons)."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        current = todo.pop()
        if isinstance(current, BaseException) and id(current) not in seen:
            seen.add(id(current))
            yield current
            todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]


def _tls_failure(err: BaseException) -> Failed | None:
    """A certificate problem (always in the handshake), or a TLS error raised by the handshake itself."""
    # aiohttp's ClientConnectorCertificateError is an ssl.CertificateError too, without verify_message:
    # the reason is on the stdlib error it wraps.
    certificate = [cause for cause in _causes(err) if isinstance(cause, ssl.SSLCertVerificationError)]
    if certificate:
        reasons = [str(getattr(cause, "verify_message", "") or "") for cause in certificate]
        return Failed(Failure.CERTIFICATE, next((reason for reason in reasons if reason), ""))
    for cause in _causes(err):
        tb = cause.__traceback__ if isinstance(cause, ssl.SSLError) else None
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "do_handshake":
                return Failed(Failure.TLS)
            tb = tb.tb_next
    return None


# -- requests -----------------------------------------------------------------------------------


def _requests_failure(err: BaseException) -> Failed:
    """Name what stopped a ``requests`` call before an answer; a failure that cannot be placed is BROKEN."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    tls = _tls_failure(err)
    if tls is not None:
        return tls
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if isinstance(err, requests.exceptions.ProxyError):
        return Failed(Failure.PROXY)
    if isinstance(err, requests.ConnectTimeout) or isinstance(reason, NewConnectionError):
        return Failed(Failure.DNS if isinstance(reason, NameResolutionError) else Failure.CONNECT)
    if isinstance(err, requests.RequestException) and isinstance(
        err, ValueError
    ):  # InvalidURL, InvalidSchema ...
        return Failed(Failure.INVALID)
    return Failed(Failure.TIMEOUT if isinstance(err, requests.Timeout) else Failure.BROKEN)


class _UnredirectedSession(requests.Session):
    """
    A ``requests`` session that sees no redirect: :func:`redirect_target` decides them.

    With ``allow_redirects=False``, ``Session.send`` still reads a redirect's whole body, without
    a size or time bound, to prepare the next request; a session that finds no target reads none.
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        """Return no target, whatever the answer says."""
        return None


def _requests_exchange(session: requests.Session, send: Send) -> Answer | Failed:
    try:
        response = session.request(
            send.method,
            send.url,
            headers=send.headers,
            data=send.body,
            timeout=(send.connect_timeout, send.timeout),
            allow_redirects=False,
            stream=True,
            verify=send.ca_bundle or False,
            proxies={"http": send.proxy, "https": send.proxy} if send.proxy else {},
        )
        with response:
            if response.status_code < 200:  # http.client stops at a 1xx other than 100; the answer follows it
                response.raw.close()  # so this connection never serves another request
                return Answer(response.status_code, response.headers)
            declared = response.headers.get("Content-Length", "0")
            if not (declared.isascii() and declared.isdigit()):  # framing aiohttp refuses: refuse it too
                return Failed(Failure.BROKEN)
            if not wants_body(response.status_code, response.headers, send.max_bytes):
                return Answer(response.status_code, response.headers)
            body = response.raw.read(send.max_bytes + 1, decode_content=True)
            return Answer(response.status_code, response.headers, body)
    except Exception as err:  # requests', urllib3's and the socket's errors alike
        return _requests_failure(err)


def send_with_requests(session: requests.Session, send: Send) -> Answer | Failed:
    """
    Perform ``send`` with ``requests``, the whole exchange within ``send.timeout``.

    ``requests`` bounds each socket read, not the exchange: a server that sends its head one byte
    at a time would hold the call far past its timeout. The request runs in a daemon thread that
    the caller stops waiting for when the time is up (a ``TIMEOUT``: it may have been processed).

    :param session: the hook's session.
    :param send: the request.
    """
    box: list[Answer | Failed] = []
    worker = threading.Thread(
        target=lambda: box.append(_requests_exchange(session, send)), name="octopods-request", daemon=True
    )
    worker.start()
    worker.join(send.timeout + 0.05)  # a connect timeout (nothing sent) is told by requests itself
    return box[0] if box else Failed(Failure.TIMEOUT)


# -- aiohttp ------------------------------------------------------------------------------------


def _aiohttp_failure(err: BaseException) -> Failed:
    """Name what stopped an ``aiohttp`` call before an answer; a failure that cannot be placed is BROKEN."""
    tls = _tls_failure(err)
    if tls is not None:
        return tls
    kinds: list[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure]] = [
        ((aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError), Failure.PROXY),
        (aiohttp.ClientConnectorDNSError, Failure.DNS),
        (aiohttp.ClientSSLError, Failure.TLS),  # a ClientConnectorError: raised while connecting
        ((aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError), Failure.CONNECT),
        ((aiohttp.InvalidURL, ValueError), Failure.INVALID),
        (TimeoutError, Failure.TIMEOUT),
    ]
    return next((Failed(kind) for types, kind in kinds if isinstance(err, types)), Failed(Failure.BROKEN))


async def send_with_aiohttp(
    session: aiohttp.ClientSession, send: Send, tls: ssl.SSLContext
) -> Answer | Failed:
    """
    Perform ``send`` with ``aiohttp`` (redirects never followed by ``aiohttp``), within ``send.timeout``.

    :param session: the shared session of the event loop.
    :param send: the request.
    :param tls: the TLS context of ``send.ca_bundle`` (:attr:`ApiSettings.tls`).
    """
    try:
        async with session.request(
            send.method,
            send.url,
            headers=send.headers,
            data=send.body,
            allow_redirects=False,
            ssl=tls,
            proxy=send.proxy,
            timeout=aiohttp.ClientTimeout(total=send.timeout, connect=send.connect_timeout),
        ) as response:
            body = b""
            while (
                wants_body(response.status, response.headers, send.max_bytes) and len(body) <= send.max_bytes
            ):
                chunk = await response.content.read(send.max_bytes + 1 - len(body))
                if not chunk:
                    break
                body += chunk
            return Answer(response.status, response.headers, body)
    except Exception as err:  # aiohttp's, asyncio's and the socket's errors alike
        return _aiohttp_failure(err)


class SharedSession:
    """
    The ``aiohttp`` session of one event loop, shared by every async hook on it.

    A triggerer running a thousand Octopods triggers keeps one pool of kept-alive connections
    instead of a session per trigger or per poll. A hook takes it with :meth:`acquire` at its
    first request on a loop and gives it back with :meth:`release` when closed; the last one out
    closes it. Sessions of loops that closed without that are dropped at the next
    :meth:`acquire`, so no closed loop stays reachable through them. The session keeps no
    cookies and reads no environment: the proxy and the key come with each request.
    """

    _by_loop: dict[asyncio.AbstractEventLoop, SharedSession] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=90, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # aiohttp sends a GET again, unasked and outside the key's budget, when its connection breaks
        # before an answer; one call is one request, as with requests (aiohttp's test client does the same).
        self.session._retry_connection = False

    @classmethod
    def acquire(cls) -> SharedSession:
        """Return the running loop's shared session, counting one more user."""
        loop = asyncio.get_running_loop()
        for dead in [other for other in cls._by_loop if other.is_closed()]:
            cls._by_loop.pop(dead).session.detach()
        shared = cls._by_loop.get(loop)
        if shared is None or shared.session.closed:
            shared = cls._by_loop[loop] = cls(loop)
        shared.users += 1
        return shared

    async def release(self) -> None:
        """Count one user less; the last one closes the session (on its own loop only)."""
        self.users -= 1
        if self.users > 0 or asyncio.get_running_loop() is not self.loop:
            return
        if self._by_loop.get(self.loop) is self:
            del self._by_loop[self.loop]
        await self.session.close()


class ConnectionCache:
    """
    A connection's settings, read once per event loop and shared by its hooks for ``TTL`` seconds.

    A triggerer resuming a thousand Octopods waits would otherwise ask the metadata database (or,
    on Airflow 3, the API server) for the same connection a thousand times. Concurrent first
    reads share one lookup. An auth error makes the hook ask again with ``refresh`` (a rotated
    key is picked up at once); other edits reach running waits within ``TTL``. Only results are
    kept once a lookup ends, never its task (a task holds its loop; the cache is keyed weakly by it).
    """

    TTL = 60.0
    _entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    async def get(cls, conn_id: str, stale: ApiSettings | None = None) -> ApiSettings:
        """
        Return the connection's settings.

        When a key rotates, every wait of a triggerer gets its auth error at once: a lookup in
        flight, or settings read since, serve them all, so the connection is read once, not once
        per wait.

        :param conn_id: the connection id.
        :param stale: settings Octopods refused: read the connection again, unless it was since.
        """
        loop = asyncio.get_running_loop()
        entries = cls._entries.get(loop)
        if entries is None:
            entries = cls._entries[loop] = {}
        entry = entries.get(conn_id)
        if isinstance(entry, tuple) and entry[1] is not stale and time.monotonic() < entry[0]:
            return entry[1]  # type: ignore[no-any-return]
        if not isinstance(entry, asyncio.Task):  # a lookup in flight is as fresh as a new one
            entry = entries[conn_id] = loop.create_task(_fetch_connection(conn_id))
            entry.add_done_callback(lambda task: cls._settle(entries, conn_id, task))
        return await asyncio.shield(entry)

    @classmethod
    def _settle(cls, entries: dict[str, Any], conn_id: str, task: asyncio.Task[Any]) -> None:
        if entries.get(conn_id) is not task:
            return
        if task.cancelled() or task.exception() is not None:
            del entries[conn_id]  # a failed lookup is not cached
        else:
            entries[conn_id] = (time.monotonic() + cls.TTL, task.result())


async def _fetch_connection(conn_id: str) -> ApiSettings:
    """Read a connection without blocking the event loop, and mask its key."""
    from airflow.providers.common.compat.connection import get_async_connection

    try:
        conn = await get_async_connection(conn_id)
    except AirflowNotFoundException:
        raise missing_connection(conn_id) from None
    settings = connection_settings(conn)
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 2: the local, sync masker
        mask_secret(settings.key)
    else:  # Airflow 3: the sync call would make a blocking round trip to the supervisor
        await amask_secret(settings.key)
    return settings


async def send_within_budget(
    session: aiohttp.ClientSession, send: Send, settings: ApiSettings, started: float
) -> Answer | Failed:
    """
    Perform ``send`` when the key's budget in this process allows, and teach the budget the answer.

    Every async request with one key on one event loop (all the triggers of a triggerer) draws
    from one :func:`~airflow_provider_octopods.utils.budget.group_budget`: polls due together are
    spread, and a 429 slows the whole group. The wait for a slot counts against the caller's limit
    (``send.within``, from ``started``): a request that gets no slot within it is not sent
    (``QUEUED``), and one that does gets only what is left of it. A deadline is never overrun.

    :param session: the shared session of the event loop.
    :param send: the request.
    :param settings: the connection's settings (base URL, key group, ``max_requests_per_second``).
    :param started: when (``time.monotonic()``) the caller's limit began.
    """
    budget = group_budget(settings.group, settings.base_url, settings.max_requests_per_second)
    within = None if send.within is None else send.within - (time.monotonic() - started)
    if within is not None and within <= 0:
        return Failed(Failure.EXPIRED)  # e.g. a slow first read of the connection used it all
    try:
        sent_at = await budget.acquire(within)
    except TimeoutError:
        return Failed(Failure.QUEUED)
    if send.within is not None:
        left = send.within - (time.monotonic() - started)
        if left <= 0:
            return Failed(Failure.EXPIRED)
        if left < send.timeout:
            send = dataclasses.replace(send, timeout=left, connect_timeout=min(send.connect_timeout, left))
    outcome = await send_with_aiohttp(session, send, settings.tls)
    if isinstance(outcome, Answer):
        budget.on_answer(outcome.status, parse_retry_after(outcome.headers.get("Retry-After")), sent_at)
    else:
        budget.on_answer(None, None, sent_at)
    return outcome


# -- the hooks ----------------------------------------------------------------------------------


class _OctopodsHookBase:
    """What both hooks share: the connection's name and type, and the checks of a send."""

    conn_name_attr = "octopods_conn_id"
    default_conn_name = "octopods_default"
    conn_type = "octopods"
    hook_name = "Octopods"
    octopods_conn_id: str
    log: Any
    #: The key's templates, read once per hook (per task) by the first checked WhatsApp send.
    _templates: list[WhatsAppTemplate] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(octopods_conn_id={self.octopods_conn_id!r})"

    def _send_call(
        self, settings: ApiSettings, destination_phone: str, body: str, options: SendOptions
    ) -> Call:
        call, warning = send_call(destination_phone, body, settings, **options)
        if warning:
            self.log.warning("%s", warning)
        return call


def _split_whatsapp(kwargs: dict[str, Any]) -> tuple[str | None, bool, SendOptions]:
    """``header_attachment_url``, ``check_template`` and the send options of a WhatsApp send's kwargs."""
    url = kwargs.pop("header_attachment_url", None)
    check = kwargs.pop("check_template", True)
    return url, bool(check), SendOptions(**kwargs)  # type: ignore[typeddict-item]


class OctopodsHook(_OctopodsHookBase, HttpHook):
    """
    Talk to the Octopods API synchronously, with ``requests``.

    The connection's password is the Channel API key; it travels only in the ``X-Octopods-Auth``
    header. The connection is read once per hook; one ``requests`` session (with TCP keep-alive)
    serves every call. A transient failure of a GET (HTTP 429 and 5xx, unreadable answers,
    connection errors, timeouts) is retried ``max_retries`` times after
    :func:`~airflow_provider_octopods.utils.budget.retry_delay`. When Octopods rejects the key, the
    connection is read again once, so a key rotated while a sensor waits is picked up. What it
    inherits from ``HttpHook`` either goes through the same rules (:meth:`run`,
    :meth:`url_from_endpoint`) or fails and names the method to use.

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    :param max_retries: how many times to retry a transient failure of a GET before raising it.
    :param method: the default HTTP method of :meth:`run` (``HttpHook``'s ``method``).
    """

    def __init__(
        self,
        octopods_conn_id: str = _OctopodsHookBase.default_conn_name,
        *,
        max_retries: int = 2,
        method: str = "GET",
        **kwargs: Any,
    ) -> None:
        super().__init__(method=method, http_conn_id=octopods_conn_id, **kwargs)
        self.octopods_conn_id = octopods_conn_id
        self.max_retries = max_retries
        self._session: requests.Session | None = None
        self._settings: ApiSettings | None = None
        self._label: str | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form's layout for Airflow UIs older than 3.2."""
        from airflow_provider_octopods.get_provider_info import ui_field_behaviour

        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the connection form's extra fields for Airflow UIs older than 3.2 (from ``conn-fields``)."""
        from airflow_provider_octopods.get_provider_info import connection_form_widgets

        return connection_form_widgets()

    def settings(self, refresh: bool = False) -> ApiSettings:
        """Return the connection's settings, read once, or again with ``refresh``; the key is masked."""
        if self._settings is None or refresh:
            try:
                conn = self.get_connection(self.octopods_conn_id)
            except AirflowNotFoundException:
                raise missing_connection(self.octopods_conn_id) from None
            self._settings = connection_settings(conn, self._label)
            mask_secret(self._settings.key)
        return self._settings

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """
        Return the hook's ``requests`` session, created on first use and reused afterwards.

        It carries no credentials and ignores the environment: the key, the CA bundle and the
        proxy come with each request, decided here for both hooks.

        :param headers: extra headers for every request of the session.
        :param extra_options: not supported (give the connection's extras instead).
        """
        if extra_options:
            raise OctopodsInputError(
                "extra_options", "not supported; set timeout and verify on the connection."
            )
        if self._session is None:
            self._session = _UnredirectedSession()
            self._session.trust_env = False  # no HTTP(S)_PROXY, REQUESTS_CA_BUNDLE or .netrc of its own
            if self.keep_alive_adapter is not None:
                self._session.mount("https://", self.keep_alive_adapter)
                self._session.mount("http://", self.keep_alive_adapter)
        if headers:
            self._session.headers.update(headers)
        return self._session

    def close(self) -> None:
        """Close the pooled HTTP connections of the hook."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def call(self, call: Call) -> Any:
        """
        Make ``call`` with every rule of :func:`exchange`: redirects, size bound, errors, key refresh, retries.

        :param call: what to ask.
        """
        exchange = Exchange(call, self.settings(), self.max_retries)
        action = exchange.step()
        while action is not None:
            outcome: Any = None
            if isinstance(action, Send):
                outcome = send_with_requests(self.get_conn(), action)
            elif isinstance(action, Load):
                outcome = self.settings(refresh=True)
            elif isinstance(action, Pause):
                self.log.warning(
                    "%s Retry %d/%d in %.1f s.", action.error, action.attempt, action.attempts, action.delay
                )
                time.sleep(action.delay)
            else:
                self.log.info("%s", action.message)
            action = exchange.step(outcome)
        return exchange.result

    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        **request_kwargs: Any,
    ) -> Any:
        """
        Call any Octopods endpoint with the key, redirect, size and error rules of this hook.

        Useful for endpoints this provider does not wrap. Unlike ``HttpHook.run``, the answer is
        returned decoded (the JSON body), and every failure is an
        :class:`~airflow_provider_octopods.exceptions.OctopodsError`.

        :param endpoint: a path below the connection's URL, e.g. ``api/v1/sms/messages/42``.
        :param data: for GET, HEAD and DELETE the query (a dict or string); otherwise the JSON body.
        :param headers: extra headers (the key header cannot be replaced).
        :param extra_options: not supported; set ``timeout`` and ``verify`` on the connection.
        :param method: the HTTP method; defaults to the hook's ``method`` (GET).
        """
        if extra_options or request_kwargs:
            raise OctopodsInputError(
                "arguments of OctopodsHook.run",
                f"{sorted({*(extra_options or {}), *request_kwargs})} are not supported; give endpoint, "
                "data, headers and method, and set timeout and verify on the connection.",
            )
        return self.call(endpoint_call(method or self.method, endpoint, data, headers))

    def url_from_endpoint(self, endpoint: str | None) -> str:
        """
        Return the URL :meth:`run` would call for ``endpoint`` (the connection's scheme, host and port).

        :param endpoint: a path below the connection's URL.
        """
        return self.settings().base_url + endpoint_call("GET", endpoint).path

    def _use_run_instead(self, *args: Any, **kwargs: Any) -> Any:
        raise OctopodsError(
            "OctopodsHook does not send prepared requests or check raw responses: it would bypass the "
            "key, TLS, redirect and error rules. Use OctopodsHook.run(endpoint, data, headers, method=...), "
            "with OctopodsHook(max_retries=...) for retries."
        )

    run_and_check = _use_run_instead
    check_response = _use_run_instead
    run_with_advanced_retry = _use_run_instead

    def get_message_status(self, message_id: int | str, channel: Channel = SMS) -> MessageStatus:
        """
        Return the current status of a message of ``channel``.

        :param message_id: the ``message_id`` returned when it was sent (an int or a string of digits).
        :param channel: :data:`~airflow_provider_octopods.models.SMS` or ``WHATSAPP``.
        """
        return self.call(status_call(message_id, channel=channel))  # type: ignore[no-any-return]

    def get_sms_status(self, message_id: int | str) -> SmsStatus:
        """
        Return the current status of an SMS.

        :param message_id: the ``message_id`` returned when the SMS was sent (an int or a string of digits).
        """
        return self.get_message_status(message_id, SMS)

    def get_whatsapp_status(self, message_id: int | str) -> MessageStatus:
        """
        Return the current status of a WhatsApp message (``sent``, ``delivered``, ``read``, ``failed`` ...).

        :param message_id: the ``message_id`` returned when the template was sent.
        """
        return self.get_message_status(message_id, WHATSAPP)

    def list_messages(self, channel: Channel = WHATSAPP, limit: int = LIST_LIMIT) -> dict[int, MessageStatus]:
        """
        Return the channel's newest sends by message id (one request; see :func:`list_call`).

        :param channel: a channel that lists its sends.
        :param limit: how many, 1 to 100.
        """
        return self.call(list_call(channel, limit))  # type: ignore[no-any-return]

    def list_whatsapp_messages(self, limit: int = LIST_LIMIT) -> list[MessageStatus]:
        """
        Return the newest WhatsApp messages sent with this key, newest first.

        Octopods lists at most the newest 100 and documents no way to page further; ask for an
        older message by id (:meth:`get_whatsapp_status`).

        :param limit: how many, 1 to 100.
        """
        return list(self.list_messages(WHATSAPP, limit).values())

    def list_whatsapp_templates(
        self, active: bool | None = None, lang: str | None = None
    ) -> list[WhatsAppTemplate]:
        """
        Return the WhatsApp templates of the key, with what each expects.

        :param active: only active (True) or inactive (False) templates; None: all.
        :param lang: only templates in this ISO 639-1 language, e.g. ``en``.
        """
        return self.call(templates_call(active, lang))  # type: ignore[no-any-return]

    def prepare_whatsapp(
        self, template_id: int | str, destination_phone: str, message_variables: Any = None, **kwargs: Any
    ) -> Call:
        """
        Check a template send (the template read once per hook), sending nothing; :meth:`send` sends it.

        Arguments as for :meth:`send_whatsapp_template`.
        """
        url, check, options = _split_whatsapp(kwargs)
        settings = self.settings()
        settings.proxy  # noqa: B018  # an unusable proxy setting fails here, before anything leaves
        if check and self._templates is None:
            self._templates = self.list_whatsapp_templates()
        templates = self._templates if check else None
        return whatsapp_call(
            template_id, destination_phone, message_variables, settings, templates, url, **options
        )

    def send_whatsapp_template(
        self,
        template_id: int | str,
        destination_phone: str,
        message_variables: Any = None,
        *,
        header_attachment_url: str | None = None,
        open_intercom_conversation: bool | None = None,
        intercom_teammate_id: str | int | None = None,
        destination_user_name: str | None = None,
        check_template: bool = True,
        default_region: str | None = None,
        strict_numbers: bool | None = None,
    ) -> SentMessage:
        """
        Send an approved WhatsApp template, at most once (the rules of :meth:`send_sms`).

        With ``check_template`` (the default) the key's templates are read first, and the send is
        refused before any request when the template does not exist, is not Accepted, has a
        media header and no ``header_attachment_url``, or the variables do not fit it.

        :param template_id: the template's id (``template_id`` in Octopods).
        :param destination_phone: the recipient, international or (with ``default_region``) national.
        :param message_variables: the placeholders' values: a list (body-only template), a dict of
            sections (``{"header": [...], "body": [...], "footer": [...], "buttons": [...]}``) or a
            dict keyed ``"1"``, ``"2"``; see :doc:`/whatsapp`.
        :param header_attachment_url: the public URL of a media header's image, video or document.
        :param open_intercom_conversation: whether to open an Intercom conversation for it.
        :param intercom_teammate_id: the Intercom teammate the conversation is assigned to.
        :param destination_user_name: the recipient's name, shown in Octopods.
        :param check_template: read and check the template before sending.
        :param default_region: the region of national numbers (default: the connection's).
        :param strict_numbers: refuse numbers libphonenumber does not call valid (default: the connection's).
        """
        return self.send(
            self.prepare_whatsapp(
                template_id,
                destination_phone,
                message_variables,
                header_attachment_url=header_attachment_url,
                check_template=check_template,
                open_intercom_conversation=open_intercom_conversation,
                intercom_teammate_id=intercom_teammate_id,
                destination_user_name=destination_user_name,
                default_region=default_region,
                strict_numbers=strict_numbers,
            )
        )

    def prepare_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> Call:
        """
        Read the connection and check a send's number and text, sending nothing; :meth:`send` sends it.

        Every problem raises here, before anything leaves (the send operator marks its ledger
        between the two). Arguments as for :meth:`send_sms`.
        """
        settings = self.settings()
        settings.proxy  # noqa: B018  # an unusable proxy setting fails here, before anything leaves
        return self._send_call(settings, destination_phone, body, options)

    def send(self, call: Call) -> SentMessage:
        """
        Send what :meth:`prepare_sms` or :meth:`prepare_whatsapp` prepared, at most once.

        :param call: the prepared send.
        """
        return self.call(call)  # type: ignore[no-any-return]

    def send_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> SentSms:
        """
        Send an SMS, at most once: a failure that may hide a send is never retried.

        Number and text are checked before any request (:doc:`/numbers`). A failure after the
        request left is an ``OctopodsSendUnconfirmedError`` (a retry could text twice); one
        before stays an ``OctopodsTransientError`` whose ``sent`` is ``no``. The answer carries the
        number in E.164 form, the text's encoding and its number of segments.

        :param destination_phone: the recipient, e.g. ``+12015550123`` or, with
            ``default_region``, a national number such as ``(201) 555-0123``.
        :param body: the text, 1 to 1,600 characters.
        :param options: the optional arguments of :class:`~airflow_provider_octopods.models.SendOptions`
            (``destination_user_name``, ``default_region``, ``strict_numbers``, ``max_segments``, ...).
        """
        return self.send(self.prepare_sms(destination_phone, body, **options))

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the connection's URL and Channel API key (the UI's Test button).

        Only an answer in Octopods' shape counts: the probe asks for a message no one has, and
        Octopods answers HTTP 400 with its ``error_code``. Airflow tests a temporary copy of the
        connection under a random id, so the messages say "this connection".
        """
        self._settings, self._label = None, "this connection"
        try:
            try:
                self.call(Call("test", "GET", f"{SEND_PATH}/{PROBE_MESSAGE_ID}"))
            except OctopodsAuthError as err:
                if err.status_code != 401:
                    raise
                self.call(dataclasses.replace(templates_call(), request="test"))  # a WhatsApp key?
                return True, "Connection works: Octopods accepted the WhatsApp channel's API key."
        except OctopodsAuthError as err:
            return False, str(err)
        except OctopodsBadRequestError as err:
            if err.status_code == 400 and err.error_code is not None:
                return True, "Connection works: Octopods accepted the SMS channel's API key."
            return False, (
                f"{self._settings.base_url if self._settings else 'The host'} answered HTTP {err.status_code}, "
                "not as Octopods answers: check the connection's Octopods URL (host)."
            )
        except OctopodsError as err:
            return False, f"Could not check the Channel API key: {err}"
        finally:
            self.close()
            self._settings, self._label = None, None
        return (
            False,
            "The host answered the probe with a success, not as Octopods answers: check the Octopods URL.",
        )


class OctopodsAsyncHook(_OctopodsHookBase, BaseHook):
    """
    Talk to the Octopods API from asyncio code (triggers), with ``aiohttp``.

    Requests go through one ``aiohttp`` session per event loop, shared by all hooks on it
    (:class:`SharedSession`), and through the key's request budget
    (:mod:`~airflow_provider_octopods.utils.budget`). One call is one request: the caller (the
    trigger) owns the polling schedule and backoff. The connection is read without blocking the
    event loop, once, and again only if Octopods rejects the key. Call :meth:`close` (or use
    ``async with``) when done; a hook used on a new event loop takes that loop's session.

    :param octopods_conn_id: the :ref:`Octopods connection <howto/connection:octopods>` to use.
    """

    def __init__(self, octopods_conn_id: str = _OctopodsHookBase.default_conn_name) -> None:
        super().__init__()
        self.octopods_conn_id = octopods_conn_id
        self._settings: ApiSettings | None = None
        self._shared: SharedSession | None = None

    async def __aenter__(self) -> OctopodsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Give the shared session back; the last hook on the event loop closes it."""
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.release()

    def _session(self) -> aiohttp.ClientSession:
        """The running loop's shared session, taken at the first request on that loop."""
        if self._shared is None or self._shared.loop is not asyncio.get_running_loop():
            self._shared = SharedSession.acquire()  # one of a closed loop is dropped by acquire
        return self._shared.session

    async def settings(self, refresh: bool = False) -> ApiSettings:
        """Return the connection's settings, read once (shared on the event loop), or again with ``refresh``."""
        if self._settings is None or refresh:
            self._settings = await ConnectionCache.get(
                self.octopods_conn_id, self._settings if refresh else None
            )
        return self._settings

    async def call(self, call: Call, started: float | None = None) -> Any:
        """
        Make ``call`` with every rule of :func:`exchange`; one call is one request (no retries).

        :param call: what to ask.
        :param started: when (``time.monotonic()``) the caller's limit began; default now.
        """
        started = time.monotonic() if started is None else started
        settings = await self.settings()
        exchange = Exchange(call, settings)
        action = exchange.step()
        while action is not None:
            outcome: Any = None
            if isinstance(action, Send):
                outcome = await send_within_budget(self._session(), action, settings, started)
            elif isinstance(action, Load):
                outcome = settings = await self.settings(refresh=True)
            else:
                self.log.info("%s", action.message)
            action = exchange.step(outcome)
        return exchange.result

    async def shared_call(self, call: Call) -> Any:
        """
        Make a GET ``call`` once for every caller asking the same thing with the same key at the same time.

        Concurrent polls of one message (or one list) with one key in this process share one request.

        :param call: a GET call.
        """
        started = time.monotonic()  # a first read of the connection counts against the call's limit
        settings = await self.settings()
        # A caller sharing another's request still stops at its own limit (a deadline).
        left = None if call.within is None else started + call.within - time.monotonic()
        until = None if left is None else asyncio.get_running_loop().time() + left
        try:
            return await coalesce((settings.group, call.path), self.call, call, started, until=until)
        except TimeoutError:
            within = call.within or 0.0
            send = Send(call.method, settings.base_url + call.path, {}, None, within, within, None)
            raise failure_error(call, Failed(Failure.TIMEOUT), settings, send) from None

    async def get_message_status(
        self, message_id: int | str, timeout: float | timedelta | None = None, channel: Channel = SMS
    ) -> MessageStatus:
        """
        Return the current status of a message (one request; transient trouble raises
        :class:`~airflow_provider_octopods.exceptions.OctopodsTransientError`).

        :param message_id: the ``message_id`` returned when the message was sent.
        :param timeout: seconds (or a timedelta) this request may take at most, if less than the
            connection's ``timeout`` (a trigger passes the time left before its deadline).
        :param channel: the channel that sent it.
        """
        return await self.shared_call(status_call(message_id, timeout, channel))  # type: ignore[no-any-return]

    async def get_sms_status(
        self, message_id: int | str, timeout: float | timedelta | None = None
    ) -> SmsStatus:
        """
        Return the current status of an SMS (see :meth:`get_message_status`).

        :param message_id: the ``message_id`` returned when the SMS was sent.
        :param timeout: seconds (or a timedelta) this request may take at most.
        """
        return await self.get_message_status(message_id, timeout, SMS)

    async def get_whatsapp_status(
        self, message_id: int | str, timeout: float | timedelta | None = None
    ) -> MessageStatus:
        """
        Return the current status of a WhatsApp message (see :meth:`get_message_status`).

        :param message_id: the ``message_id`` returned when the template was sent.
        :param timeout: seconds (or a timedelta) this request may take at most.
        """
        return await self.get_message_status(message_id, timeout, WHATSAPP)

    async def list_messages(
        self, channel: Channel = WHATSAPP, timeout: float | timedelta | None = None
    ) -> dict[int, MessageStatus]:
        """
        Return the channel's newest 100 sends by message id (one request, shared like a status poll).

        :param channel: a channel that lists its sends.
        :param timeout: seconds (or a timedelta) this request may take at most.
        """
        return await self.shared_call(list_call(channel, LIST_LIMIT, timeout))  # type: ignore[no-any-return]

    async def send_until_answered(self, call: Call, attempts: int = 10) -> SentMessage:
        """
        Send ``call`` once; while it certainly did not leave (:func:`may_send_again`: a 429, no
        connection), wait :func:`~airflow_provider_octopods.utils.budget.retry_delay` and send it
        again, at most ``attempts`` times. A 429 never loses nor doubles a message.

        :param call: a prepared send.
        :param attempts: the most tries.
        """
        for attempt in range(1, attempts + 1):
            try:
                return await self.call(call)  # type: ignore[no-any-return]
            except OctopodsError as err:
                if attempt == attempts or not may_send_again(err):
                    raise
                await asyncio.sleep(retry_delay(attempt, getattr(err, "retry_after", None)))
        raise AssertionError("unreachable")

    async def prepare_whatsapp(
        self, template_id: int | str, destination_phone: str, message_variables: Any = None, **kwargs: Any
    ) -> Call:
        """Check a template send, sending nothing (see :meth:`OctopodsHook.prepare_whatsapp`)."""
        url, check, options = _split_whatsapp(kwargs)
        settings = await self.settings()
        settings.proxy  # noqa: B018  # an unusable proxy setting fails here, before anything leaves
        if check and self._templates is None:
            self._templates = await self.call(templates_call())
        templates = self._templates if check else None
        return whatsapp_call(
            template_id, destination_phone, message_variables, settings, templates, url, **options
        )

    async def send_whatsapp_template(
        self, template_id: int | str, destination_phone: str, message_variables: Any = None, **kwargs: Any
    ) -> SentMessage:
        """
        Send a WhatsApp template once (see :meth:`OctopodsHook.send_whatsapp_template` for the arguments).

        :param template_id: the template's id.
        :param destination_phone: the recipient.
        :param message_variables: the placeholders' values.
        :param kwargs: the keyword arguments of :meth:`OctopodsHook.send_whatsapp_template`.
        """
        return await self.call(
            await self.prepare_whatsapp(template_id, destination_phone, message_variables, **kwargs)
        )  # type: ignore[no-any-return]

    async def prepare_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> Call:
        """Read the connection and check a send, sending nothing (see :meth:`OctopodsHook.prepare_sms`)."""
        settings = await self.settings()
        settings.proxy  # noqa: B018  # an unusable proxy setting fails here, before anything leaves
        return self._send_call(settings, destination_phone, body, options)

    async def send_sms(self, destination_phone: str, body: str, **options: Unpack[SendOptions]) -> SentSms:
        """
        Send an SMS once (see :meth:`OctopodsHook.send_sms` for the rules and the arguments).

        :param destination_phone: the recipient, international or (with ``default_region``) national.
        :param body: the text, 1 to 1,600 characters.
        :param options: the optional arguments of :class:`~airflow_provider_octopods.models.SendOptions`.
        """
        return await self.call(await self.prepare_sms(destination_phone, body, **options))  # type: ignore[no-any-return]
