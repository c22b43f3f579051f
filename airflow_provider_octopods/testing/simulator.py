"""
A local Octopods: a real HTTP server on 127.0.0.1 implementing the SMS status and send endpoints.

Each message follows a script. Either a list of steps, one consumed per status request (the last
one repeats), or a timeline of ``(seconds after creation, status)``. A step is a status
(``"delivered"`` or :class:`Status`), an arbitrary :class:`Reply` (HTTP 429 with ``Retry-After``,
a 5xx, an HTML page, truncated JSON ...), or a fault: :class:`Reset` (the connection breaks
mid-answer), :class:`Hang` (never answers), :class:`Trickle` (answers a byte at a time).
:meth:`OctopodsSimulator.inject` puts steps in front of the next requests whatever they ask.

Sent messages (``POST /api/v1/sms/messages``) are delivered after ``deliver_after`` seconds,
unless the destination number ends in one of the magic suffixes of :data:`MAGIC_NUMBERS` (all
of them within ``+1 201 555 0100`` to ``0199``, numbers libphonenumber calls valid and that are
reserved for fiction). A send to a number that is not in E.164 form, or whose length
libphonenumber calls impossible, is refused (HTTP 400, ``error_code`` 3); one to a number of a
possible length that libphonenumber does not call valid (``+1 555 123 4567``) is accepted and
then ``failed`` with the ``invalid_number`` reason, as a carrier would.

The server runs its own event loop in a daemon thread, so it serves sync and async clients
alike, and counts the TCP connections it accepts (:attr:`OctopodsSimulator.connections_opened`).

For a simulator in another process (``octopods-simulator``, used by ``benchmarks/``), two admin
endpoints script and observe it over HTTP. They need no key, are not recorded as requests and
take no injected fault (their TCP connections are counted, like any other):

- ``POST /_simulator/messages`` with ``{"messages": [{"timeline": [[seconds, status], ...]}, ...]}``
  creates timeline-scripted messages (optional ``phone_number`` per message) and answers 201 with
  ``{"message_ids": [...], "created_at": <UNIX time the timelines start>}``.
- ``GET /_simulator/stats`` answers ``{"connections_opened", "requests", "status_requests",
  "messages", "cpu_seconds", "rate_limited"}`` (requests exclude the admin endpoints;
  ``cpu_seconds`` is the CPU time of the simulator's whole process, so a benchmark can price the
  server side of a poll; ``rate_limited`` counts the 429s of ``rate_limit``).

With ``rate_limit=N`` (CLI ``--rate-limit N``), like Octopods, the simulator admits at most N
requests per key in any sliding one-second window and answers the others HTTP 429 with a
``Retry-After`` (whole seconds until the window has room); refused requests do not count
against the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiohttp.web_protocol import RequestHandler

AUTH_HEADER = "X-Octopods-Auth"
_STATUS_PATH = re.compile(r"/api/v1/sms/messages/(?P<id>[^/?#]*)")
_SEND_PATH = "/api/v1/sms/messages"
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_ADMIN_PREFIX = "/_simulator/"
_ADMIN_MESSAGES = "/_simulator/messages"
_ADMIN_STATS = "/_simulator/stats"

#: The failure reasons Octopods documents for ``failed`` and ``undelivered`` messages.
FAILURE_REASONS = {
    "invalid_number": "The phone number is not a valid mobile subscriber.",
    "carrier_blocked": "The carrier blocked the message for content or sender reputation reasons.",
    "out_of_coverage": "The recipient\u2019s handset is out of coverage or powered off for too long.",
    "sender_not_approved": "The sender number is not approved to deliver to the recipient\u2019s country.",
}


@dataclass(frozen=True)
class Status:
    """
    A status answer (HTTP 200).

    :param status: the status value, sent as given (so upper case or unknown values can be tested).
    :param failure_reason: the reason, for ``failed`` and ``undelivered``.
    """

    status: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class Reply:
    """
    Any HTTP answer.

    :param status: the HTTP status code.
    :param body: a dict or list (sent as JSON), str or bytes (sent as is), or None (empty).
    :param headers: extra headers, e.g. ``{"Retry-After": "2"}``.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reset:
    """Send the status line and part of the body, then break the TCP connection."""


@dataclass(frozen=True)
class Hang:
    """
    Accept the request and never answer (until ``seconds`` pass or the simulator stops).

    :param seconds: how long to stay silent.
    """

    seconds: float = 3600.0


@dataclass(frozen=True)
class Trickle:
    """
    Answer a valid status one byte every ``interval`` seconds.

    :param status: the status to answer with, slowly.
    :param interval: seconds between bytes.
    """

    status: str = "delivered"
    interval: float = 0.5


Step = str | Status | Reply | Reset | Hang | Trickle

#: Destination numbers ending in these digits get a scripted fate when sent; e.g. +12015550102
#: (libphonenumber calls every ``+1 201 555 01xx`` number valid).
MAGIC_NUMBERS: dict[str, Any] = {
    "0101": Status("failed", FAILURE_REASONS["invalid_number"]),
    "0102": Status("undelivered", FAILURE_REASONS["carrier_blocked"]),
    "0103": Status("undelivered", FAILURE_REASONS["out_of_coverage"]),
    "0104": Status("failed", FAILURE_REASONS["sender_not_approved"]),
    "0109": Status("queued"),  # never leaves the queue
    "0140": Reply(400, {"error_code": 4, "error": "The SMS provider returned an error."}),
}
#: A number that gets the default fate (queued, sent, delivered): libphonenumber's US example.
DELIVERED_NUMBER = "+12015550123"


def check_destination(phone: Any) -> str | None:
    """
    Return how the simulator treats a destination: ``"refused"``, ``"not_valid"`` or None (fine).

    Refused: not a string in E.164 form, or of a length libphonenumber calls impossible.
    Not valid: of a possible length, but in no range libphonenumber calls valid.

    :param phone: the ``destination_phone`` of a send.
    """
    if not isinstance(phone, str) or not _E164.fullmatch(phone):
        return "refused"
    import phonenumbers

    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "refused"
    if not phonenumbers.is_possible_number(number):
        return "refused"
    return None if phonenumbers.is_valid_number(number) else "not_valid"


def _as_step(step: Step) -> Step:
    return Status(step) if isinstance(step, str) else step


@dataclass
class SimulatedMessage:
    """A message the simulator knows about, with its script."""

    message_id: int
    phone_number: str
    body: str = ""
    steps: deque[Step] = field(default_factory=deque)
    timeline: list[tuple[float, Step]] | None = None
    created: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    polls: int = 0

    def next_step(self) -> Step:
        self.polls += 1
        if self.timeline is not None:
            elapsed = time.monotonic() - self.created
            current: Step = Status("queued")
            for offset, step in self.timeline:
                if elapsed >= offset:
                    current = step
            return current
        if len(self.steps) > 1:
            return self.steps.popleft()
        return self.steps[0] if self.steps else Status("queued")


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator served (the key itself is never recorded)."""

    method: str
    path: str
    had_key: bool
    at: float


class _CountingServer(web.Server):
    def __init__(self, owner: OctopodsSimulator, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        with self._owner._lock:
            self._owner.connections_opened += 1
        super().connection_made(handler, transport)


class OctopodsSimulator:
    """
    A local Octopods server for tests and demos; see the module docstring for scripting.

    :param api_key: the valid Channel API key.
    :param host: the loopback address to listen on.
    :param port: the port (0 picks a free one).
    :param deliver_after: seconds until a sent message is ``delivered``.
    :param sent_after: seconds until a sent message is ``sent``.
    :param rate_limit: requests per second admitted per key (sliding one-second window); past
        it, HTTP 429 with ``Retry-After``. None: no limit.
    """

    def __init__(
        self,
        api_key: str = "sim-channel-key-0123456789",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        deliver_after: float = 1.0,
        sent_after: float = 0.3,
        rate_limit: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.deliver_after = deliver_after
        self.sent_after = sent_after
        self.revoked_keys: set[str] = set()
        self.messages: dict[int, SimulatedMessage] = {}
        self.requests: list[RequestRecord] = []
        self.connections_opened = 0
        self.rate_limit = rate_limit
        #: Requests answered HTTP 429 because of ``rate_limit``.
        self.rate_limited = 0
        self._admitted: dict[str | None, deque[float]] = {}
        self._faults: deque[Step] = deque()
        self._next_id = 4829174
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.ServerRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to put in the connection's host, e.g. ``http://127.0.0.1:8765``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> OctopodsSimulator:
        """Start serving in a background thread; returns when the port is open."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, errors), daemon=True, name="octopods-simulator"
        )
        self._thread.start()
        if not ready.wait(15) or errors:
            raise RuntimeError(f"The Octopods simulator did not start: {errors[0] if errors else 'timeout'}")
        return self

    def stop(self) -> None:
        """Stop serving and free the port (hanging requests are released)."""
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(15)
        self._loop = self._thread = None

    def __enter__(self) -> OctopodsSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as err:
            errors.append(err)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        server = _CountingServer(self, self._handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- scripting ---------------------------------------------------------------------------

    def add_message(
        self,
        *steps: Step,
        message_id: int | None = None,
        phone_number: str = DELIVERED_NUMBER,
        timeline: Iterable[tuple[float, Step]] | None = None,
    ) -> int:
        """
        Create a message with a script and return its id.

        :param steps: answers to successive status requests; the last one repeats.
        :param message_id: the id to use (default: the next free one).
        :param phone_number: the number reported in status answers.
        :param timeline: instead of steps, ``(seconds after now, step)`` pairs.
        """
        with self._lock:
            if message_id is None:
                message_id = self._next_id
                self._next_id += 1
            self.messages[message_id] = SimulatedMessage(
                message_id=message_id,
                phone_number=phone_number,
                steps=deque(_as_step(s) for s in (steps or ("queued",))),
                timeline=None if timeline is None else [(float(t), _as_step(s)) for t, s in timeline],
            )
        return message_id

    def inject(self, *steps: Step, times: int = 1) -> None:
        """
        Answer the next requests (any endpoint, before checking the key) with these steps.

        :param steps: the answers, in order.
        :param times: how many times to repeat the sequence.
        """
        with self._lock:
            self._faults.extend([_as_step(s) for s in steps] * times)

    def rotate_key(self, new_key: str) -> None:
        """Make ``new_key`` the valid key; the old one now gets ``error_code`` 5."""
        with self._lock:
            self.revoked_keys.add(self.api_key)
            self.api_key = new_key

    def revoke_key(self) -> None:
        """Revoke the current key: every request then gets ``error_code`` 5."""
        with self._lock:
            self.revoked_keys.add(self.api_key)

    def request_count(self, path: str | None = None) -> int:
        """Return how many requests were served (for one path if given)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def connection_extra(self) -> dict[str, Any]:
        """Return the Airflow connection (as a dict) that points at this simulator."""
        return {"conn_type": "octopods", "host": self.url, "password": self.api_key}

    def connection_uri_env(self, conn_id: str = "octopods_default") -> dict[str, str]:
        """Return the environment variable that defines an Airflow connection to this simulator."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.connection_extra())}

    # -- serving -----------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/json", headers=headers
        )

    def _error(self, status: int, error: str, error_code: int | None = None) -> web.Response:
        payload: dict[str, Any] = {"request_id": str(uuid.uuid4()), "error": error}
        if error_code is not None:
            payload["error_code"] = error_code
        return self._json(status, payload)

    async def _admin(self, request: web.BaseRequest) -> web.StreamResponse:
        """Serve the ``/_simulator/`` endpoints described in the module docstring."""
        if request.path == _ADMIN_STATS and request.method == "GET":
            with self._lock:
                return self._json(
                    200,
                    {
                        "connections_opened": self.connections_opened,
                        "requests": len(self.requests),
                        "status_requests": sum(
                            1 for r in self.requests if r.method == "GET" and _STATUS_PATH.fullmatch(r.path)
                        ),
                        "messages": len(self.messages),
                        "cpu_seconds": time.process_time(),
                        "rate_limited": self.rate_limited,
                    },
                )
        if request.path == _ADMIN_MESSAGES and request.method == "POST":
            try:
                specs = (await request.json())["messages"]
                scripts = [
                    ([(float(t), str(s)) for t, s in spec["timeline"]], spec.get("phone_number"))
                    for spec in specs
                ]
            except (ValueError, KeyError, TypeError):
                return self._error(
                    400, 'Send {"messages": [{"timeline": [[seconds, status], ...]}, ...]}.', 1
                )
            created_at, started = time.time(), time.monotonic()
            ids = [
                self.add_message(timeline=timeline, phone_number=phone or DELIVERED_NUMBER)
                for timeline, phone in scripts
            ]
            with self._lock:
                for message_id in ids:  # one clock for the batch, so delivery times are exact
                    self.messages[message_id].created = started
            return self._json(201, {"message_ids": ids, "created_at": created_at})
        return self._error(404, f"No simulator route for {request.method} {request.path}.")

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(_ADMIN_PREFIX):
            return await self._admin(request)
        key = request.headers.get(AUTH_HEADER)
        with self._lock:
            self.requests.append(RequestRecord(request.method, request.path, key is not None, time.time()))
            fault = self._faults.popleft() if self._faults else None
            valid, revoked = self.api_key, set(self.revoked_keys)
            retry_after = self._admit(key)
        if retry_after is not None:
            return self._json(
                429,
                {"request_id": str(uuid.uuid4()), "error": "Too many requests for this API key."},
                {"Retry-After": str(retry_after)},
            )
        if fault is not None:
            return await self._answer(request, fault, None)
        if key in revoked:
            return self._error(
                400, "The API key has been rotated or revoked. Fetch the current key from Octopods.", 5
            )
        if key != valid:
            return self._error(401, "Unauthorized: missing or unknown X-Octopods-Auth key.")
        if request.path == _SEND_PATH and request.method == "POST":
            return await self._send(request)
        match = _STATUS_PATH.fullmatch(request.path)
        if match and request.method == "GET":
            if not match["id"].isdigit():
                return self._error(400, "You must supply message_id in your request payload.", 1)
            with self._lock:
                message = self.messages.get(int(match["id"]))
                step = message.next_step() if message else None
            if message is None or step is None:
                return self._error(400, "Message not found.", 6)
            return await self._answer(request, step, message)
        return self._error(404, f"No route for {request.method} {request.path}.")

    def _admit(self, key: str | None) -> int | None:
        """Admit one request of ``key`` under ``rate_limit`` (lock held); else the Retry-After."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        window = self._admitted.setdefault(key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) < self.rate_limit:
            window.append(now)
            return None
        self.rate_limited += 1
        return max(1, math.ceil(window[0] + 1.0 - now))

    def _status_payload(self, step: Status, message: SimulatedMessage | None) -> dict[str, Any]:
        lowered = step.status.lower()
        created = message.created_at if message else datetime.now(UTC)
        stamp = lambda s: (created + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        return {
            "request_id": str(uuid.uuid4()),
            "message_id": message.message_id if message else 0,
            "status": step.status,
            "phone_number": message.phone_number if message else None,
            "sent_at": stamp(self.sent_after) if lowered in {"sent", "delivered", "undelivered"} else None,
            "delivered_at": stamp(self.deliver_after) if lowered == "delivered" else None,
            "failure_reason": step.failure_reason,
        }

    async def _answer(
        self, request: web.BaseRequest, step: Step, message: SimulatedMessage | None
    ) -> web.StreamResponse:
        assert self._stopping is not None
        if isinstance(step, Status):
            return self._json(200, self._status_payload(step, message))
        if isinstance(step, Reply):
            body = step.body
            if isinstance(body, (dict, list)):
                return self._json(step.status, body, step.headers)
            data = body.encode() if isinstance(body, str) else (body or b"")
            return web.Response(status=step.status, body=data, headers=step.headers)
        if isinstance(step, Hang):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=step.seconds)
            return self._error(503, "Hung request released.")
        data = json.dumps(
            self._status_payload(Status(getattr(step, "status", "delivered")), message)
        ).encode()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        if isinstance(step, Reset):
            await response.write(data[: len(data) // 3])
            if request.transport is not None:
                request.transport.abort()
            return response
        assert isinstance(step, Trickle)
        for i in range(len(data)):
            if self._stopping.is_set():
                break
            try:
                await response.write(data[i : i + 1])
            except ConnectionResetError:  # the client gave up waiting: what a trickle is for
                break
            await asyncio.sleep(step.interval)
        return response

    async def _send(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self._error(400, "You must supply destination_phone in your request payload.", 1)
        for name in ("destination_phone", "body"):
            if name not in payload or payload[name] is None:
                return self._error(400, f"You must supply {name} in your request payload.", 1)
        phone, body = payload["destination_phone"], payload["body"]
        if not isinstance(body, str) or not body.strip():
            return self._error(400, "The message body is empty.", 2)
        checked = check_destination(phone)
        if checked == "refused":
            return self._error(400, "The destination phone number is invalid.", 3)
        fate = next((f for suffix, f in MAGIC_NUMBERS.items() if phone.endswith(suffix)), None)
        if checked == "not_valid":
            fate = Status("failed", FAILURE_REASONS["invalid_number"])
        if isinstance(fate, Reply):
            return self._json(fate.status, {"request_id": str(uuid.uuid4()), **fate.body})
        if isinstance(fate, Status) and fate.status == "queued":
            timeline: list[tuple[float, Step]] = [(0, Status("queued"))]
        elif isinstance(fate, Status):
            timeline = [(0, Status("queued")), (self.sent_after, Status("sent")), (self.deliver_after, fate)]
        else:
            timeline = [
                (0, Status("queued")),
                (self.sent_after, Status("sent")),
                (self.deliver_after, Status("delivered")),
            ]
        message_id = self.add_message(phone_number=phone, timeline=timeline)
        with self._lock:
            self.messages[message_id].body = body
        return self._json(
            201,
            {
                "request_id": str(uuid.uuid4()),
                "message_id": message_id,
                "channel_message_id": f"sim-{uuid.uuid4().hex[:12]}",
            },
        )
