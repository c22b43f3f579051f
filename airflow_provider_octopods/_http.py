"""
The HTTP rules of the Octopods API, in one place for the sync and async hooks.

Where the API lives, how the key is sent, how long a request may take, how an answer becomes a
value or an error, when and how long to wait before asking again, and which redirects may be
followed. The hooks only move bytes; every decision about them is made here.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_octopods import __version__
from airflow_provider_octopods._budget import read_rate
from airflow_provider_octopods._phone import parse_region, parse_strict
from airflow_provider_octopods.exceptions import (
    ERROR_CODE_KEY_REVOKED,
    ERROR_CODE_PROVIDER_ERROR,
    OctopodsApiError,
    OctopodsAuthError,
    OctopodsBadRequestError,
    OctopodsInputError,
    OctopodsTransientError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

AUTH_HEADER = "X-Octopods-Auth"
DEFAULT_HOST = "https://app.octopods.io"
SEND_PATH = "/api/v1/sms/messages"
USER_AGENT = f"airflow-provider-octopods/{__version__}"

#: Seconds to open a TCP (and TLS) connection.
CONNECT_TIMEOUT = 10.0
#: Seconds for a whole request, unless the connection's ``timeout`` extra says otherwise.
DEFAULT_TIMEOUT = 30.0
#: Octopods' answers are a few hundred bytes; anything larger than this is refused unread.
MAX_RESPONSE_BYTES = 64 * 1024
#: Same-origin redirects followed at most; a redirect to another origin is never followed.
MAX_REDIRECTS = 3
#: Transient errors back off exponentially from this many seconds ...
BACKOFF_BASE = 1.0
#: ... up to this cap, which also bounds a server's ``Retry-After``.
BACKOFF_CAP = 60.0


def status_path(message_id: int) -> str:
    """Return the path of a message's status; ``message_id`` must already be validated."""
    return f"{SEND_PATH}/{int(message_id)}"


@dataclass(frozen=True)
class ApiSettings:
    """
    Where and how to reach Octopods, read from an Airflow connection (never holds the key).

    :param base_url: scheme, host and port, without a trailing slash.
    :param timeout: seconds for a whole request.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param default_region: the region of national phone numbers (extra ``default_region``).
    :param strict_numbers: refuse numbers libphonenumber does not call valid (extra
        ``strict_numbers``; only an explicit false turns it off).
    :param max_requests_per_second: the key's request budget in this process; None adapts to 429s.
    """

    base_url: str
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True
    default_region: str | None = None
    strict_numbers: bool = True
    max_requests_per_second: float | None = None

    @cached_property
    def proxy(self) -> str | None:
        """The proxy to reach ``base_url`` through (:func:`proxy_for`), decided once per read of the connection."""
        return proxy_for(self.base_url)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST_LABELS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _is_hostname(host: str) -> bool:
    """Whether ``host`` is an IP address or a DNS name (IDNA allowed): no spaces or stray characters."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_LABELS.fullmatch(ascii_host.lower()) is not None


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes", "on"}


#: The only values of the ``verify`` extra that turn TLS certificate verification off.
VERIFY_OFF = frozenset({"false", "0", "no", "off"})
#: Values of the ``verify`` extra that mean "verify with the default CA bundle" (as do null and "").
VERIFY_ON = frozenset({"true", "1", "yes", "on", ""})


def connection_label(conn_id: str | None) -> str:
    """
    Name a connection in a message: ``connection 'x'``, or ``this connection`` when the id means nothing.

    Airflow's connection Test button tests a temporary copy under a random id; its messages say
    "this connection" (``conn_id`` None) instead of naming that id.

    :param conn_id: the connection id, or None.
    """
    return "this connection" if conn_id is None else f"connection '{conn_id}'"


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
    field = f"extra 'verify' of {label}"
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if not isinstance(value, str):
        raise OctopodsInputError(
            field, f"{value!r:.40} is neither true, false nor a CA bundle path; give one of those."
        )
    word = value.strip().lower()
    if word in VERIFY_OFF or word in VERIFY_ON:
        return word not in VERIFY_OFF
    path = os.path.expanduser(value.strip())
    if not os.path.exists(path):
        raise OctopodsInputError(
            field,
            f"the CA bundle {value.strip()!r} does not exist (looked for {os.path.abspath(path)!r}); give "
            'the path of a PEM file readable by the worker and the triggerer, or {"verify": false} to turn '
            "certificate checks off.",
        )
    try:
        ssl_context(path)
    except (OSError, ssl.SSLError) as err:  # a file that is not PEM, a directory we may not read
        raise OctopodsInputError(
            field, f"the CA bundle {value.strip()!r} could not be loaded ({err}); give a PEM file."
        ) from None
    return path


def ca_bundle(verify: bool | str) -> str | None:
    """
    Return the CA bundle both transports verify servers with; None when verification is off.

    The one TLS decision of the provider: ``requests`` and ``aiohttp`` trust the same CAs, by
    default certifi's bundle (what ``requests`` ships with), or the connection's ``verify`` path.

    :param verify: :attr:`ApiSettings.verify`.
    """
    if verify is False:
        return None
    if verify is True:
        import certifi

        return certifi.where()
    return verify


@lru_cache(maxsize=8)
def ssl_context(bundle: str | None) -> ssl.SSLContext:
    """
    Return the client TLS context of :func:`ca_bundle`'s answer, for the async transports.

    :param bundle: the CA bundle to trust exactly (a PEM file or directory), or None: no
        verification (the connection's ``verify`` is explicitly false).
    """
    if bundle is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


#: The environment variables of the proxy decision, lowercase first as in ``urllib`` and ``requests``.
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def proxy_for(url: str) -> str | None:
    """
    Return the proxy to reach ``url`` through, or None: the one proxy decision of both transports.

    ``HTTPS_PROXY`` (for https://) or ``HTTP_PROXY`` (for http://), else ``ALL_PROXY``; none when
    the host matches ``NO_PROXY`` (``*``, a host name or domain suffix, ``host:port``, or an IP
    network such as ``10.0.0.0/8``). Lowercase variables win over uppercase ones.

    :param url: the URL of the request.
    """
    env = tuple(os.environ.get(name) or os.environ.get(name.upper()) or "" for name in _PROXY_VARIABLES)
    return _proxy_for(origin(url), env)


@lru_cache(maxsize=64)
def _proxy_for(where: tuple[str, str | None, int | None], env: tuple[str, ...]) -> str | None:
    scheme, host, port = where
    http, https, every, no_proxy = env
    proxy = {"http": http, "https": https}.get(scheme) or every
    if not proxy or _bypassed(host or "", port, no_proxy):
        return None
    return proxy


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names ``host`` (or ``host:port``)."""
    host = host.lower()
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or entry in (host, f"{host}:{port}") or (entry and host.endswith(f".{entry}")):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def api_settings(conn: Any, label: str | None = None) -> ApiSettings:
    """
    Read :class:`ApiSettings` from an Airflow connection of type ``octopods``.

    An empty host means ``https://app.octopods.io``; a host without a scheme gets ``https://``.
    Plain ``http://`` to a host that is not loopback needs the extra ``allow_insecure_http``.

    :param conn: the Airflow connection.
    :param label: how messages name the connection (default: by its id).
    """
    label = label or connection_label(getattr(conn, "conn_id", None) or "octopods")
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    if not isinstance(extra, dict):
        raise OctopodsInputError(
            f"extra of {label}", 'give a JSON object, e.g. {"timeout": 30}, or leave it empty.'
        )
    host = str(conn.host or "").strip().rstrip("/") or DEFAULT_HOST
    if "://" not in host:
        host = f"https://{host}"
    not_a_url = OctopodsInputError(
        f"host of {label}",
        f"{host!r:.80} is not an http(s) URL; use https://app.octopods.io or leave it empty.",
    )
    try:
        parts = urlsplit(host)
        host_port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number from 0 to 65535
        raise not_a_url from None
    port = conn.port or host_port
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
    base_url = f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
    return ApiSettings(
        base_url=base_url,
        timeout=_parse_timeout(extra.get("timeout"), label),
        verify=parse_verify(extra.get("verify"), label),
        default_region=parse_region(extra.get("default_region"), f"extra 'default_region' of {label}"),
        strict_numbers=parse_strict(extra.get("strict_numbers"), f"extra 'strict_numbers' of {label}"),
        max_requests_per_second=read_rate(extra, label),
    )


def _parse_timeout(value: Any, label: str) -> float:
    """Read the ``timeout`` extra: a finite number of seconds above 0 (default :data:`DEFAULT_TIMEOUT`)."""
    field = f"extra 'timeout' of {label}"
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        timeout = DEFAULT_TIMEOUT if value in (None, "") else float(value)
    except (TypeError, ValueError, OverflowError):
        raise OctopodsInputError(field, "give a number of seconds, e.g. 30.") from None
    if not 0 < timeout < math.inf:  # also refuses NaN
        raise OctopodsInputError(field, "must be a finite number of seconds above 0.")
    return timeout


def _bad_key_character(key: str) -> str | None:
    """Describe the first character of ``key`` that cannot travel in an HTTP header, if any."""
    for position, char in enumerate(key, start=1):
        if char in "\r\n":
            return f"a line break at position {position}"
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            return f"a control character at position {position}"
        if ord(char) > 0xFF:
            return f"a character outside Latin-1 (a curly quote?) at position {position}"
    return None


def api_key(conn: Any, label: str | None = None) -> str:
    """
    Return the Channel API key (the connection's password), or raise a clear, final error.

    An empty key is an :class:`OctopodsAuthError`. A key with a line break, a control character
    or a character outside Latin-1 (a pasted curly quote) cannot be sent in a header: it is an
    :class:`OctopodsInputError` naming the password field, raised before any request.

    :param conn: the Airflow connection.
    :param label: how messages name the connection (default: by its id).
    """
    label = label or connection_label(getattr(conn, "conn_id", None) or "octopods")
    key = (conn.password or "").strip()
    if not key:
        raise OctopodsAuthError(
            f"{label[0].upper()}{label[1:]} has no Channel API key: put the key "
            "from Octopods in the connection's password field (labelled 'Channel API key')."
        )
    bad = _bad_key_character(key)
    if bad:
        raise OctopodsInputError(
            f"password (Channel API key) of {label}",
            f"the key holds {bad}; paste the key from Octopods again, as plain text on one line.",
        )
    return key


def request_headers(key: str, with_body: bool = False) -> dict[str, str]:
    """Return the headers of one request; the key travels only here, never in a URL."""
    headers = {AUTH_HEADER: key, "Accept": "application/json", "User-Agent": USER_AGENT}
    if with_body:
        headers["Content-Type"] = "application/json"
    return headers


_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=256)
def origin(url: str) -> tuple[str, str | None, int | None]:
    """Return a URL's origin (scheme, host, port), the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(scheme)


def redirect_target(current_url: str, location: str | None) -> str:
    """
    Return the URL to follow a redirect to, if it stays on the same origin; else raise.

    ``requests`` and ``aiohttp`` both forward custom headers such as ``X-Octopods-Auth`` when they
    follow a redirect to another host. The hooks never let them follow redirects; the request core
    calls this instead, so the key only ever goes to the origin the connection names.
    ``https://host`` and ``https://host:443`` are the same origin.

    :param current_url: the URL that answered with a redirect.
    :param location: the answer's ``Location`` header.
    """
    if not location:
        raise OctopodsApiError("Octopods answered with a redirect without a Location header.")
    target = urljoin(current_url, location)
    if origin(current_url) != origin(target):
        there = urlsplit(target)
        raise OctopodsBadRequestError(
            f"Octopods redirected to another origin ({there.scheme}://{there.hostname}); the API key was "
            f"not sent there. If the API moved, update the connection's host to that origin."
        )
    return target


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """
    Return the seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), capped.

    :param value: the header's value.
    :param now: the current time, for HTTP-dates (tests pass it).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), BACKOFF_CAP)


def backoff_delay(attempt: int, retry_after: float | None = None, cap: float = BACKOFF_CAP) -> float:
    """
    Return how long to wait before retry number ``attempt`` (1 for the first retry).

    Exponential backoff with "equal jitter" (half fixed, half random), capped at ``cap``; never
    shorter than what the server asked for with ``Retry-After`` (capped at :data:`BACKOFF_CAP`).

    :param attempt: how many attempts in a row have failed.
    :param retry_after: seconds from the server's ``Retry-After``, if any.
    :param cap: the longest wait.
    """
    # The exponent stops growing long after the cap is reached: 2 ** 1024 is too large for a float.
    exp = min(cap, BACKOFF_BASE * (2 ** min(max(attempt - 1, 0), 64)))
    delay = exp / 2 + random.uniform(0, exp / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return delay


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


#: HTTP statuses by which a server says it did not process the request: repeating it is safe.
NOT_PROCESSED_STATUSES = frozenset({408, 425, 429})


def _error_details(status_code: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Return the facts an error answer carries, typed (anything else is dropped)."""
    raw_code = fields.get("error_code")
    return {
        "status_code": status_code,
        "error_code": raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None,
        "error": _str_or_none(fields.get("error")) or _str_or_none(fields.get("message")),
        "request_id": _str_or_none(fields.get("request_id")),
    }


def interpret_response(
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    conn_id: str | None,
) -> Any:
    """
    Turn an answer into its decoded JSON body, or raise the error it stands for.

    - 2xx with a JSON body: the decoded body (a 2xx that is not JSON is transient).
    - 401, or 400 with ``error_code`` 5: :class:`OctopodsAuthError`, telling the user to update
      the connection's Channel API key.
    - 400 with ``error_code`` 4 (SMS provider error): :class:`OctopodsApiError`.
    - other 400 and other 4xx (bad request, message not found): :class:`OctopodsBadRequestError`.
    - 408, 425, 429, 5xx, or an unreadable error body: :class:`OctopodsTransientError`, with
      ``Retry-After`` when the server sent one; ``request_sent`` is False for 408, 425 and 429
      (:data:`NOT_PROCESSED_STATUSES`), by which the server says it did not process the request.

    :param status_code: the HTTP status.
    :param body: the body, already bounded by :data:`MAX_RESPONSE_BYTES`.
    :param headers: the answer's headers.
    :param conn_id: the connection id, named in auth errors (None: "this connection").
    """
    payload = _decode_json(body)
    if 200 <= status_code < 300:
        if payload is None:
            raise OctopodsTransientError(
                f"Octopods answered HTTP {status_code} with a body that is not JSON.", status_code=status_code
            )
        return payload
    fields = payload if isinstance(payload, dict) else {}
    details = _error_details(status_code, fields)
    error_code, error = details["error_code"], details["error"]
    said = f": {error}" if error else ""
    if status_code == 401 or (status_code == 400 and error_code == ERROR_CODE_KEY_REVOKED):
        why = "was rotated or revoked" if error_code == ERROR_CODE_KEY_REVOKED else "is missing or unknown"
        raise OctopodsAuthError(
            f"Octopods rejected the Channel API key of {connection_label(conn_id)}: the key {why} "
            f"(HTTP {status_code}{said}). Update the connection's Channel API key (password field) "
            "with the current key from Octopods.",
            **details,
        )
    if status_code in NOT_PROCESSED_STATUSES or status_code >= 500 or (status_code == 400 and not fields):
        what = "rate limit reached" if status_code == 429 else "server trouble"
        raise OctopodsTransientError(
            f"Octopods answered HTTP {status_code} ({what}){said}.",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            request_sent=status_code not in NOT_PROCESSED_STATUSES,
            **details,
        )
    if status_code == 400 and error_code == ERROR_CODE_PROVIDER_ERROR:
        raise OctopodsApiError(f"Octopods' SMS provider failed (HTTP 400, error_code 4){said}.", **details)
    code = f", error_code {error_code}" if error_code is not None else ""
    raise OctopodsBadRequestError(
        f"Octopods refused the request (HTTP {status_code}{code}){said}.", **details
    )
