"""
The faults of the reliability matrix: what the simulator answers, and what the provider must say.

Each :class:`Fault` makes a fresh simulator step (an HTTP-date ``Retry-After`` is computed when
the step is scripted) and names the regular expression the provider's last error must match
when the fault never goes away. ``kind`` tells the matrix what the fault is:

- ``transient``: the answer is an error that may pass (HTTP 429 or 5xx, a broken or stalled
  connection); retried with backoff, never ending the wait before the deadline;
- ``malformed``: an HTTP 200 whose body is not a usable status; transient too, with a warning,
  never a ``KeyError``/``TypeError``;
- ``unknown_status``: a well-formed status this provider does not know; logged as a warning and
  polled on, never terminal;
- ``refused``: nothing listens on the port (the simulator is stopped, then started again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING

from airflow_provider_octopods.testing import Hang, Reply, Reset, Status, Trickle

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_octopods.testing.simulator import Step

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server sent an invalid response.</p></body></html>"
)


@dataclass(frozen=True)
class Scripted:
    """
    One scripted answer and, for ``Retry-After``, the earliest moment a retry may come.

    :param step: the simulator step.
    :param retry_not_before: given the UNIX time of the request that got this answer, the
        earliest UNIX time of the next request; None when the answer asks for no wait.
    """

    step: Step | None
    retry_not_before: Callable[[float], float] | None = None


@dataclass(frozen=True)
class Fault:
    """
    A row of the matrix.

    :param id: the pytest id and the row's key.
    :param title: the row's label in ``docs/reliability.md``.
    :param injected: how the simulator produces it, for the docs.
    :param make: returns a fresh :class:`Scripted` answer.
    :param expect: a regular expression the last error (or last status) must match.
    :param kind: ``transient``, ``malformed``, ``unknown_status`` or ``refused``.
    :param repeats: how many times the fault comes before the simulator recovers.
    """

    id: str
    title: str
    injected: str
    make: Callable[[], Scripted]
    expect: str
    kind: str = "transient"
    repeats: int = 2


def _fixed(step: Step) -> Callable[[], Scripted]:
    return lambda: Scripted(step)


def _retry_after_seconds() -> Scripted:
    return Scripted(
        Reply(429, {"error": "Too many requests"}, {"Retry-After": "1"}),
        retry_not_before=lambda asked_at: asked_at + 1.0,
    )


def _retry_after_date() -> Scripted:
    # HTTP-dates have a resolution of one second: this one is 1 to 2 s ahead.
    when = int(time.time()) + 2
    return Scripted(
        Reply(429, {"error": "Too many requests"}, {"Retry-After": formatdate(when, usegmt=True)}),
        retry_not_before=lambda asked_at: float(when),
    )


#: Seconds the simulator stays silent on a ``Hang``; far longer than any request timeout of the tests.
HANG_SECONDS = 30.0

FAULTS: list[Fault] = [
    Fault(
        "429-retry-after-seconds",
        "HTTP 429, `Retry-After: 1`",
        '`Reply(429, {"error": ...}, {"Retry-After": "1"})`',
        _retry_after_seconds,
        r"HTTP 429 \(rate limit reached\): Too many requests",
        repeats=1,
    ),
    Fault(
        "429-retry-after-http-date",
        "HTTP 429, `Retry-After` as an HTTP-date",
        '`Reply(429, ..., {"Retry-After": formatdate(now + 2)})`',
        _retry_after_date,
        r"HTTP 429 \(rate limit reached\)",
        repeats=1,
    ),
    Fault(
        "500",
        "HTTP 500 with a JSON error",
        '`Reply(500, {"error": "Internal error"})`',
        _fixed(Reply(500, {"error": "Internal error", "request_id": "req-500"})),
        r"HTTP 500 \(server trouble\): Internal error\. \(request_id req-500\)",
    ),
    Fault("502", "HTTP 502, empty body", "`Reply(502)`", _fixed(Reply(502)), r"HTTP 502 \(server trouble\)"),
    Fault(
        "503",
        "HTTP 503, plain text",
        '`Reply(503, "Service Unavailable")`',
        _fixed(Reply(503, "Service Unavailable")),
        r"HTTP 503 \(server trouble\)",
    ),
    Fault(
        "504",
        "HTTP 504, JSON without error text",
        "`Reply(504, {})`",
        _fixed(Reply(504, {})),
        r"HTTP 504 \(server trouble\)",
    ),
    Fault(
        "html-error-page",
        "HTML error page (HTTP 502 from a proxy)",
        '`Reply(502, "<!DOCTYPE html>...", {"Content-Type": "text/html"})`',
        _fixed(Reply(502, HTML_PAGE, {"Content-Type": "text/html"})),
        r"HTTP 502 \(server trouble\)\.",
    ),
    Fault(
        "html-page-200",
        "HTML page with HTTP 200 (captive portal, maintenance page)",
        '`Reply(200, "<!DOCTYPE html>...", {"Content-Type": "text/html"})`',
        _fixed(Reply(200, HTML_PAGE, {"Content-Type": "text/html"})),
        r"HTTP 200 with a body that is not JSON",
        kind="malformed",
    ),
    Fault(
        "empty-200",
        "HTTP 200, empty body",
        '`Reply(200, b"")`',
        _fixed(Reply(200, b"", {"Content-Type": "application/json"})),
        r"HTTP 200 with a body that is not JSON",
        kind="malformed",
    ),
    Fault(
        "truncated-json",
        "HTTP 200, truncated JSON",
        '`Reply(200, \'{"message_id": 1, "status": "deliv\')`',
        _fixed(Reply(200, '{"message_id": 1, "status": "deliv', {"Content-Type": "application/json"})),
        r"HTTP 200 with a body that is not JSON",
        kind="malformed",
    ),
    Fault(
        "json-missing-fields",
        "HTTP 200, JSON without `status`",
        '`Reply(200, {"request_id": "req-1"})`',
        _fixed(Reply(200, {"request_id": "req-missing"})),
        r"malformed status answer \(no status\)",
        kind="malformed",
    ),
    Fault(
        "json-wrong-types",
        "HTTP 200, JSON with wrong types",
        '`Reply(200, {"message_id": [1], "status": {"v": 1}})`',
        _fixed(Reply(200, {"message_id": [1], "status": {"value": "delivered"}, "sent_at": 12})),
        r"malformed status answer",
        kind="malformed",
    ),
    Fault(
        "json-not-an-object",
        "HTTP 200, JSON that is not an object",
        '`Reply(200, ["delivered"])`',
        _fixed(Reply(200, ["delivered"])),
        r"malformed status answer \(expected a JSON object, got list\)",
        kind="malformed",
    ),
    Fault(
        "unknown-status",
        "HTTP 200, unknown status value",
        '`Status("scheduled")`',
        _fixed(Status("scheduled")),
        r"last status 'scheduled'",
        kind="unknown_status",
    ),
    Fault(
        "connection-refused",
        "Connection refused",
        "simulator stopped, then started again on the same port",
        lambda: Scripted(None),
        r"Could not reach Octopods at http://127\.0\.0\.1:\d+: no connection could be opened, so nothing was sent",
        kind="refused",
    ),
    Fault(
        "connection-reset",
        "Connection reset mid-response",
        "`Reset()`: headers and a third of the body, then the TCP connection is aborted",
        _fixed(Reset()),
        r"connection to Octopods broke during GET /api/v1/sms/messages/\d+\.",
    ),
    Fault(
        "read-timeout",
        "Server accepts and never answers",
        f"`Hang({HANG_SECONDS:g})` (the request timeout is the connection extra `timeout`)",
        _fixed(Hang(HANG_SECONDS)),
        r"Octopods did not answer GET /api/v1/sms/messages/\d+ within 0\.3 s",
    ),
    Fault(
        "slow-trickle",
        "Slow trickle (one byte every 20 ms)",
        "`Trickle(interval=0.02)`: a valid answer that would take ~5 s",
        _fixed(Trickle("delivered", interval=0.02)),
        r"did not answer GET /api/v1/sms/messages/\d+ within 0\.3 s",
    ),
]

#: The matrix's columns: the three ways the provider waits.
PATHS: dict[str, str] = {
    "hook": "`OctopodsHook` (sync, retries)",
    "poke": "Sensor, poke mode",
    "trigger": "Trigger (deferrable)",
}
