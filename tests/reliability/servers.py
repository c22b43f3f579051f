"""
Tiny HTTP(S) servers for answers the simulator does not script: a chunked body that never ends,
a TLS endpoint with a self-signed certificate, a gzip-encoded answer, and (:class:`RawServer`)
answers no HTTP framework sends: a head trickled byte by byte, bytes that break the TLS layer.

:class:`TinyServer` runs one aiohttp handler on a loopback address in a thread and records every
request it receives (method, path and whether it carried ``X-Octopods-Auth``).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from pathlib import Path

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """One request a :class:`TinyServer` received."""

    method: str
    path: str
    had_key: bool


class TinyServer:
    """
    Serve ``handler`` on ``host`` in a background thread; a context manager.

    :param handler: the aiohttp handler of every request.
    :param host: the loopback address to listen on.
    :param ssl_context: serve HTTPS with this context.
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        self.handler, self.host, self.ssl_context = handler, host, ssl_context
        self.port = 0
        self.seen: list[Seen] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, "X-Octopods-Auth" in request.headers))
        return await self.handler(request)

    def __enter__(self) -> TinyServer:
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._record)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)

            async def start() -> None:
                await runner.setup()
                await web.TCPSite(runner, self.host, 0, ssl_context=self.ssl_context).start()
                self.port = runner.addresses[0][1]

            loop.run_until_complete(start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="tiny-server")
        self._thread.start()
        assert ready.wait(10), "the tiny server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a self-signed certificate for ``host`` (an IP) and its key; return their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def status_body(message_id: int, status: str = "delivered") -> dict[str, Any]:
    return {"request_id": "req-tiny", "message_id": message_id, "status": status}


class TinyProxy:
    """
    An HTTP proxy on 127.0.0.1 in a background thread: ``CONNECT`` tunnels and plain forwarding.

    It records what it was asked for (``CONNECT host:port`` or the absolute URL of a forwarded
    request) in :attr:`seen`. With ``refuse`` it answers every request ``403 Forbidden`` instead,
    as a proxy whose policy forbids the destination.

    :param refuse: answer 403 to everything.
    """

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.port = 0
        self.seen: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        self.seen.append(f"{method} {target}")
        if self.refuse:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # forward an absolute-form request in origin form, one request per connection
            parts = urlsplit(target)
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            rest = head.split(b"\r\n", 1)[1]
            up_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> TinyProxy:
        ready = threading.Event()

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:  # open tunnels: end them before the loop closes
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="tiny-proxy")
        self._thread.start()
        assert ready.wait(10), "the tiny proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class RawServer:
    """
    A server that reads each request itself and then does ``answer(connection, raw, server)``: what
    no HTTP framework would send (a head one byte at a time, bytes that are not TLS records).

    Each connection runs in its own thread: an optional TLS handshake, then the request's head and
    its ``Content-Length`` body are read and recorded in :attr:`seen` (``"METHOD /path"``), then
    ``answer`` gets the connection (a TLS socket with ``ssl_context``) and a plain socket on the
    same TCP stream, which writes below TLS. With ``read_request`` false, ``answer`` gets the
    connection as soon as it is accepted, and nothing is recorded. A context manager;
    :attr:`stopping` is set on exit.

    :param answer: what to do once a request was read.
    :param ssl_context: serve TLS with this context.
    :param read_request: read (and record) the request before ``answer``.
    """

    def __init__(
        self,
        answer: Callable[[socket.socket, socket.socket, RawServer], None],
        ssl_context: ssl.SSLContext | None = None,
        read_request: bool = True,
    ) -> None:
        self.answer, self.ssl_context, self.read_request = answer, ssl_context, read_request
        self.seen: list[str] = []
        self.stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so the accepting thread sees ``stopping``
        self.port = self._listener.getsockname()[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while length and len(body) < int(length.group(1)):
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        self.seen.append(" ".join(head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]))
        return True

    def _serve(self, plain: socket.socket) -> None:
        plain.settimeout(10)
        raw = socket.socket(fileno=os.dup(plain.fileno()))  # writes below the TLS layer
        with plain, raw:
            try:
                conn = self.ssl_context.wrap_socket(plain, server_side=True) if self.ssl_context else plain
                with conn:
                    if not self.read_request or self._read_request(conn):
                        self.answer(conn, raw, self)
            except (OSError, ssl.SSLError):
                return  # the client gave up, or failed the handshake: what some answers are for

    def __enter__(self) -> RawServer:
        def accept() -> None:
            while not self.stopping.is_set():
                try:
                    plain, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._serve, args=(plain,), daemon=True, name="raw-conn").start()

        self._thread = threading.Thread(target=accept, daemon=True, name="raw-server")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        self._listener.close()
