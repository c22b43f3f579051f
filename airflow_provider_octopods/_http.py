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
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_octopods import __version__
from airflow_provider_octopods._budget import read_rate
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
    :param max_requests_per_second: the key's request budget in this process; None adapts to 429s.
    """

    base_url: str
    timeout: float = DEFAULT_TIMEOUT
    verify: bool | str = True
    max_requests_per_second: float | None = None


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


def api_settings(conn: Any) -> ApiSettings:
    """
    Read :class:`ApiSettings` from an Airflow connection of type ``octopods``.

    An empty host means ``https://app.octopods.io``; a host without a scheme gets ``https://``; a
    host with a scheme is used as is. Plain ``http://`` is refused for a host that is not loopback
    unless the extra ``allow_insecure_http`` is true.

    :param conn: the Airflow connection.
    """
    conn_id = getattr(conn, "conn_id", None) or "octopods"
    extra = conn.extra_dejson if getattr(conn, "extra", None) else {}
    if not isinstance(extra, dict):
        raise OctopodsInputError(
            f"extra of connection '{conn_id}'", 'give a JSON object, e.g. {"timeout": 30}, or leave it empty.'
        )
    host = str(conn.host or "").strip().rstrip("/") or DEFAULT_HOST
    if "://" not in host:
        host = f"https://{host}"
    not_a_url = OctopodsInputError(
        f"host of connection '{conn_id}'",
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
            f"port of connection '{conn_id}'", f"{port!r:.20} is not a port; give a number from 1 to 65535."
        )
    if parts.scheme not in {"http", "https"} or not parts.hostname or not _is_hostname(parts.hostname):
        raise not_a_url
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
        raise OctopodsInputError(
            f"host of connection '{conn_id}'",
            "give only scheme, host and port (e.g. https://app.octopods.io), no path, query or credentials.",
        )
    if (
        parts.scheme == "http"
        and not _is_loopback(parts.hostname)
        and not _truthy(extra.get("allow_insecure_http"))
    ):
        raise OctopodsInputError(
            f"host of connection '{conn_id}'",
            f"plain http:// to {parts.hostname} would send the API key unencrypted; use https:// "
            'or set the extra {"allow_insecure_http": true} if you really mean it.',
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    base_url = f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
    raw_timeout = extra.get("timeout")
    try:
        if isinstance(raw_timeout, bool):
            raise TypeError(raw_timeout)
        timeout = DEFAULT_TIMEOUT if raw_timeout in (None, "") else float(raw_timeout)
    except (TypeError, ValueError, OverflowError):
        raise OctopodsInputError(
            f"extra 'timeout' of connection '{conn_id}'", "give a number of seconds, e.g. 30."
        ) from None
    if not 0 < timeout < math.inf:  # also refuses NaN
        raise OctopodsInputError(
            f"extra 'timeout' of connection '{conn_id}'", "must be a finite number of seconds above 0."
        )
    verify_extra = extra.get("verify", True)
    verify: bool | str = (
        verify_extra
        if isinstance(verify_extra, str) and "/" in verify_extra
        else (_truthy(verify_extra) if not isinstance(verify_extra, bool) else verify_extra)
    )
    return ApiSettings(base_url, timeout, verify, max_requests_per_second=read_rate(extra, conn_id))


def api_key(conn: Any) -> str:
    """
    Return the Channel API key (the connection's password) or raise a clear error if it is empty.

    :param conn: the Airflow connection.
    """
    key = (conn.password or "").strip()
    if not key:
        raise OctopodsAuthError(
            f"Connection '{getattr(conn, 'conn_id', 'octopods')}' has no Channel API key: put the key "
            "from Octopods in the connection's password field (labelled 'Channel API key')."
        )
    return key


def request_headers(key: str, with_body: bool = False) -> dict[str, str]:
    """Return the headers of one request; the key travels only here, never in a URL."""
    headers = {AUTH_HEADER: key, "Accept": "application/json", "User-Agent": USER_AGENT}
    if with_body:
        headers["Content-Type"] = "application/json"
    return headers


def redirect_target(current_url: str, location: str | None) -> str:
    """
    Return the URL to follow a redirect to, if it stays on the same origin; else raise.

    ``requests`` and ``aiohttp`` both forward custom headers such as ``X-Octopods-Auth`` when they
    follow a redirect to another host. The hooks never let them follow redirects; they call this
    instead, so the key only ever goes to the origin the connection names.

    :param current_url: the URL that answered with a redirect.
    :param location: the answer's ``Location`` header.
    """
    if not location:
        raise OctopodsApiError("Octopods answered with a redirect without a Location header.")
    target = urljoin(current_url, location)
    here, there = urlsplit(current_url), urlsplit(target)
    if (here.scheme, here.hostname, here.port) != (there.scheme, there.hostname, there.port):
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


def interpret_response(
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    conn_id: str,
) -> Any:
    """
    Turn an answer into its decoded JSON body, or raise the error it stands for.

    - 2xx with a JSON body: the decoded body (a 2xx that is not JSON is transient).
    - 401, or 400 with ``error_code`` 5: :class:`OctopodsAuthError`, telling the user to update
      the connection's Channel API key.
    - 400 with ``error_code`` 4 (SMS provider error): :class:`OctopodsApiError`.
    - other 400 and other 4xx (bad request, message not found): :class:`OctopodsBadRequestError`.
    - 408, 425, 429, 5xx, or an unreadable error body: :class:`OctopodsTransientError`, with
      ``Retry-After`` when the server sent one.

    :param status_code: the HTTP status.
    :param body: the body, already bounded by :data:`MAX_RESPONSE_BYTES`.
    :param headers: the answer's headers.
    :param conn_id: the connection id, named in auth errors.
    """
    payload = _decode_json(body)
    if 200 <= status_code < 300:
        if payload is None:
            raise OctopodsTransientError(
                f"Octopods answered HTTP {status_code} with a body that is not JSON; will ask again.",
                status_code=status_code,
            )
        return payload
    fields = payload if isinstance(payload, dict) else {}
    raw_code = fields.get("error_code")
    error_code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    error = _str_or_none(fields.get("error")) or _str_or_none(fields.get("message"))
    request_id = _str_or_none(fields.get("request_id"))
    details: dict[str, Any] = {
        "status_code": status_code,
        "error_code": error_code,
        "error": error,
        "request_id": request_id,
    }
    said = f": {error}" if error else ""
    if status_code == 401 or (status_code == 400 and error_code == ERROR_CODE_KEY_REVOKED):
        why = "was rotated or revoked" if error_code == ERROR_CODE_KEY_REVOKED else "is missing or unknown"
        raise OctopodsAuthError(
            f"Octopods rejected the Channel API key of connection '{conn_id}': the key {why} "
            f"(HTTP {status_code}{said}). Update the connection's Channel API key (password field) "
            "with the current key from Octopods.",
            **details,
        )
    if status_code in {408, 425, 429} or status_code >= 500 or (status_code == 400 and not fields):
        retry_after = parse_retry_after(headers.get("Retry-After"))
        what = "rate limit reached" if status_code == 429 else "server trouble"
        raise OctopodsTransientError(
            f"Octopods answered HTTP {status_code} ({what}){said}; will ask again.",
            retry_after=retry_after,
            **details,
        )
    if status_code == 400 and error_code == ERROR_CODE_PROVIDER_ERROR:
        raise OctopodsApiError(f"Octopods' SMS provider failed (HTTP 400, error_code 4){said}.", **details)
    code = f", error_code {error_code}" if error_code is not None else ""
    raise OctopodsBadRequestError(
        f"Octopods refused the request (HTTP {status_code}{code}){said}.", **details
    )
