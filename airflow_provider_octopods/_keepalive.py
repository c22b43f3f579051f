"""
A small HTTP/1.1 keep-alive client on asyncio's protocols: the transport of the async polls.

Why not ``aiohttp`` for the poll: its request machinery (URL objects, the session's middleware
and tracing hooks, a stream reader, a task-backed timeout) costs twice this client's CPU per GET
(``benchmarks/transport_cost.py``), and it was the largest share of a triggerer's busy time in
the profile of ``benchmarks/triggerer_scale.py`` (``benchmarks/RESULTS.md``). This client does
what a status poll needs and nothing else:

- one request at a time per connection (no pipelining), connections kept alive and reused per
  origin and TLS setting, at most :data:`MAX_CONNECTIONS` in use per event loop;
- a GET whose reused connection turns out closed by the server before any byte of an answer
  is sent again once, on a new connection (safe for a GET; aiohttp does the same);
- strict framing: a status line, ``name: value`` header lines, and a body framed by
  ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the connection. Anything
  else (a folded or malformed header line, conflicting lengths, an unknown transfer or content
  coding, a head over :data:`MAX_HEAD_BYTES`) is :attr:`Failure.BROKEN` and the connection is
  dropped, never reused;
- bodies decoded (gzip, deflate) as ``requests`` and ``aiohttp`` do, read up to ``limit + 1``
  decoded bytes at most (the request core refuses anything longer);
- the request's ``timeout`` bounds the whole request, ``connect_timeout`` the connection.

Redirects, the proxy decision, the CA bundle and what every failure means stay in the request
core (:mod:`airflow_provider_octopods._core`); this module only moves bytes and names failures,
like the two other transports (:mod:`airflow_provider_octopods._transport`). It is used for GET
requests that go to Octopods directly; a request through a proxy, and every send (POST), goes
through ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from airflow_provider_octopods._core import Answer, Failed, Failure, wants_body
from airflow_provider_octopods._http import origin, ssl_context
from airflow_provider_octopods._transport import certificate_failure

if TYPE_CHECKING:
    from airflow_provider_octopods._core import Send

#: Connections in use at once per event loop (``aiohttp``'s default limit, which the async hook had).
MAX_CONNECTIONS = 100
#: Seconds an idle connection is kept for reuse (below common server and load-balancer timeouts).
IDLE_SECONDS = 50.0
#: The largest status line plus headers accepted.
MAX_HEAD_BYTES = 64 * 1024

_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\r\n]*)?")
_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS)
#: The header lines of an answer, checked in one pass: ``name: value`` lines, nothing folded.
_HEADER_LINES = re.compile(rf"{_TOKEN_CHARS}:[^\r\n]*(?:\r\n{_TOKEN_CHARS}:[^\r\n]*)*")
#: What a header value we send may hold: visible characters, spaces and tabs, nothing else.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
#: What a request's path and query may hold: visible characters, no space.
_TARGET = re.compile(r"/[\x21-\x7e\x80-\xff]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?")
_NO_BODY = frozenset({204, 304})


class _Broken(Exception):
    """The answer broke HTTP/1.1's framing."""


#: The outcome of a request written on a reused connection that the server had closed.
_STALE = Failed(Failure.BROKEN, "the kept-alive connection was closed by the server")


class _Decoder:
    """Decode a ``Content-Encoding`` (gzip, deflate, identity) into at most ``limit + 1`` bytes."""

    def __init__(self, coding: str, limit: int) -> None:
        self.room = limit + 1
        coding = coding.strip().lower()
        if coding in ("", "identity"):
            self._zlib = None
        elif coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise _Broken(f"unsupported content coding {coding[:20]!r}")

    def decode(self, data: bytes) -> bytes:
        if self._zlib is not None:
            try:
                data = self._zlib.decompress(data, self.room)
            except zlib.error as err:
                raise _Broken("the compressed body is corrupt") from err
        data = data[: self.room]
        self.room -= len(data)
        return data

    def check_complete(self) -> None:
        """Raise if a compressed body ended before its compressed stream did."""
        if self._zlib is not None and not self._zlib.eof:
            raise _Broken("the compressed body is cut short")


class _Connection(asyncio.Protocol):
    """
    One kept-alive connection and the answer it is reading.

    :meth:`exchange` writes a request and waits for its answer; the protocol's callbacks parse
    what arrives into an :class:`Answer` (or a failure) and complete the waiter.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self.used = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer | Failed] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._limit = 0
        self._reading = "head"  # head, length, chunked, close, done
        self._status = 0
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._keep_alive = False
        self._left = 0  # bytes left of the body (length) or of the chunk (chunked)
        self._decoder: _Decoder | None = None
        self._body: list[bytes] = []
        self._got_bytes = False

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._got_bytes = True
        self._buffer += data
        try:
            self._advance()
        except _Broken as err:
            self._finish(Failed(Failure.BROKEN, str(err)))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self._reading == "close" and exc is None:
            self._end_of_body()
        elif not self._got_bytes and self.used:
            self._finish(_STALE)
        else:
            self._finish(Failed(Failure.BROKEN, "the connection closed before the answer was complete"))

    # -- one request ---------------------------------------------------------------------------

    async def exchange(self, request: bytes, limit: int, deadline: float) -> Answer | Failed:
        """
        Write ``request`` and return its answer, or how it failed.

        :param request: the whole request (head and body).
        :param limit: read at most ``limit + 1`` decoded bytes of the body.
        :param deadline: the event loop's time by which the answer must be complete.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._timer = loop.call_at(deadline, self._expire)
        self._limit, self._reading, self._got_bytes, self.reusable = limit, "head", False, False
        self._body = []
        if self.closed or self.transport.is_closing():
            self._finish(_STALE if self.used else Failed(Failure.BROKEN))
        else:
            self.transport.write(request)
        try:
            return await waiter
        finally:
            if not waiter.done():  # cancelled: the answer's state is unknown, drop the connection
                self._waiter = None
                self._cancel_timer()
                self.close()
            self.used = True

    def close(self) -> None:
        """Close the connection (an answer being read fails)."""
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _expire(self) -> None:
        self._timer = None
        self._finish(Failed(Failure.TIMEOUT))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, outcome: Answer | Failed) -> None:
        waiter, self._waiter = self._waiter, None
        self._cancel_timer()
        self._reading = "done"
        self._buffer.clear()
        if not isinstance(outcome, Answer) or not self.reusable:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)

    def _complete(self) -> None:
        self._finish(Answer(self._status, self._headers, b"".join(self._body)))

    # -- parsing -------------------------------------------------------------------------------

    def _advance(self) -> None:
        while self._waiter is not None:
            if self._reading == "head":
                if not self._read_head():
                    return
            elif self._reading == "length":
                self._take(min(self._left, len(self._buffer)))
                if self._left == 0 and self._waiter is not None:
                    self._end_of_body()
                return
            elif self._reading == "chunked":
                if not self._read_chunk():
                    return
            else:  # "close": everything up to the end of the connection
                self._take(len(self._buffer))
                return

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise _Broken("the answer's head is too large")
            return False
        if end > MAX_HEAD_BYTES:
            raise _Broken("the answer's head is too large")
        status_line, _, lines = self._buffer[:end].decode("latin-1").partition("\r\n")
        del self._buffer[: end + 4]
        matched = _STATUS_LINE.fullmatch(status_line)
        if matched is None:
            raise _Broken("the answer's status line is not HTTP/1.x")
        status = int(matched[2])
        if status < 200:
            if status == 101:
                raise _Broken("the server switched protocols")
            return True  # an informational answer (100 Continue, 103 Early Hints): the real one follows
        if lines and _HEADER_LINES.fullmatch(lines) is None:
            raise _Broken("the answer has a malformed header line")
        fields = (line.partition(":") for line in lines.split("\r\n")) if lines else ()
        headers: CIMultiDict[str] = CIMultiDict([(name, value.strip(" \t")) for name, _, value in fields])
        self._status, self._headers = status, headers
        connection = headers.get("Connection", "").lower()
        self._keep_alive = matched[1] == "1" and "close" not in connection
        self._frame(status, headers)
        return True

    def _frame(self, status: int, headers: CIMultiDict[str]) -> None:
        """Decide how the body is delimited, from the head just read."""
        lengths = {value.strip() for value in headers.getall("Content-Length", [])}
        codings = headers.getall("Transfer-Encoding", [])
        if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()):
            raise _Broken("the answer's Content-Length is invalid")
        if codings and lengths:
            raise _Broken("the answer has both Content-Length and Transfer-Encoding")
        if not wants_body(status, headers, self._limit):
            self._finish(Answer(status, headers))  # not read: the connection is dropped
            return
        self._decoder = _Decoder(headers.get("Content-Encoding", ""), self._limit)
        if status in _NO_BODY:
            self._left, self._reading = 0, "length"
        elif codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                raise _Broken("unsupported transfer coding")
            self._left, self._reading = -1, "chunked"
        elif lengths:
            self._left, self._reading = int(next(iter(lengths))), "length"
        else:
            self._keep_alive, self._left, self._reading = False, 0, "close"

    def _take(self, size: int) -> None:
        """Move ``size`` bytes of the buffer into the decoded body; stop at ``limit + 1``."""
        assert self._decoder is not None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._left > 0:
            self._left -= size
        self._body.append(self._decoder.decode(data))
        if self._decoder.room <= 0:
            self._keep_alive = False  # the rest is never read
            self._complete()

    def _read_chunk(self) -> bool:
        """Read what the buffer holds of a chunked body; return whether to go on parsing."""
        if self._left > 0:  # inside a chunk
            self._take(min(self._left, len(self._buffer)))
            return self._waiter is not None and self._left == 0 and bool(self._buffer)
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 1024:
                raise _Broken("a chunk's size line is too long")
            return False
        line = bytes(self._buffer[:end])
        if self._left == 0:  # the CRLF after a chunk's data
            if line:
                raise _Broken("a chunk is longer than announced")
            del self._buffer[:2]
            self._left = -1
            return True
        if self._left == -2:  # trailers, up to an empty line
            del self._buffer[: end + 2]
            if not line:
                self._end_of_body()
            return self._waiter is not None
        matched = _CHUNK_SIZE.fullmatch(line)
        if matched is None:
            raise _Broken("a chunk's size line is malformed")
        del self._buffer[: end + 2]
        self._left = int(matched[1], 16) or -2
        return True

    def _end_of_body(self) -> None:
        assert self._decoder is not None
        try:
            self._decoder.check_complete()
        except _Broken as err:
            self._finish(Failed(Failure.BROKEN, str(err)))
            return
        if self._buffer:  # bytes past the answer: not a connection to reuse
            self._keep_alive = False
        self.reusable = self._keep_alive
        self._complete()


def _connect_failure(err: BaseException) -> Failed:
    if isinstance(err, ssl.SSLCertVerificationError):
        return certificate_failure(err)
    if isinstance(err, ssl.SSLError):
        return Failed(Failure.TLS)
    if isinstance(err, socket.gaierror):
        return Failed(Failure.DNS)
    return Failed(Failure.CONNECT)


def encode_request(send: Send) -> tuple[bytes, str]:
    """
    Return the bytes of ``send`` (head and body) and its origin as the URL gives it (``scheme://host:port``).

    Refuses (``ValueError``, naming the header, never its value) a header that could split the
    request: the request core has checked the key, this is the last line of defence.

    :param send: the request; its URL is absolute.
    """
    scheme, _, rest = send.url.partition("://")
    slash = rest.find("/")
    netloc, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    target = target.partition("#")[0]
    if _TARGET.fullmatch(target) is None:
        raise ValueError("The request's path holds a space or a control character.")
    fields = _header_lines(netloc.rpartition("@")[2], tuple(send.headers.items()))
    if send.body is not None:
        fields += b"Content-Length: %d\r\n" % len(send.body)
    head = f"{send.method} {target} HTTP/1.1\r\n".encode("latin-1") + fields + b"\r\n"
    return (head + send.body if send.body else head), f"{scheme}://{netloc}"


@lru_cache(maxsize=64)
def _header_lines(host: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    """
    Return the ``Host`` and ``headers`` lines, checked: once per set of headers, not per request.

    :param host: the ``host[:port]`` of the URL.
    :param headers: the request's headers, as items.
    """
    lines = [f"Host: {host}\r\n"]
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
            raise ValueError(f"The header {name!r:.40} holds a line break or a control character.")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class KeepAlivePool:
    """
    The kept-alive connections of one event loop, per origin and TLS setting.

    :param limit: connections in use at once; a request waits (within its ``timeout``) for one.
    :param idle_seconds: an idle connection older than this is closed instead of reused.
    """

    def __init__(self, limit: int = MAX_CONNECTIONS, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self.opened = 0
        self.closed = False
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}

    async def request(self, send: Send) -> Answer | Failed:
        """
        Perform ``send`` (no proxy; ``send.proxy`` must be None) and return its answer or failure.

        :param send: the request.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + send.timeout
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                return Failed(Failure.CONNECT, "no free connection in time")
        else:
            await self._slots.acquire()
        try:
            return await self._request(send, loop, deadline)
        finally:
            self._slots.release()

    async def _request(self, send: Send, loop: asyncio.AbstractEventLoop, deadline: float) -> Answer | Failed:
        data, where = encode_request(send)
        scheme, host, port = origin(where)  # cached per origin, not per message URL
        key = (scheme, host, port, send.ca_bundle)
        for attempt in (1, 2):
            conn = self._take(key, loop.time())
            if conn is None:
                opened = await self._connect(scheme, host, port, send, loop, deadline)
                if isinstance(opened, Failed):
                    return opened
                conn = opened
            outcome = await conn.exchange(data, send.limit, deadline)
            if outcome is _STALE and attempt == 1 and send.method == "GET":
                continue  # the server had closed the idle connection: a GET is safe to send again
            if self.closed:
                conn.close()  # the pool was closed while this request was out
            elif conn.reusable and not conn.closed:
                conn.idle_since = loop.time()
                self._idle.setdefault(key, []).append(conn)
            return outcome
        return outcome

    def _take(self, key: tuple[Any, ...], now: float) -> _Connection | None:
        """Return the most recently used live idle connection of ``key``; close stale ones."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                return conn
            conn.close()
        return None

    async def _connect(
        self,
        scheme: str,
        host: str | None,
        port: int | None,
        send: Send,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> _Connection | Failed:
        if host is None or port is None:
            return Failed(Failure.CONNECT, "the URL names no host")
        context: ssl.SSLContext | None = None
        if scheme == "https":
            context = ssl_context(send.ca_bundle)
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + send.connect_timeout)):
                _, conn = await loop.create_connection(
                    _Connection, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError:
            return Failed(Failure.CONNECT)
        except OSError as err:  # ssl.SSLError and socket.gaierror are OSErrors
            return _connect_failure(err)
        self.opened += 1
        return conn

    def close(self) -> None:
        """Close every idle connection; one in use is closed when its request ends."""
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
