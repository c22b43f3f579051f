"""
One table of faults through both transports of the hooks, against real servers on 127.0.0.1.

Every row is run with the sync hook (``requests``) and the async hook (``aiohttp``), one request
each (no retries), and both must come to the SAME outcome: the error type, ``sent`` (and the
request the error names), ``retry_after``, ``status_code``, the message, word for word, and how
many requests reached the server. That equality is what keeps the transports from drifting
apart; the row's expectation then pins what that outcome is. A row with ``max_seconds`` also
bounds how long each transport's call took.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from airflow_provider_octopods.exceptions import OctopodsApiError, OctopodsError, Sent
from airflow_provider_octopods.hooks import octopods as hooks_module
from airflow_provider_octopods.hooks.octopods import MAX_RESPONSE_BYTES, OctopodsAsyncHook, OctopodsHook
from airflow_provider_octopods.testing import Hang, Reply, Reset
from tests.reliability.servers import (
    RawServer,
    TinyProxy,
    TinyServer,
    self_signed_certificate,
    server_tls_context,
    status_body,
)
from tests.reliability.waits import first_event_with_lag, make_trigger, use_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from airflow_provider_octopods.testing import OctopodsSimulator

TRANSPORTS = ["requests", "aiohttp"]
PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"]
PHONE = "+12015550123"
#: Seconds per request: ample for a busy machine, short enough for the stalled-read row.
REQUEST_TIMEOUT = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one call came to, in terms both transports must agree on."""

    error: str
    sent: Sent | None = None
    request: str | None = None
    retry_after: float | None = None
    status_code: int | None = None
    message: str = ""
    reached: int = 0
    #: Seconds the call took: bounded by a row's ``max_seconds``, not compared between transports.
    elapsed: float = field(default=0.0, compare=False)

    @property
    def request_sent(self) -> bool:
        return self.sent not in (None, Sent.NO)


@dataclass
class Env:
    """The servers of one row and the connection pointing at them."""

    sim: OctopodsSimulator
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path
    stack: ExitStack
    message_id: int = 0
    counter: Callable[[], int] | None = None
    proxy: TinyProxy | None = None
    _tls: tuple[TinyServer, Path] | None = field(default=None, repr=False)
    _certificate: tuple[Path, Path] | None = field(default=None, repr=False)

    def connect(self, host: str, key: str | None = None, **extra: Any) -> None:
        use_connection(self.monkeypatch, host, key or self.sim.api_key, REQUEST_TIMEOUT, **extra)

    def certificate(self) -> tuple[Path, Path]:
        """A self-signed certificate for 127.0.0.1 and its key, made once per row."""
        if self._certificate is None:
            self._certificate = self_signed_certificate(self.tmp_path)
        return self._certificate

    def tls_server(self) -> tuple[TinyServer, Path]:
        """An HTTPS Octopods with a self-signed certificate; its requests are the ones counted."""
        if self._tls is None:
            cert, key = self.certificate()

            async def answer(request: web.Request) -> web.StreamResponse:
                return web.json_response(status_body(int(request.path.rsplit("/", 1)[-1])))

            server = self.stack.enter_context(TinyServer(answer, ssl_context=server_tls_context(cert, key)))
            self.counter = lambda: len(server.seen)
            self._tls = (server, cert)
        return self._tls

    def raw_server(
        self, answer: Callable[[socket.socket, socket.socket, RawServer], None], tls: bool | str
    ) -> None:
        """
        Point the connection at a :class:`RawServer` doing ``answer``: over trusted TLS with ``tls``,
        and with ``tls="by hand"`` at an https:// URL whose server answers the handshake itself.
        """
        cert, key = self.certificate()
        by_hand = tls == "by hand"
        context = server_tls_context(cert, key) if tls and not by_hand else None
        server = self.stack.enter_context(RawServer(answer, context, read_request=not by_hand))
        self.counter = lambda: len(server.seen)
        url = server.url.replace("http://", "https://") if by_hand else server.url
        self.connect(url, **({"verify": str(cert)} if tls else {}))

    def use_proxy(self, refuse: bool = False, **variables: str) -> TinyProxy:
        self.proxy = self.stack.enter_context(TinyProxy(refuse=refuse))
        for name, value in {"HTTP_PROXY": self.proxy.url, "HTTPS_PROXY": self.proxy.url, **variables}.items():
            self.monkeypatch.setenv(name, value)
        return self.proxy

    def reached(self) -> int:
        return self.counter() if self.counter else self.sim.request_count()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(octopods_conn: OctopodsSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Env]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with ExitStack() as stack:
        environment = Env(octopods_conn, monkeypatch, tmp_path, stack)
        environment.connect(octopods_conn.url)
        environment.message_id = octopods_conn.add_message("delivered")
        yield environment


def call(transport: str, what: str, message_id: int) -> Any:
    """Make one call (no retries) with the hook of ``transport``: ``requests`` (sync) or ``aiohttp`` (async)."""
    if transport == "requests":
        hook = OctopodsHook(max_retries=0)
        try:
            return hook.get_sms_status(message_id) if what == "status" else hook.send_sms(PHONE, "hi")
        finally:
            hook.close()

    async def run() -> Any:
        async with OctopodsAsyncHook() as hook:
            return await (hook.get_sms_status(message_id) if what == "status" else hook.send_sms(PHONE, "hi"))

    return asyncio.run(run())


def outcome_of(env: Env, transport: str, what: str) -> Outcome:
    before = env.reached()
    started = time.monotonic()
    try:
        result = call(transport, what, env.message_id)
    except OctopodsError as err:
        elapsed = time.monotonic() - started
        return Outcome(
            type(err).__name__,
            err.sent,
            err.request,
            getattr(err, "retry_after", None),
            err.status_code if isinstance(err, OctopodsApiError) else None,
            str(err),
            env.reached() - before,
            elapsed,
        )
    elapsed = time.monotonic() - started
    return Outcome(
        "ok", message=getattr(result, "status", "sent"), reached=env.reached() - before, elapsed=elapsed
    )


@dataclass(frozen=True)
class Row:
    """
    A fault, how to set it up, and the outcome both transports must come to.

    :param setup: sets the row up once, or (:class:`Scripted`) the answer served to each transport.
    :param message: a regular expression the whole message must match.
    :param sent: the error's ``sent`` (None: no request was involved, or no error).
    :param max_seconds: how long each transport's call may take at most, if the row bounds it.
    """

    id: str
    setup: Callable[[Env], Any] | Scripted | None
    error: str
    message: str
    sent: Sent | None = None
    retry_after: float | None = None
    status_code: int | None = None
    reached: int = 1
    what: str = "status"
    max_seconds: float | None = None


@dataclass(frozen=True)
class Scripted:
    """A row's fault that the simulator serves to each transport's request: ``make(env)`` is the step."""

    make: Callable[[Env], Any]


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Scripted:
    return Scripted(lambda env: Reply(status, body if body is not None else b"", headers or {}))


def refused(env: Env) -> None:
    env.connect(f"http://127.0.0.1:{closed_port()}")


def tls_untrusted(env: Env) -> None:
    server, _ = env.tls_server()
    env.connect(server.url)


def tls_trusted(env: Env, **proxy: Any) -> None:
    server, cert = env.tls_server()
    env.connect(server.url, verify=str(cert))


def through_refusing_proxy(env: Env) -> None:
    tls_trusted(env)
    env.use_proxy(refuse=True)


def through_unreachable_proxy(env: Env) -> None:
    tls_trusted(env)
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        env.monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")


def through_tunnel(env: Env) -> None:
    tls_trusted(env)
    env.use_proxy()


def through_forward_proxy(env: Env) -> None:
    env.use_proxy()


def bypassing_proxy(env: Env) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        env.monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port()}")
    env.monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def socks_proxy(env: Env) -> None:
    tls_trusted(env)
    env.monkeypatch.setenv("HTTPS_PROXY", "socks5h://127.0.0.1:1080")


def proxy_with_a_bad_port(env: Env) -> None:
    env.monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:99999")


def _linger(raw: socket.socket) -> None:
    """Wait (2 s at most) for the client to hang up, so what was written reaches it before our FIN."""
    raw.settimeout(2)
    with suppress(OSError):
        raw.recv(1)


def handshake_alert(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """Answer the TLS ClientHello with a fatal handshake_failure alert."""
    conn.recv(65536)
    raw.sendall(bytes([21, 3, 3, 0, 2, 2, 40]))
    _linger(raw)


def tls_garbage(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """After the request: bytes that are no TLS record (an HTTP answer in the clear)."""
    raw.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    _linger(raw)


def tls_alert(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """After the request: a fatal TLS alert (internal_error) in the clear."""
    raw.sendall(bytes([21, 3, 3, 0, 2, 2, 80]))
    _linger(raw)


def tls_unclean_close(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """After the request: the TCP connection closes without TLS's close_notify."""
    raw.shutdown(socket.SHUT_RDWR)


#: Seconds between the bytes of a trickled head: each far inside the 1 s timeout, 3.5 s in all.
TRICKLE_INTERVAL = 0.05
#: How long a call may take when the server trickles its head: the timeout, plus scheduling slack.
TRICKLE_BOUND = REQUEST_TIMEOUT + 0.75


def head_trickled(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """A valid answer whose status line and headers come one byte at a time."""
    asked = re.search(r"/(\d+)$", server.seen[-1])
    body = json.dumps(status_body(int(asked.group(1)) if asked else 4829999)).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert len(head) * TRICKLE_INTERVAL > 3 * REQUEST_TIMEOUT
    for byte in head:
        if server.stopping.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(TRICKLE_INTERVAL)
    conn.sendall(body)


def length_not_a_number(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """A head whose ``Content-Length`` is a digit to ``str.isdigit()`` but not to ``int()``."""
    conn.sendall("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ²\r\n\r\n{}".encode())


def redirect_with_an_endless_body(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """A redirect to another origin whose chunked body never ends (64 KB every 10 ms)."""
    head = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/moved\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    with suppress(OSError):
        conn.sendall(head)
        while not server.stopping.is_set():
            conn.sendall(chunk)
            time.sleep(0.01)


def interim_answer_then_created(conn: socket.socket, raw: socket.socket, server: RawServer) -> None:
    """A send answered ``102 Processing`` (an interim answer), then ``201`` with its ids."""
    body = b'{"request_id": "r1", "message_id": 4829174, "channel_message_id": null}'
    conn.sendall(
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    _linger(raw)


NOT_SENT = r"Could not reach Octopods at {url}: {why}, so nothing was sent\."
OTHER_ORIGIN = {"Location": "http://127.0.0.2:9/api/v1/sms/messages/1"}
JSON = {"Content-Type": "application/json"}

PROXY_UNUSABLE = (
    r"Invalid proxy for {scheme}:// \(HTTPS_PROXY, HTTP_PROXY or ALL_PROXY\): '{proxy}' is not a proxy both "
    r"hooks can use; give http://host:port \(or https://\), or list Octopods' host in NO_PROXY\."
)

#: What a status Octopods refuses tells to check.
NOT_KNOWN = (
    r"Check that the connection's Channel API key belongs to the channel that sent it, and that the id is "
    r"the send's message_id \(not its request_id or channel_message_id\)\."
)

#: What a send's failure says once the request had left: ``send_sms`` never repeats it.
UNCONFIRMED = (
    r" The SMS may have been sent: it is not sent again, so that a retry cannot text the recipient twice\..*"
)

ROWS = [
    Row("ok", None, "ok", "delivered"),
    Row("send-ok", None, "ok", "sent", what="send"),
    Row(
        "refused-connect",
        refused,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"http://127\.0\.0\.1:\d+", why="no connection could be opened"),
        sent=Sent.NO,
        reached=0,
    ),
    Row(
        "refused-connect-send",
        refused,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"http://127\.0\.0\.1:\d+", why="no connection could be opened"),
        sent=Sent.NO,
        reached=0,
        what="send",
    ),
    Row(
        "dns-failure",
        lambda env: env.connect("https://octopods-test.invalid"),
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://octopods-test\.invalid", why="the host name could not be resolved"),
        sent=Sent.NO,
        reached=0,
    ),
    Row(
        "tls-handshake-failure",
        lambda env: env.connect(env.sim.url.replace("http://", "https://")),
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the TLS handshake failed"),
        sent=Sent.NO,
        reached=0,
        what="send",
    ),
    Row(
        "tls-handshake-alert",
        lambda env: env.raw_server(handshake_alert, tls="by hand"),
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the TLS handshake failed"),
        sent=Sent.NO,
        reached=0,
        what="send",
    ),
    Row(
        "tls-untrusted-certificate",
        tls_untrusted,
        "OctopodsCertificateError",
        r"The TLS certificate of https://127\.0\.0\.1:\d+ could not be verified \(self-signed certificate\), "
        r'so nothing was sent\. If a proxy or a private CA signs it, set the connection\'s extra "verify".*',
        sent=Sent.NO,
        reached=0,
        what="send",
    ),
    Row("tls-trusted-ca-bundle", tls_trusted, "ok", "delivered"),
    # Regression (defect 1): a TLS error while reading the answer, after the request was written,
    # was called a failed handshake ("nothing was sent") by the sync hook; a send may have gone out.
    *(
        Row(
            f"tls-{name}-after-the-request",
            lambda env, answer=answer: env.raw_server(answer, tls=True),
            "OctopodsSendUnconfirmedError",
            r"The connection to Octopods broke during POST /api/v1/sms/messages\." + UNCONFIRMED,
            sent=Sent.MAYBE,
            what="send",
        )
        for name, answer in [
            ("garbage", tls_garbage),
            ("alert", tls_alert),
            ("unclean-close", tls_unclean_close),
        ]
    ),
    Row(
        "tls-garbage-after-the-request-status",
        lambda env: env.raw_server(tls_garbage, tls=True),
        "OctopodsTransientError",
        r"The connection to Octopods broke during GET /api/v1/sms/messages/\d+\.",
        sent=Sent.MAYBE,
    ),
    Row(
        "proxy-refuses-connect",
        through_refusing_proxy,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the proxy could not open a tunnel to it"),
        sent=Sent.NO,
        reached=0,
        what="send",
    ),
    Row(
        "proxy-unreachable",
        through_unreachable_proxy,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the proxy could not open a tunnel to it"),
        sent=Sent.NO,
        reached=0,
    ),
    Row("proxy-connect-tunnel", through_tunnel, "ok", "delivered"),
    Row("proxy-forward", through_forward_proxy, "ok", "delivered"),
    Row("no-proxy-bypasses-the-proxy", bypassing_proxy, "ok", "delivered"),
    # Regression (defect 5): a proxy neither library can use broke the send after the fact.
    Row(
        "https-proxy-socks5h",
        socks_proxy,
        "OctopodsInputError",
        PROXY_UNUSABLE.format(scheme="https", proxy=r"socks5h://127\.0\.0\.1:1080"),
        reached=0,
        what="send",
    ),
    Row(
        "http-proxy-with-a-bad-port",
        proxy_with_a_bad_port,
        "OctopodsInputError",
        PROXY_UNUSABLE.format(scheme="http", proxy=r"http://127\.0\.0\.1:99999"),
        reached=0,
        what="send",
    ),
    Row(
        "stalled-read",
        Scripted(lambda env: Hang(30)),
        "OctopodsTransientError",
        r"Octopods did not answer GET /api/v1/sms/messages/\d+ within 1 s\.",
        sent=Sent.MAYBE,
    ),
    # Regression (defect 3): requests bounds each read, not the exchange; the sync call took 3.5 s.
    Row(
        "head-trickled-byte-by-byte",
        lambda env: env.raw_server(head_trickled, tls=False),
        "OctopodsTransientError",
        r"Octopods did not answer GET /api/v1/sms/messages/\d+ within 1 s\.",
        sent=Sent.MAYBE,
        max_seconds=TRICKLE_BOUND,
    ),
    Row(
        "head-trickled-byte-by-byte-send",
        lambda env: env.raw_server(head_trickled, tls=False),
        "OctopodsSendUnconfirmedError",
        r"Octopods did not answer POST /api/v1/sms/messages within 1 s\." + UNCONFIRMED,
        sent=Sent.MAYBE,
        what="send",
        max_seconds=TRICKLE_BOUND,
    ),
    # Regression: a Content-Length of "²" escaped as a bare ValueError; every failure is an OctopodsError.
    Row(
        "content-length-not-a-number",
        lambda env: env.raw_server(length_not_a_number, tls=False),
        "OctopodsTransientError",
        r"The connection to Octopods broke during GET /api/v1/sms/messages/\d+\.",
        sent=Sent.MAYBE,
    ),
    Row(
        "reset-mid-body",
        Scripted(lambda env: Reset()),
        "OctopodsTransientError",
        r"The connection to Octopods broke during GET /api/v1/sms/messages/\d+\.",
        sent=Sent.MAYBE,
    ),
    Row(
        "oversized-body",
        reply(200, b" " * (MAX_RESPONSE_BYTES + 1), JSON),
        "OctopodsTransientError",
        rf"Octopods sent an answer larger than {MAX_RESPONSE_BYTES} bytes; it was refused unread\.",
        sent=Sent.MAYBE,
        status_code=200,
    ),
    Row(
        "redirect-to-another-origin",
        reply(302, headers=OTHER_ORIGIN),
        "OctopodsBadRequestError",
        r"Octopods redirected to another origin \(http://127\.0\.0\.2\); the API key was not sent there\..*",
        sent=Sent.NO,
        status_code=302,
    ),
    # Regression: requests read a redirect's whole body (unbounded) before the hook could refuse it.
    Row(
        "redirect-to-another-origin-with-an-endless-body",
        lambda env: env.raw_server(redirect_with_an_endless_body, tls=False),
        "OctopodsBadRequestError",
        r"Octopods redirected to another origin \(http://127\.0\.0\.2\); the API key was not sent there\..*",
        sent=Sent.NO,
        status_code=302,
        max_seconds=REQUEST_TIMEOUT,
    ),
    Row(
        "redirect-same-origin-followed",
        Scripted(lambda env: Reply(301, b"", {"Location": f"/api/v1/sms/messages/{env.message_id}"})),
        "ok",
        "delivered",
        reached=2,
    ),
    # Regression (defect 7): a Location that is not a URL was followed (or raised a bare ValueError).
    Row(
        "redirect-location-with-a-space",
        reply(302, headers={"Location": "/api/v1/sms/messages/1 2"}),
        "OctopodsTransientError",
        r"Octopods answered with a redirect \(HTTP 302\) to '/api/v1/sms/messages/1 2', which is not a URL\.",
        sent=Sent.MAYBE,
        status_code=302,
    ),
    # Regression: urllib3 ends the host at "\\", urlsplit at "@": the sync hook followed this
    # "same-origin" redirect to localhost, with the key.
    Row(
        "redirect-location-that-parsers-read-differently",
        Scripted(
            lambda env: Reply(
                302,
                b"",
                {"Location": f"http://localhost:9\\@{urlsplit(env.sim.url).netloc}/api/v1/sms/messages/1"},
            )
        ),
        "OctopodsTransientError",
        r"Octopods answered with a redirect \(HTTP 302\) to 'http://localhost:9\\\\@127\.0\.0\.1:\d+/api/v1/sms/"
        r"messages/1', which is not a URL\.",
        sent=Sent.MAYBE,
        status_code=302,
    ),
    Row(
        "303-after-post",
        reply(303, headers={"Location": "/api/v1/sms/messages/4829999"}),
        "OctopodsSendUnconfirmedError",
        r"Octopods answered POST /api/v1/sms/messages with a redirect \(HTTP 303\); it was not followed, so "
        r"the request is not repeated, and it may have been processed\." + UNCONFIRMED,
        sent=Sent.MAYBE,
        status_code=303,
        what="send",
    ),
    Row(
        "307-after-post-to-another-origin",
        reply(307, headers=OTHER_ORIGIN),
        "OctopodsSendUnconfirmedError",
        r"Octopods answered POST /api/v1/sms/messages with a redirect \(HTTP 307\).*may have been processed\."
        + UNCONFIRMED,
        sent=Sent.MAYBE,
        status_code=307,
        what="send",
    ),
    # Regression: a status that is neither a success, a redirect nor a 4xx refused a send ("not sent").
    *(
        Row(
            f"{status}-to-a-send",
            reply(status, {"request_id": "r1"}),
            "OctopodsSendUnconfirmedError",
            rf"Octopods answered HTTP {status} \(not a final answer\)\." + UNCONFIRMED,
            sent=Sent.MAYBE,
            status_code=status,
            what="send",
        )
        for status in (300, 399)
    ),
    Row(
        "400-bad-request",
        reply(400, {"error_code": 1, "error": "You must supply message_id", "request_id": "r1"}),
        "OctopodsBadRequestError",
        r"Octopods refused the request \(HTTP 400, error_code 1\): You must supply message_id\. \(request_id r1\)",
        sent=Sent.NO,
        status_code=400,
        what="send",
    ),
    # Changed (the "message not found" error): a status Octopods refuses names the id and what to check.
    Row(
        "400-bad-request-status",
        reply(400, {"error_code": 1, "error": "You must supply message_id", "request_id": "r1"}),
        "OctopodsBadRequestError",
        r"Octopods does not know SMS \d+ \(HTTP 400, error_code 1: You must supply message_id\)\. "
        + NOT_KNOWN
        + r" \(request_id r1\)",
        sent=Sent.NO,
        status_code=400,
    ),
    Row(
        "400-provider-error",
        reply(400, {"error_code": 4, "error": "SMS provider error"}),
        "OctopodsApiError",
        r"Octopods' SMS provider failed \(HTTP 400, error_code 4\): SMS provider error\.",
        sent=Sent.NO,
        status_code=400,
        what="send",
    ),
    Row(
        "401-unknown-key",
        reply(401, {"error": "Unauthorized"}),
        "OctopodsAuthError",
        r"Octopods rejected the Channel API key of connection 'octopods_default': the key is missing or "
        r"unknown \(HTTP 401: Unauthorized\)\. Update .*",
        sent=Sent.NO,
        status_code=401,
    ),
    Row(
        "404-not-found",
        reply(404, {"error": "Not found"}),
        "OctopodsBadRequestError",
        r"Octopods refused the request \(HTTP 404\): Not found\.",
        sent=Sent.NO,
        status_code=404,
        what="send",
    ),
    Row(
        "404-not-found-status",
        reply(404, {"error": "Not found"}),
        "OctopodsBadRequestError",
        r"Octopods does not know SMS \d+ \(HTTP 404: Not found\)\. " + NOT_KNOWN,
        sent=Sent.NO,
        status_code=404,
    ),
    *(
        Row(
            f"{status}-not-processed",
            reply(status, {"error": "Slow down"}, {"Retry-After": "7"}),
            "OctopodsTransientError",
            rf"Octopods answered HTTP {status} \({what}\): Slow down\.",
            sent=Sent.NO,
            retry_after=7.0,
            status_code=status,
            what="send",
        )
        for status, what in [(408, "server trouble"), (425, "server trouble"), (429, "rate limit reached")]
    ),
    *(
        Row(
            f"{status}-server-trouble",
            reply(status, "<html>down</html>", {"Content-Type": "text/html"}),
            "OctopodsSendUnconfirmedError" if what == "send" else "OctopodsTransientError",
            rf"Octopods answered HTTP {status} \(server trouble\)\."
            + (UNCONFIRMED if what == "send" else ""),
            sent=Sent.MAYBE,
            status_code=status,
            what=what,
        )
        for status, what in [(500, "send"), (502, "status"), (503, "status")]
    ),
    Row(
        "malformed-json",
        reply(200, '{"message_id": 1, "status": "deliv', JSON),
        "OctopodsTransientError",
        r"Octopods answered HTTP 200 with a body that is not JSON\.",
        sent=Sent.MAYBE,
        status_code=200,
    ),
    Row(
        "bad-header-characters-in-the-key",
        lambda env: env.connect(env.sim.url, key="octo-key\nX-Evil: 1"),
        "OctopodsInputError",
        r"Invalid password \(Channel API key\) of connection 'octopods_default': the key holds a line break "
        r"at position 9; .*",
        reached=0,
        what="send",
    ),
    Row(
        "ca-bundle-that-does-not-exist",
        lambda env: env.connect(env.sim.url, verify="corp-ca.pem"),
        "OctopodsInputError",
        r"Invalid extra 'verify' of connection 'octopods_default': the CA bundle 'corp-ca.pem' does not exist.*",
        reached=0,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_both_transports_come_to_the_same_outcome(row: Row, env: Env, monkeypatch: pytest.MonkeyPatch):
    if row.setup is not None and not isinstance(row.setup, Scripted):
        row.setup(env)
    outcomes = {}
    for transport in TRANSPORTS:
        if isinstance(row.setup, Scripted):
            env.sim.inject(row.setup.make(env))
        outcomes[transport] = outcome_of(env, transport, row.what)

    assert outcomes["requests"] == outcomes["aiohttp"], outcomes
    got = outcomes["requests"]
    assert got.error == row.error, got
    assert re.fullmatch(row.message, got.message, flags=re.DOTALL), got.message
    assert (got.sent, got.retry_after, got.status_code) == (row.sent, row.retry_after, row.status_code), got
    assert got.request_sent is (row.sent in (Sent.MAYBE, Sent.YES)), got
    # An error of a request names it; one raised before any request (bad input) names none.
    assert got.request == (None if row.sent is None else row.what), got
    assert got.reached == row.reached, got
    if row.max_seconds is not None:
        for transport, outcome in outcomes.items():
            assert outcome.elapsed <= row.max_seconds, f"{transport}: the call took {outcome.elapsed:.2f} s"
    assert env.sim.api_key not in got.message


def test_the_proxy_rows_went_through_the_proxy(env: Env):
    through_tunnel(env)
    for transport in TRANSPORTS:
        assert outcome_of(env, transport, "status").error == "ok"
    assert env.proxy is not None
    assert [seen.split(" ")[0] for seen in env.proxy.seen] == ["CONNECT"] * len(TRANSPORTS)

    env.proxy.seen.clear()
    env.connect(env.sim.url)
    for transport in TRANSPORTS:
        assert outcome_of(env, transport, "status").error == "ok"
    assert [seen.split(" ")[0] for seen in env.proxy.seen] == ["GET"] * len(TRANSPORTS)
    assert all(seen.split(" ")[1].startswith(env.sim.url) for seen in env.proxy.seen)


def test_the_async_hook_makes_every_request_with_aiohttp(env: Env, monkeypatch: pytest.MonkeyPatch):
    used: list[str] = []
    original = hooks_module.send_with_aiohttp

    async def spy(session: Any, send: Any, tls: Any) -> Any:
        used.append(f"{send.method} {urlsplit(send.url).path}")
        return await original(session, send, tls)

    def not_requests(*args: Any) -> Any:
        raise AssertionError("the async hook made a request with requests")

    monkeypatch.setattr(hooks_module, "send_with_aiohttp", spy)
    monkeypatch.setattr(hooks_module, "send_with_requests", not_requests)
    assert outcome_of(env, "aiohttp", "status").error == "ok"
    assert outcome_of(env, "aiohttp", "send").error == "ok"
    through_forward_proxy(env)
    assert outcome_of(env, "aiohttp", "status").error == "ok"
    status = f"GET /api/v1/sms/messages/{env.message_id}"
    assert used == [status, "POST /api/v1/sms/messages", status]
    assert env.proxy is not None and [seen.split(" ")[0] for seen in env.proxy.seen] == ["GET"]


def test_a_redirect_to_a_location_that_is_not_a_url_ends_a_deferrable_wait_without_a_crash(env: Env):
    # Regression (defect 7): the wait must go on (the redirect is transient) and end at its
    # deadline naming it, not stop on an unexpected ValueError.
    message_id = env.sim.add_message(Reply(302, b"", {"Location": "/api/v1/sms/messages/1 2"}))

    event, _ = asyncio.run(first_event_with_lag(make_trigger(message_id, 1.0)))

    assert event["status"] == "timeout", event
    assert event["pending"] == [message_id]
    assert re.fullmatch(
        r"Octopods answered with a redirect \(HTTP 302\) to '/api/v1/sms/messages/1 2', which is not a URL\.",
        event["last_error"],
    ), event
    assert "ValueError" not in json.dumps(event)
    assert env.sim.request_count(f"/api/v1/sms/messages/{message_id}") >= 2, "polled on after the redirect"


def test_an_interim_answer_before_a_send_is_answered_never_says_not_sent(env: Env):
    # Regression: http.client (under requests) takes a 1xx other than 100 for the final answer;
    # the sync hook called the send refused ("not sent") though Octopods took it. aiohttp reads
    # past the interim answer; requests cannot, so its verdict is "may have been sent".
    env.raw_server(interim_answer_then_created, tls=False)

    assert outcome_of(env, "aiohttp", "send").error == "ok"
    sync = outcome_of(env, "requests", "send")
    assert (sync.error, sync.sent) == ("OctopodsSendUnconfirmedError", Sent.MAYBE), sync
    assert sync.message.startswith("Octopods answered HTTP 102 (not a final answer)."), sync
    assert env.reached() == 2
    # The connection that held the rest of that answer serves no other request.
    assert outcome_of(env, "requests", "send").error == "OctopodsSendUnconfirmedError"
    assert env.reached() == 3
