"""
The request core: one call to Octopods as a generator that does no I/O (sans-IO).

:func:`exchange` yields what to do (:class:`Send` a request, :class:`Load` the connection,
:class:`Pause` before a retry, :class:`Notice` something worth a log line) and receives what came
of it (an :class:`Answer`, a :class:`Failed` transport, the connection's settings and key). Every
rule of a call lives here: the URL and headers, redirects, the size bound, what a failure means
(not sent, maybe sent, answered), the error and its message, the key re-read after an auth error,
and the sync hook's retries. The drivers in :mod:`airflow_provider_octopods._transport` only move
bytes with ``requests`` or ``aiohttp`` and map their exceptions onto :class:`Failure`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_octopods import _http
from airflow_provider_octopods._http import (
    CONNECT_TIMEOUT,
    MAX_REDIRECTS,
    MAX_RESPONSE_BYTES,
    ApiSettings,
    ca_bundle,
    interpret_response,
    redirect_target,
    request_headers,
)
from airflow_provider_octopods.exceptions import (
    OctopodsAuthError,
    OctopodsCertificateError,
    OctopodsError,
    OctopodsInputError,
    OctopodsThrottledError,
    OctopodsTransientError,
)

#: Redirect statuses; only a GET follows them, and only to the same origin.
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: Methods whose request carries no body: ``run(data=...)`` becomes their query string.
_QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE"})


class Failure(Enum):
    """How a transport failed to get an answer; the value is the sentence's reason."""

    DNS = "the host name could not be resolved"
    CONNECT = "no connection could be opened"
    PROXY = "the proxy could not open a tunnel to it"
    TLS = "the TLS handshake failed"
    CERTIFICATE = "its TLS certificate could not be verified"
    TIMEOUT = "no answer in time"
    BROKEN = "the connection broke"
    #: The key's request budget in this process (``_budget``) had no slot within the caller's limit.
    QUEUED = "the key's request budget in this process had no free slot in time"
    #: The caller's limit (``Send.within``) was used up before the request could leave.
    EXPIRED = "the time allowed for the call ran out before the request could leave"


#: Failures before the request was written: Octopods certainly did not process it.
NOT_SENT = frozenset(
    {
        Failure.DNS,
        Failure.CONNECT,
        Failure.PROXY,
        Failure.TLS,
        Failure.CERTIFICATE,
        Failure.QUEUED,
        Failure.EXPIRED,
    }
)


@dataclass(frozen=True, slots=True)
class Request:
    """
    One call a caller wants made.

    :param method: the HTTP method.
    :param path: the path (and query) below the connection's URL, starting with ``/``.
    :param body: the encoded body, if any (sent as JSON).
    :param headers: extra headers; the key and the defaults of :func:`request_headers` win.
    :param parse: turns the decoded JSON into the result; its transient errors are retried too.
    :param timeout: seconds this call may take, if less than the connection's ``timeout``.
    """

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parse: Callable[[Any], Any] | None = None
    timeout: float | None = None


def json_request(method: str, path: str, payload: Any = None, **kwargs: Any) -> Request:
    """Return a :class:`Request` whose body is ``payload`` as JSON (none when ``payload`` is None)."""
    body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    return Request(method, path, body, **kwargs)


def endpoint_request(
    method: str, endpoint: str | None, data: Any = None, headers: Mapping[str, str] | None = None
) -> Request:
    """
    Return the :class:`Request` of ``HttpHook.run(endpoint, data, headers)`` for any Octopods path.

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
    if method in _QUERY_METHODS:
        query = urlencode(data, doseq=True) if isinstance(data, Mapping) else str(data or "").lstrip("?")
        return Request(
            method, path + (("&" if "?" in path else "?") + query if query else ""), None, headers or {}
        )
    if isinstance(data, str | bytes):
        body = data.encode() if isinstance(data, str) else data
        return Request(method, path, body, headers or {})
    return json_request(method, path, data, headers=headers or {})


@dataclass(frozen=True, slots=True)
class Send:
    """
    Action: send one HTTP request, read at most ``limit + 1`` bytes of its answer.

    :param connect_timeout: seconds to connect, from when the request is sent.
    :param timeout: seconds for the whole request, from when it is sent.
    :param ca_bundle: the CA bundle to verify the server with; None when verification is off.
    :param proxy: the proxy to go through (:func:`~airflow_provider_octopods._http.proxy_for`), or None.
    :param limit: the largest answer read.
    :param within: the caller's own limit in seconds (a trigger's time left before its deadline),
        from now: any wait before the request is sent (for a slot of the key's request budget)
        counts against it, and the request's ``timeout`` is cut to what is left of it. None: no
        such limit.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)  # the key travels here: never in a repr
    body: bytes | None
    connect_timeout: float
    timeout: float
    ca_bundle: str | None
    proxy: str | None = None
    limit: int = MAX_RESPONSE_BYTES
    within: float | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """Action: return the connection's ``(ApiSettings, key)``; read it again if ``refresh``."""

    refresh: bool = False


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


Action = Send | Load | Pause | Notice


def wants_body(status: int, headers: Mapping[str, str], limit: int = MAX_RESPONSE_BYTES) -> bool:
    """Whether a transport should read the body: not for a redirect or one declared over ``limit``."""
    declared = headers.get("Content-Length", "")
    return status not in REDIRECT_CODES and not (declared.isdigit() and int(declared) > limit)


def _too_large() -> OctopodsTransientError:
    return OctopodsTransientError(
        f"Octopods sent an answer larger than {MAX_RESPONSE_BYTES} bytes; it was refused unread."
    )


def failure_error(failed: Failed, settings: ApiSettings, send: Send, path: str) -> OctopodsError:
    """Return the error for a request that got no answer."""
    if failed.kind is Failure.CERTIFICATE:
        return OctopodsCertificateError(
            f"The TLS certificate of {settings.base_url} could not be verified"
            f"{f' ({failed.detail})' if failed.detail else ''}, so nothing was sent. If a proxy or a "
            "private CA signs it, set the connection's extra \"verify\" to the path of that CA's "
            "bundle (PEM); check the host name and the machine's clock otherwise."
        )
    if failed.kind in (Failure.QUEUED, Failure.EXPIRED):
        error = OctopodsThrottledError if failed.kind is Failure.QUEUED else OctopodsTransientError
        return error(
            f"Did not ask Octopods at {settings.base_url}: {failed.kind.value}, so nothing was sent.",
            request_sent=False,
        )
    if failed.kind in NOT_SENT:
        return OctopodsTransientError(
            f"Could not reach Octopods at {settings.base_url}: {failed.kind.value}, so nothing was sent.",
            request_sent=False,
        )
    if failed.kind is Failure.TIMEOUT:
        return OctopodsTransientError(
            f"Octopods did not answer {send.method} {path} within {send.timeout:.3g} s."
        )
    return OctopodsTransientError("The connection to Octopods broke while reading the answer.")


@lru_cache(maxsize=16)
def _headers(key: str, with_body: bool) -> Mapping[str, str]:
    """The headers of a request that adds none of its own: one read-only copy per key, not per poll."""
    return MappingProxyType(request_headers(key, with_body))


def _unfollowed(method: str, path: str, status: int) -> OctopodsTransientError:
    return OctopodsTransientError(
        f"Octopods answered {method} {path} with a redirect (HTTP {status}); it was not followed, so "
        "the request is not repeated, and it may have been processed.",
        status_code=status,
    )


def _follow(
    request: Request, settings: ApiSettings, key: str, conn_id: str | None
) -> Generator[Action, Any, Any]:
    """Make one request, following same-origin redirects of a GET; return the parsed answer."""
    total = (
        settings.timeout if request.timeout is None else max(min(request.timeout, settings.timeout), 0.001)
    )
    url = settings.base_url + request.path
    headers = _headers(key, request.body is not None)
    if request.headers:  # run(headers=...): the key and the defaults still win
        headers = {**request.headers, **headers}
    proxy = settings.proxy  # redirects are followed on this origin only
    path = request.path.partition("?")[0].partition("#")[0]  # as urlsplit(url).path, for messages
    for _ in range(MAX_REDIRECTS + 1):
        send = Send(
            request.method,
            url,
            headers,
            request.body,
            min(CONNECT_TIMEOUT, total),
            total,
            ca_bundle(settings.verify),
            proxy,
            within=request.timeout,
        )
        outcome = yield send
        if isinstance(outcome, Failed):
            raise failure_error(outcome, settings, send, path)
        if outcome.status in REDIRECT_CODES:
            if request.method != "GET":
                raise _unfollowed(request.method, path, outcome.status)
            url = redirect_target(url, outcome.headers.get("Location"))
            path = urlsplit(url).path
            continue
        if not wants_body(outcome.status, outcome.headers) or len(outcome.body) > MAX_RESPONSE_BYTES:
            raise _too_large()
        body = interpret_response(outcome.status, outcome.body, outcome.headers, conn_id)
        return request.parse(body) if request.parse is not None else body
    raise OctopodsTransientError(f"Octopods redirected more than {MAX_REDIRECTS} times.")


def exchange(request: Request, conn_id: str | None, max_retries: int = 0) -> Generator[Action, Any, Any]:
    """
    Make ``request`` with the rules of every call; the generator's return value is the result.

    After an auth error the connection is read again once: if the key changed, the call is made
    again with it (a key rotated while a sensor waits is picked up). A transient error of a GET
    is retried ``max_retries`` times with :func:`~airflow_provider_octopods._http.backoff_delay`;
    any other method is never repeated (a send may have reached Octopods).

    :param request: the call.
    :param conn_id: the connection id that messages name (None: "this connection").
    :param max_retries: retries of a transient GET failure.
    """
    settings, key = yield Load()
    attempt, refreshed = 0, False
    while True:
        try:
            return (yield from _follow(request, settings, key, conn_id))
        except OctopodsAuthError:
            if refreshed:
                raise
            refreshed, old_key = True, key
            settings, key = yield Load(refresh=True)
            if key == old_key:
                raise
            yield Notice(
                f"The Channel API key of {_http.connection_label(conn_id)} changed; retrying with it."
            )
        except OctopodsTransientError as err:
            attempt += 1
            if request.method != "GET" or attempt > max_retries:
                raise
            yield Pause(_http.backoff_delay(attempt, err.retry_after), err, attempt, max_retries)


class Exchange:
    """
    Step through :func:`exchange` for a driver: ``action = step(outcome)`` until it returns None.

    :param request: the call.
    :param conn_id: the connection id that messages name (None: "this connection").
    :param max_retries: retries of a transient GET failure.
    """

    def __init__(self, request: Request, conn_id: str | None, max_retries: int = 0) -> None:
        self._steps = exchange(request, conn_id, max_retries)
        self.result: Any = None

    def step(self, outcome: Any = None) -> Action | None:
        """Feed the outcome of the last action; return the next, or None when the call is done."""
        try:
            return self._steps.send(outcome)
        except StopIteration as done:
            self.result = done.value
            return None
