"""
One table of faults through every transport of the request core, against real servers on 127.0.0.1.

Every row is run with the sync hook (``requests``), the async hook with every request forced
through ``aiohttp``, and the async hook as it ships (``keepalive``: its GET requests to Octopods
go through :mod:`airflow_provider_octopods._keepalive`, sends and proxied requests through
``aiohttp``), one request each (no retries), and all must come to the SAME outcome: the error
type, ``request_sent``, ``retry_after``, ``status_code``, the message, word for word, and how many
requests reached the server. That equality is what keeps the transports from drifting apart; the
row's expectation then pins what that outcome is.
"""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from airflow_provider_octopods._http import MAX_RESPONSE_BYTES
from airflow_provider_octopods._transport import Clients, send_with_aiohttp
from airflow_provider_octopods.exceptions import OctopodsApiError, OctopodsError
from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook, OctopodsHook
from airflow_provider_octopods.testing import Hang, Reply, Reset
from tests.reliability.servers import (
    TinyProxy,
    TinyServer,
    self_signed_certificate,
    server_tls_context,
    status_body,
)
from tests.reliability.waits import use_connection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from airflow_provider_octopods._core import Answer, Failed, Send
    from airflow_provider_octopods.testing import OctopodsSimulator

TRANSPORTS = ["requests", "aiohttp", "keepalive"]
PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"]
PHONE = "+12015550123"
#: Seconds per request: ample for a busy machine, short enough for the stalled-read row.
REQUEST_TIMEOUT = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one call came to, in terms both transports must agree on."""

    error: str
    request_sent: bool | None = None
    retry_after: float | None = None
    status_code: int | None = None
    message: str = ""
    reached: int = 0


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

    def connect(self, host: str, key: str | None = None, **extra: Any) -> None:
        use_connection(self.monkeypatch, host, key or self.sim.api_key, REQUEST_TIMEOUT, **extra)

    def tls_server(self) -> tuple[TinyServer, Path]:
        """An HTTPS Octopods with a self-signed certificate; its requests are the ones counted."""
        if self._tls is None:
            cert, key = self_signed_certificate(self.tmp_path)

            async def answer(request: web.Request) -> web.StreamResponse:
                return web.json_response(status_body(int(request.path.rsplit("/", 1)[-1])))

            server = self.stack.enter_context(TinyServer(answer, ssl_context=server_tls_context(cert, key)))
            self.counter = lambda: len(server.seen)
            self._tls = (server, cert)
        return self._tls

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


async def _only_aiohttp(clients: Clients, send: Send) -> Answer | Failed:
    return await send_with_aiohttp(clients.session(), send)


def call(transport: str, what: str, message_id: int) -> Any:
    """Make one call (no retries) with the hook of ``transport``."""
    if transport == "aiohttp":
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Clients, "send", _only_aiohttp)
            return call("async", what, message_id)
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
    try:
        result = call(transport, what, env.message_id)
    except OctopodsError as err:
        return Outcome(
            type(err).__name__,
            getattr(err, "request_sent", None),
            getattr(err, "retry_after", None),
            err.status_code if isinstance(err, OctopodsApiError) else None,
            str(err),
            env.reached() - before,
        )
    return Outcome("ok", message=getattr(result, "status", "sent"), reached=env.reached() - before)


@dataclass(frozen=True)
class Row:
    """
    A fault, how to set it up, and the outcome both transports must come to.

    :param setup: sets the row up once, or (:class:`Scripted`) the answer served to each transport.
    :param message: a regular expression the whole message must match.
    """

    id: str
    setup: Callable[[Env], Any] | Scripted | None
    error: str
    message: str
    request_sent: bool | None = None
    retry_after: float | None = None
    status_code: int | None = None
    reached: int = 1
    what: str = "status"


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


NOT_SENT = r"Could not reach Octopods at {url}: {why}, so nothing was sent\."
OTHER_ORIGIN = {"Location": "http://127.0.0.2:9/api/v1/sms/messages/1"}
JSON = {"Content-Type": "application/json"}

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
        request_sent=False,
        reached=0,
    ),
    Row(
        "refused-connect-send",
        refused,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"http://127\.0\.0\.1:\d+", why="no connection could be opened"),
        request_sent=False,
        reached=0,
        what="send",
    ),
    Row(
        "dns-failure",
        lambda env: env.connect("https://octopods-test.invalid"),
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://octopods-test\.invalid", why="the host name could not be resolved"),
        request_sent=False,
        reached=0,
    ),
    Row(
        "tls-handshake-failure",
        lambda env: env.connect(env.sim.url.replace("http://", "https://")),
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the TLS handshake failed"),
        request_sent=False,
        reached=0,
        what="send",
    ),
    Row(
        "tls-untrusted-certificate",
        tls_untrusted,
        "OctopodsCertificateError",
        r"The TLS certificate of https://127\.0\.0\.1:\d+ could not be verified \(self-signed certificate\), "
        r'so nothing was sent\. If a proxy or a private CA signs it, set the connection\'s extra "verify".*',
        request_sent=False,
        reached=0,
        what="send",
    ),
    Row("tls-trusted-ca-bundle", tls_trusted, "ok", "delivered"),
    Row(
        "proxy-refuses-connect",
        through_refusing_proxy,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the proxy could not open a tunnel to it"),
        request_sent=False,
        reached=0,
        what="send",
    ),
    Row(
        "proxy-unreachable",
        through_unreachable_proxy,
        "OctopodsTransientError",
        NOT_SENT.format(url=r"https://127\.0\.0\.1:\d+", why="the proxy could not open a tunnel to it"),
        request_sent=False,
        reached=0,
    ),
    Row("proxy-connect-tunnel", through_tunnel, "ok", "delivered"),
    Row("proxy-forward", through_forward_proxy, "ok", "delivered"),
    Row("no-proxy-bypasses-the-proxy", bypassing_proxy, "ok", "delivered"),
    Row(
        "stalled-read",
        Scripted(lambda env: Hang(30)),
        "OctopodsTransientError",
        r"Octopods did not answer GET /api/v1/sms/messages/\d+ within 1 s\.",
        request_sent=True,
    ),
    Row(
        "reset-mid-body",
        Scripted(lambda env: Reset()),
        "OctopodsTransientError",
        r"The connection to Octopods broke while reading the answer\.",
        request_sent=True,
    ),
    Row(
        "oversized-body",
        reply(200, b" " * (MAX_RESPONSE_BYTES + 1), JSON),
        "OctopodsTransientError",
        rf"Octopods sent an answer larger than {MAX_RESPONSE_BYTES} bytes; it was refused unread\.",
        request_sent=True,
    ),
    Row(
        "redirect-to-another-origin",
        reply(302, headers=OTHER_ORIGIN),
        "OctopodsBadRequestError",
        r"Octopods redirected to another origin \(http://127\.0\.0\.2\); the API key was not sent there\..*",
    ),
    Row(
        "redirect-same-origin-followed",
        Scripted(lambda env: Reply(301, b"", {"Location": f"/api/v1/sms/messages/{env.message_id}"})),
        "ok",
        "delivered",
        reached=2,
    ),
    Row(
        "303-after-post",
        reply(303, headers={"Location": "/api/v1/sms/messages/4829999"}),
        "OctopodsSendUnconfirmedError",
        r"Octopods answered POST /api/v1/sms/messages with a redirect \(HTTP 303\); it was not followed, so "
        r"the request is not repeated, and it may have been processed\." + UNCONFIRMED,
        request_sent=True,
        status_code=303,
        what="send",
    ),
    Row(
        "307-after-post-to-another-origin",
        reply(307, headers=OTHER_ORIGIN),
        "OctopodsSendUnconfirmedError",
        r"Octopods answered POST /api/v1/sms/messages with a redirect \(HTTP 307\).*may have been processed\."
        + UNCONFIRMED,
        request_sent=True,
        status_code=307,
        what="send",
    ),
    Row(
        "400-bad-request",
        reply(400, {"error_code": 1, "error": "You must supply message_id", "request_id": "r1"}),
        "OctopodsBadRequestError",
        r"Octopods refused the request \(HTTP 400, error_code 1\): You must supply message_id\. \(request_id r1\)",
        status_code=400,
    ),
    Row(
        "400-provider-error",
        reply(400, {"error_code": 4, "error": "SMS provider error"}),
        "OctopodsApiError",
        r"Octopods' SMS provider failed \(HTTP 400, error_code 4\): SMS provider error\.",
        status_code=400,
        what="send",
    ),
    Row(
        "401-unknown-key",
        reply(401, {"error": "Unauthorized"}),
        "OctopodsAuthError",
        r"Octopods rejected the Channel API key of connection 'octopods_default': the key is missing or "
        r"unknown \(HTTP 401: Unauthorized\)\. Update .*",
        status_code=401,
    ),
    Row(
        "404-not-found",
        reply(404, {"error": "Not found"}),
        "OctopodsBadRequestError",
        r"Octopods refused the request \(HTTP 404\): Not found\.",
        status_code=404,
    ),
    *(
        Row(
            f"{status}-not-processed",
            reply(status, {"error": "Slow down"}, {"Retry-After": "7"}),
            "OctopodsTransientError",
            rf"Octopods answered HTTP {status} \({what}\): Slow down\.",
            request_sent=False,
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
            request_sent=True,
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
        request_sent=True,
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

    assert outcomes["requests"] == outcomes["aiohttp"] == outcomes["keepalive"], outcomes
    got = outcomes["requests"]
    assert got.error == row.error, got
    assert re.fullmatch(row.message, got.message, flags=re.DOTALL), got.message
    assert (got.request_sent, got.retry_after, got.status_code) == (
        row.request_sent,
        row.retry_after,
        row.status_code,
    ), got
    assert got.reached == row.reached, got
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


def test_the_async_hook_polls_through_the_keepalive_client_and_sends_through_aiohttp(
    env: Env, monkeypatch: pytest.MonkeyPatch
):
    from airflow_provider_octopods import _keepalive, _transport

    used: list[str] = []
    for module, name in [(_transport, "send_with_aiohttp"), (_keepalive.KeepAlivePool, "request")]:
        original = getattr(module, name)

        def spy(*args: Any, _original: Any = original, _name: str = name) -> Any:
            used.append(_name)
            return _original(*args)

        monkeypatch.setattr(module, name, spy)

    assert outcome_of(env, "keepalive", "status").error == "ok"
    assert outcome_of(env, "keepalive", "send").error == "ok"
    through_forward_proxy(env)
    assert outcome_of(env, "keepalive", "status").error == "ok"
    assert used == ["request", "send_with_aiohttp", "send_with_aiohttp"]
