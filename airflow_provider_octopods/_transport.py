"""
The transports of the request core: they move bytes and name failures, nothing else.

:func:`send_with_requests` (sync hook), :func:`send_with_aiohttp` and the keep-alive client of
:mod:`airflow_provider_octopods._keepalive` (async hook; :meth:`Clients.send` picks one) perform
one :class:`~airflow_provider_octopods._core.Send` and return an
:class:`~airflow_provider_octopods._core.Answer` or a :class:`~airflow_provider_octopods._core.Failed`
whose :class:`~airflow_provider_octopods._core.Failure` says what went wrong. What that means
(sent or not, retry or not, which error) is decided by :mod:`airflow_provider_octopods._core`.
None reads the environment: the proxy (``HTTP(S)_PROXY``, ``NO_PROXY``) and the CA bundle come
in the ``Send``, decided once for all by :mod:`airflow_provider_octopods._http`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
import weakref
from typing import TYPE_CHECKING, Any

from airflow_provider_octopods._core import Answer, Failed, Failure, Send, wants_body
from airflow_provider_octopods._http import ApiSettings, ssl_context

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import aiohttp
    import requests

#: Bytes asked of the socket at a time while reading an answer.
_CHUNK = 8192


class _Late(Exception):
    """The answer trickled in past the request's deadline."""


def _certificate_problem(err: BaseException) -> ssl.SSLCertVerificationError | None:
    """Find the certificate verification failure behind ``err``, if that is what it is."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return None


def certificate_failure(problem: ssl.SSLCertVerificationError) -> Failed:
    """The failure of a certificate that could not be verified, with OpenSSL's reason (every transport)."""
    return Failed(Failure.CERTIFICATE, str(getattr(problem, "verify_message", "") or ""))


# -- requests ----------------------------------------------------------------------------------


def _requests_failure(err: Exception) -> Failed:
    """Map a ``requests`` exception raised before any answer onto a :class:`Failure`."""
    import requests
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    problem = _certificate_problem(err)
    if problem is not None:
        return certificate_failure(problem)
    reason = getattr(err.args[0], "reason", None) if err.args else None
    if isinstance(err, requests.exceptions.ProxyError):
        return Failed(Failure.PROXY)
    if isinstance(err, requests.exceptions.SSLError):
        return Failed(Failure.TLS)
    if isinstance(err, requests.ConnectTimeout):
        return Failed(Failure.CONNECT)
    if isinstance(err, requests.Timeout):
        return Failed(Failure.TIMEOUT)
    if isinstance(reason, NameResolutionError):
        return Failed(Failure.DNS)
    if isinstance(reason, NewConnectionError):
        return Failed(Failure.CONNECT)
    return Failed(Failure.BROKEN)


def _read_requests_body(response: requests.Response, limit: int, deadline: float) -> bytes:
    """
    Read at most ``limit + 1`` decoded bytes before ``deadline``, so a trickling server cannot hold us.

    The body is decoded (gzip, deflate) as it is read, as ``requests`` itself would: the bound
    applies to the decoded bytes, as in the async transport.
    """
    raw = response.raw
    read = raw.read1 if hasattr(raw, "read1") else raw.read
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = read(min(_CHUNK, limit + 1 - size), decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:
            raise _Late
    return b"".join(chunks)


def send_with_requests(session: requests.Session, send: Send) -> Answer | Failed:
    """
    Perform ``send`` with a ``requests`` session (redirects never followed by ``requests``).

    :param session: the hook's session.
    :param send: the request.
    """
    import requests

    started = time.monotonic()
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
    except requests.RequestException as err:
        return _requests_failure(err)
    with response:
        if not wants_body(response.status_code, response.headers, send.limit):
            return Answer(response.status_code, response.headers)
        try:
            body = _read_requests_body(response, send.limit, started + send.timeout)
        except _Late:
            return Failed(Failure.TIMEOUT)
        except Exception:  # urllib3's ProtocolError, a reset socket, a broken gzip stream
            return Failed(Failure.BROKEN)
    return Answer(response.status_code, response.headers, body)


# -- aiohttp -----------------------------------------------------------------------------------


def _aiohttp_failure(err: BaseException) -> Failed:
    """Map an ``aiohttp`` exception (or a timeout) onto a :class:`Failure`."""
    import aiohttp

    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return certificate_failure(err.certificate_error)  # type: ignore[arg-type]
    problem = _certificate_problem(err)
    if problem is not None:
        return certificate_failure(problem)
    kinds: list[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure]] = [
        ((aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError), Failure.PROXY),
        (aiohttp.ClientConnectorDNSError, Failure.DNS),
        ((aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError), Failure.TLS),
        ((aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError), Failure.CONNECT),
        (TimeoutError, Failure.TIMEOUT),
    ]
    return next((Failed(kind) for types, kind in kinds if isinstance(err, types)), Failed(Failure.BROKEN))


async def _read_aiohttp_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length <= limit:
        return await response.read()  # one read; aiohttp stops at the announced length
    body = b""
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return body


async def send_with_aiohttp(session: aiohttp.ClientSession, send: Send) -> Answer | Failed:
    """
    Perform ``send`` with an ``aiohttp`` session (redirects never followed by ``aiohttp``).

    :param session: the shared session of the event loop.
    :param send: the request.
    """
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=send.timeout, connect=send.connect_timeout)
    try:
        async with session.request(
            send.method,
            send.url,
            headers=send.headers,
            data=send.body,
            allow_redirects=False,
            ssl=ssl_context(send.ca_bundle),
            proxy=send.proxy,
            timeout=timeout,
        ) as response:
            if not wants_body(response.status, response.headers, send.limit):
                return Answer(response.status, response.headers)
            return Answer(response.status, response.headers, await _read_aiohttp_body(response, send.limit))
    except (aiohttp.ClientError, TimeoutError) as err:
        return _aiohttp_failure(err)


class ConnectionCache:
    """
    A connection's settings and key, read once per event loop and shared for ``TTL`` seconds.

    A triggerer resuming a thousand Octopods waits would otherwise ask the metadata database (or,
    on Airflow 3, the API server) for the same connection a thousand times. Concurrent first
    polls share one lookup. An auth error makes the hook ask again with ``refresh`` (a rotated
    key is picked up at once); other edits to the connection reach running waits within ``TTL``.
    Only results are kept once a lookup ends, never its task: a task holds its event loop, which
    would then never be freed (the cache is keyed weakly by that loop).
    """

    TTL = 60.0
    _entries: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[str, tuple[float, tuple[ApiSettings, str]] | asyncio.Task[Any]]
    ] = weakref.WeakKeyDictionary()

    @classmethod
    async def get(
        cls,
        conn_id: str,
        fetch: Callable[[str], Coroutine[Any, Any, tuple[ApiSettings, str]]],
        refresh: bool = False,
    ) -> tuple[ApiSettings, str]:
        """
        Return the connection's settings and key.

        :param conn_id: the connection id.
        :param fetch: reads the connection when it is not cached (or ``refresh``).
        :param refresh: read it again even if cached.
        """
        loop = asyncio.get_running_loop()
        entries = cls._entries.setdefault(loop, {})
        entry = entries.get(conn_id)
        if isinstance(entry, tuple) and not refresh and time.monotonic() < entry[0]:
            return entry[1]
        if not isinstance(entry, asyncio.Task) or refresh:
            entry = entries[conn_id] = loop.create_task(fetch(conn_id))
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


class Clients:
    """
    The HTTP clients of one event loop, shared by every async hook on it.

    :attr:`keepalive` (:mod:`airflow_provider_octopods._keepalive`) carries the GET requests that go
    to Octopods directly: the polls, where a triggerer spends its CPU. :meth:`session`, an
    ``aiohttp`` session made on first use, carries the rest: sends, and requests through a proxy.
    Neither keeps cookies or reads the environment (no ``trust_env``): the proxy and the key are
    set per request by the request core.
    """

    def __init__(self) -> None:
        from airflow_provider_octopods._keepalive import KeepAlivePool

        self.keepalive = KeepAlivePool()
        self.users = 0  # hooks holding these clients (ClientPool)
        self._session: aiohttp.ClientSession | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.keepalive.closed

    def session(self) -> aiohttp.ClientSession:
        """Return the ``aiohttp`` session, made on first use (one connection pool with keep-alive)."""
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=90, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def send(self, send: Send) -> Answer | Failed:
        """
        Perform ``send`` with the client that serves it: the keep-alive client for a direct GET.

        :param send: the request.
        """
        if send.method == "GET" and send.proxy is None:
            return await self.keepalive.request(send)
        return await send_with_aiohttp(self.session(), send)

    async def close(self) -> None:
        """Close both clients' connections."""
        self.keepalive.close()
        if self._session is not None:
            await self._session.close()


class ClientPool:
    """
    One :class:`Clients` per event loop, shared by every async hook on that loop.

    A triggerer running a thousand Octopods triggers keeps one set of kept-alive connections
    instead of a session (and a TCP connection) per trigger or per poll. Hooks take a reference
    with :meth:`acquire` and give it back with :meth:`release`; the last one out closes them.
    """

    _entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Clients] = weakref.WeakKeyDictionary()

    @classmethod
    def acquire(cls) -> Clients:
        loop = asyncio.get_running_loop()
        clients = cls._entries.get(loop)
        if clients is None or clients.closed:
            clients = cls._entries[loop] = Clients()
        clients.users += 1
        return clients

    @classmethod
    async def release(cls, clients: Clients) -> None:
        loop = asyncio.get_running_loop()
        if cls._entries.get(loop) is not clients:
            await clients.close()
            return
        clients.users -= 1
        if clients.users <= 0:
            del cls._entries[loop]
            await clients.close()


async def send_within_budget(
    clients: Clients,
    send: Send,
    settings: ApiSettings,
    group: str,
    started: float | None = None,
) -> Answer | Failed:
    """
    Perform ``send`` when the key's budget in this process allows, and teach the budget the answer.

    Every async request with one key on one event loop (all the triggers of a triggerer) draws
    from one :func:`~airflow_provider_octopods._budget.group_budget`: polls due together are
    spread, and a 429 slows the whole group (``Retry-After`` honoured). A request keeps its place
    in the queue however long the queue is (its own ``timeout`` starts when it is sent), except
    that the wait counts against the caller's limit (``send.within``, a trigger's time left before
    its deadline): a request that gets no slot within it is not sent (``Failure.QUEUED``), and one
    that does gets only what is left of it. A deadline is never overrun by the queue.

    :param clients: the shared clients of the event loop.
    :param send: the request.
    :param settings: the connection's settings (its base URL and ``max_requests_per_second``).
    :param group: the budget's group: :func:`~airflow_provider_octopods._budget.group_id` of the
        base URL and key.
    :param started: when (``time.monotonic()``) the caller's limit began (default: now); the
        time since, reading the connection for instance, counts against it.
    """
    from airflow_provider_octopods._budget import group_budget
    from airflow_provider_octopods._http import parse_retry_after

    budget = group_budget(group, settings.base_url, settings.max_requests_per_second)
    started = time.monotonic() if started is None else started
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
    outcome = await clients.send(send)
    if isinstance(outcome, Answer):
        budget.on_answer(outcome.status, parse_retry_after(outcome.headers.get("Retry-After")), sent_at)
    else:
        budget.on_answer(None, None, sent_at)
    return outcome


async def _amask_secret(secret: str) -> None:
    """
    Register the key with the secrets masker without blocking the event loop.

    Airflow 3 offers ``amask_secret`` (the sync call would make a blocking round trip to the
    supervisor from the triggerer's loop); older versions only have the local, sync masker.
    """
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(secret)
    else:
        await amask_secret(secret)


async def fetch_connection(conn_id: str) -> tuple[ApiSettings, str]:
    """Read a connection's settings and key without blocking the event loop; mask the key."""
    from airflow.providers.common.compat.connection import get_async_connection

    from airflow_provider_octopods._http import api_key, api_settings

    conn = await get_async_connection(conn_id)
    settings, key = api_settings(conn), api_key(conn)
    await _amask_secret(key)
    return settings, key
