"""
Tiny HTTP(S) servers for answers the simulator does not script: a chunked body that never ends,
a TLS endpoint with a self-signed certificate, a gzip-encoded answer.

:class:`TinyServer` runs one aiohttp handler on a loopback address in a thread and records every
request it receives (method, path and whether it carried ``X-Octopods-Auth``).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
