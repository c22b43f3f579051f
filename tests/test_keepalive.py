"""
The keep-alive client of the async polls (``_keepalive``), against a scripted TCP server on 127.0.0.1.

The server answers each request with bytes written here, so every framing rule is checked on the
wire: each answer is sent whole and again one byte at a time (a parser that only works when a
whole answer arrives in one read is wrong). The request core's fault table
(``tests/test_request_core.py``) runs the same client against the simulator and real TLS and
proxy servers; these tests pin what only a hand-written server can send.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods._core import Answer, Failed, Failure, Send
from airflow_provider_octopods._http import MAX_RESPONSE_BYTES
from airflow_provider_octopods._keepalive import KeepAlivePool, encode_request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

LIMIT = MAX_RESPONSE_BYTES
KEY = "ka-test-key-0b8e2f61d4"


@dataclass(frozen=True)
class Close:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Hang:
    """Read the request, never answer (until the client closes the connection)."""


@dataclass
class ScriptedServer:
    """
    Answers the n-th request (over all connections) with ``answers[n]``: bytes, :class:`Close` or :class:`Hang`.

    :param dribble: write answers one byte at a time.
    :param close_after: close each connection after this many answers (None: keep it open).
    """

    answers: list[Any]
    dribble: bool = False
    close_after: int | None = None
    delay: float = 0.0
    byte_delay: float = 0.0
    host: str = "127.0.0.1"
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        answered = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                answer = self.answers[min(len(self.requests) - 1, len(self.answers) - 1)]
                if self.delay:
                    await asyncio.sleep(self.delay)
                if isinstance(answer, Close):
                    return
                if isinstance(answer, Hang):
                    await reader.read()  # until the client gives up and closes
                    return
                if self.dribble:
                    for i in range(len(answer)):
                        writer.write(answer[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(self.byte_delay)
                else:
                    writer.write(answer)
                    await writer.drain()
                answered += 1
                if self.close_after is not None and answered >= self.close_after:
                    return
        finally:
            writer.close()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{'[' + self.host + ']' if ':' in self.host else self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()


def get(url: str, timeout: float = 2.0, method: str = "GET", **headers: str) -> Send:
    return Send(
        method,
        url + "/api/v1/sms/messages/7",
        {"X-Octopods-Auth": KEY, "Accept": "application/json", **headers},
        b"{}" if method == "POST" else None,
        connect_timeout=1.0,
        timeout=timeout,
        ca_bundle=None,
    )


def ok(body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = [f"HTTP/{version} 200 OK", "Content-Type: application/json", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def sized(body: bytes, *headers: str, version: str = "1.1") -> bytes:
    return ok(body, f"Content-Length: {len(body)}", *headers, version=version)


def chunked(*chunks: bytes, trailer: str = "") -> bytes:
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return ok(wire + b"0\r\n" + trailer.encode() + b"\r\n", "Transfer-Encoding: chunked")


@pytest.fixture
async def pool() -> AsyncIterator[KeepAlivePool]:
    pool = KeepAlivePool()
    yield pool
    pool.close()


BODY = b'{"message_id": 7, "status": "delivered"}'
BIG = b"x" * (LIMIT + 10)
BOMB = gzip.compress(b" " * (LIMIT * 20))


@dataclass(frozen=True)
class Row:
    """An answer on the wire and what the client makes of it (body None: a failure)."""

    id: str
    wire: bytes
    body: bytes | None
    reused: bool = True
    status: int = 200


ROWS = [
    Row("content-length", sized(BODY), BODY),
    Row("content-length-repeated-equal", sized(BODY, f"Content-Length: {len(BODY)}"), BODY),
    Row("chunked-with-extensions-and-trailer", chunked(BODY[:5], BODY[5:], trailer="X-T: 1\r\n"), BODY),
    Row("chunked-empty", chunked(), b""),
    Row("until-close", ok(BODY, "Connection: close"), BODY, reused=False),
    Row("http-1.0-not-reused", sized(BODY, version="1.0"), BODY, reused=False),
    Row("connection-close-not-reused", sized(BODY, "Connection: close"), BODY, reused=False),
    Row("continue-then-answer", b"HTTP/1.1 100 Continue\r\n\r\n" + sized(BODY), BODY),
    Row("no-content", b"HTTP/1.1 204 No Content\r\n\r\n", b"", status=204),
    Row("gzip", sized(gzip.compress(BODY), "Content-Encoding: gzip"), BODY),
    Row("deflate", sized(zlib.compress(BODY), "Content-Encoding: deflate"), BODY),
    Row("bytes-after-the-answer", sized(BODY) + b"junk", BODY, reused=False),
    # Too large: at most limit + 1 bytes are read (the request core then refuses the answer).
    Row("chunked-over-the-limit", chunked(BIG), BIG[: LIMIT + 1], reused=False),
    Row("until-close-over-the-limit", ok(BIG), BIG[: LIMIT + 1], reused=False),
    Row("gzip-bomb", sized(BOMB, "Content-Encoding: gzip"), b" " * (LIMIT + 1), reused=False),
    Row("declared-over-the-limit-unread", sized(BIG), b"", reused=False),
    # Broken framing: a failure, the connection dropped.
    Row("conflicting-content-lengths", sized(BODY, "Content-Length: 3"), None, reused=False),
    Row("content-length-not-digits", ok(BODY, "Content-Length: 4x"), None, reused=False),
    Row(
        "length-and-chunked",
        ok(b"0\r\n\r\n", "Content-Length: 5", "Transfer-Encoding: chunked"),
        None,
        reused=False,
    ),
    Row("unknown-transfer-coding", ok(BODY, "Transfer-Encoding: gzip"), None, reused=False),
    Row("unknown-content-coding", sized(BODY, "Content-Encoding: br"), None, reused=False),
    Row("corrupt-gzip", sized(b"\x1f\x8b\x08\x00garbage", "Content-Encoding: gzip"), None, reused=False),
    Row("folded-header", sized(BODY, "X-A: 1", " folded"), None, reused=False),
    Row("header-without-colon", sized(BODY, "X-A 1"), None, reused=False),
    Row("not-http-1", b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\n{}", None, reused=False),
    Row("switching-protocols", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", None, reused=False),
    Row(
        "chunk-longer-than-announced",
        ok(b"2\r\n{}}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
        None,
        reused=False,
    ),
    Row("bad-chunk-size", ok(b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), None, reused=False),
    Row("head-too-large", sized(BODY, "X-Big: " + "a" * (70 * 1024)), None, reused=False),
    Row("cut-short", ok(BODY[:5], f"Content-Length: {len(BODY)}", "Connection: close"), None, reused=False),
]


@pytest.mark.parametrize("dribble", [False, True], ids=["whole", "one-byte-at-a-time"])
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_framing(row: Row, dribble: bool, pool: KeepAlivePool):
    if dribble and len(row.wire) > 4096:
        pytest.skip("large answers are only sent whole (one byte at a time is thousands of writes)")
    follow_up = sized(BODY)
    close_after = 1 if "Connection: close" in row.wire.decode("latin-1") or "until-close" in row.id else None
    async with ScriptedServer([row.wire, follow_up], dribble=dribble, close_after=close_after) as server:
        first = await pool.request(get(server.url))
        second = await pool.request(get(server.url))

    if row.body is None:
        assert isinstance(first, Failed) and first.kind is Failure.BROKEN, first
    else:
        assert isinstance(first, Answer), first
        assert (first.status, first.body) == (row.status, row.body)
    assert isinstance(second, Answer) and second.body == BODY, second
    assert server.connections == (1 if row.reused else 2)


async def test_headers_are_case_insensitive_and_kept(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY, "retry-after: 7", "X-A: 1", "X-A: 2")]) as server:
        answer = await pool.request(get(server.url))
    assert isinstance(answer, Answer)
    assert answer.headers.get("Retry-After") == "7"
    assert answer.headers.get("content-type") == "application/json"
    assert answer.headers.getall("X-A") == ["1", "2"]  # type: ignore[attr-defined]


async def test_the_request_on_the_wire(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY)]) as server:
        await pool.request(get(server.url))
        await pool.request(get(server.url, method="POST"))
    port = server.url.rsplit(":", 1)[1]
    assert (
        server.requests[0]
        == (
            f"GET /api/v1/sms/messages/7 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"X-Octopods-Auth: {KEY}\r\nAccept: application/json\r\n\r\n"
        ).encode()
    )
    assert server.requests[1].startswith(b"POST /api/v1/sms/messages/7 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 2\r\n" in server.requests[1]


@pytest.mark.parametrize(
    "headers",
    [{"X-Octopods-Auth": KEY + "\r\nX-Evil: 1"}, {"X-Octopods-Auth": KEY + "\n"}, {"Bad Name": "1"}],
)
def test_a_header_that_could_split_the_request_is_refused_without_its_value(headers: dict[str, str]):
    send = Send("GET", "http://127.0.0.1:9/x", headers, None, 1.0, 1.0, None)
    with pytest.raises(ValueError, match="The header") as err:
        encode_request(send)
    assert KEY not in str(err.value)


def test_a_request_shows_no_header_in_its_repr():
    assert KEY not in repr(get("http://127.0.0.1:9"))


def test_a_path_with_a_space_or_a_line_break_is_refused():
    for url in ("http://127.0.0.1:9/a b", "http://127.0.0.1:9/a\r\nX: 1"):
        with pytest.raises(ValueError, match="path"):
            encode_request(Send("GET", url, {}, None, 1.0, 1.0, None))


async def test_connections_are_kept_alive_and_reused(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY)]) as server:
        for _ in range(5):
            assert isinstance(await pool.request(get(server.url)), Answer)
    assert server.connections == 1
    assert pool.opened == 1


async def test_a_get_on_a_connection_the_server_closed_is_sent_again_once(pool: KeepAlivePool):
    # The server closes every connection after one answer, without saying so (no Connection: close):
    # the next GET meets a dead kept-alive connection and is sent again on a new one.
    async with ScriptedServer([sized(BODY)], close_after=1) as server:
        assert isinstance(await pool.request(get(server.url)), Answer)
        await asyncio.sleep(0.05)  # the close has reached the client
        second = await pool.request(get(server.url))
        assert isinstance(second, Answer), second
    assert server.connections == 2


async def test_a_post_on_a_dead_kept_alive_connection_is_never_sent_again(pool: KeepAlivePool):
    # The answer to the first request is read, then the server drops the connection as the POST
    # arrives: the POST may have been processed, so it fails instead of being sent twice.
    async with ScriptedServer([sized(BODY), Close()]) as server:
        assert isinstance(await pool.request(get(server.url)), Answer)
        outcome = await pool.request(get(server.url, method="POST"))
    assert isinstance(outcome, Failed) and outcome.kind is Failure.BROKEN
    assert len(server.requests) == 2
    assert server.connections == 1


async def test_a_stalled_answer_times_out_and_the_connection_is_dropped(pool: KeepAlivePool):
    async with ScriptedServer([Hang(), sized(BODY)]) as server:
        started = asyncio.get_running_loop().time()
        outcome = await pool.request(get(server.url, timeout=0.3))
        took = asyncio.get_running_loop().time() - started
        assert outcome == Failed(Failure.TIMEOUT)
        assert 0.25 <= took < 1.5
        assert isinstance(await pool.request(get(server.url)), Answer)
    assert server.connections == 2


async def test_a_trickling_answer_cannot_outlast_the_timeout(pool: KeepAlivePool):
    # One byte every 50 ms: each read is quick, the whole answer is not. The timeout bounds the
    # whole request, not the gap between reads.
    async with ScriptedServer([sized(BODY)], dribble=True, byte_delay=0.05) as server:
        started = asyncio.get_running_loop().time()
        outcome = await pool.request(get(server.url, timeout=0.5))
        took = asyncio.get_running_loop().time() - started
    assert outcome == Failed(Failure.TIMEOUT)
    assert took < 1.5


async def test_an_ipv6_literal_host(pool: KeepAlivePool):
    try:
        server = ScriptedServer([sized(BODY)], host="::1")
        await server.__aenter__()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        answer = await pool.request(get(server.url))
    finally:
        await server.__aexit__()
    assert isinstance(answer, Answer) and answer.body == BODY
    assert f"\r\nHost: {server.url.split('//')[1]}\r\n".encode() in server.requests[0]


async def test_a_refused_connection_is_a_connect_failure(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY)]) as server:
        url = server.url
    outcome = await pool.request(get(url))
    assert isinstance(outcome, Failed) and outcome.kind is Failure.CONNECT


async def test_a_cancelled_request_drops_its_connection(pool: KeepAlivePool):
    async with ScriptedServer([Hang(), sized(BODY)]) as server:
        task = asyncio.create_task(pool.request(get(server.url)))
        while not server.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert isinstance(await pool.request(get(server.url)), Answer)
    assert server.connections == 2  # the cancelled one was not reused mid-answer


async def test_connections_in_use_are_capped(pool: KeepAlivePool):
    capped = KeepAlivePool(limit=2)
    async with ScriptedServer([sized(BODY)], delay=0.05) as server:
        outcomes = await asyncio.gather(*(capped.request(get(server.url)) for _ in range(6)))
    capped.close()
    assert all(isinstance(o, Answer) for o in outcomes)
    assert server.connections == 2


async def test_a_request_that_gets_no_connection_in_time_is_not_sent():
    capped = KeepAlivePool(limit=1)
    async with ScriptedServer([Hang()]) as server:
        first = asyncio.create_task(capped.request(get(server.url, timeout=1.0)))
        await asyncio.sleep(0.05)
        second = await capped.request(get(server.url, timeout=0.2))
        assert isinstance(second, Failed) and second.kind is Failure.CONNECT
        assert len(server.requests) == 1  # the second never reached the server
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    capped.close()


async def test_idle_connections_expire():
    pool = KeepAlivePool(idle_seconds=0.05)
    async with ScriptedServer([sized(BODY)]) as server:
        await pool.request(get(server.url))
        await asyncio.sleep(0.1)
        await pool.request(get(server.url))
    pool.close()
    assert server.connections == 2


async def test_bytes_on_an_idle_connection_drop_it(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY) + b"HTTP/1.1 200 OK\r\n"]) as server:
        # The stray bytes arrive with the first answer: they are past it, so the connection goes.
        await pool.request(get(server.url))
        await pool.request(get(server.url))
    assert server.connections == 2


async def test_a_connection_in_use_when_the_pool_closes_is_closed_after_its_request():
    pool = KeepAlivePool()
    async with ScriptedServer([sized(BODY)], delay=0.1) as server:
        task = asyncio.create_task(pool.request(get(server.url)))
        while not server.requests:
            await asyncio.sleep(0.01)
        pool.close()
        assert isinstance(await task, Answer)
        assert pool._idle == {}  # not kept for reuse by a closed pool


async def test_close_closes_the_idle_connections(pool: KeepAlivePool):
    async with ScriptedServer([sized(BODY)]) as server:
        await pool.request(get(server.url))
        pool.close()
        await pool.request(get(server.url))
    assert server.connections == 2
