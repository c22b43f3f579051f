"""
The fault-injection matrix: every fault of ``faults.py`` against the sync hook, the poke sensor
and the trigger, over real HTTP to the simulator. One test is one cell of ``docs/reliability.md``.

Each cell checks recovery (the fault comes, then the SMS is delivered) and persistence (the fault
never goes away: the wait ends at its deadline with the last error, without a busy loop, a
stalled event loop or a traceback). See the conftest for how the figures are published.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from typing import Any

import pytest

from airflow_provider_octopods.exceptions import OctopodsTimeoutError, OctopodsTransientError
from tests.reliability.faults import FAULTS, PATHS, Fault
from tests.reliability.waits import (
    POLL_INTERVAL,
    REQUEST_TIMEOUT,
    complete,
    hook_status,
    poke_wait,
    trigger_wait,
)

#: The sensor's and the trigger's deadline when the fault persists.
DEADLINE = 0.6
#: Scheduling slack for a busy 2-core machine.
SLACK = 0.35
#: No two requests closer than the smallest backoff (BACKOFF_BASE / 2 = 25 ms), minus clock noise.
MIN_GAP = 0.02
#: The trigger's event loop may run this late at worst (a blocking request would cost 0.3 s).
MAX_LOOP_LAG = 0.2
#: Loggers of the simulator's own server side (not the provider's).
_SERVER_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web")
_SERVER_LINES = tuple(f"[{name}]" for name in _SERVER_LOGGERS)


def status_path(message_id: int) -> str:
    return f"/api/v1/sms/messages/{message_id}"


def request_times(sim: Any, message_id: int) -> list[float]:
    with sim._lock:
        return [r.at for r in sim.requests if r.path == status_path(message_id)]


def min_gap(times: list[float]) -> float | None:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else None


class Logs:
    """
    Everything a test printed: Airflow's structlog loggers write to stdout (``capfd``), plain
    ``logging`` records are in ``caplog`` as well.
    """

    def __init__(self, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self._capfd, self._caplog = capfd, caplog
        self._text = ""

    def clear(self) -> None:
        self.text()
        self._text = ""
        self._caplog.clear()

    def text(self) -> str:
        out, err = self._capfd.readouterr()
        self._text += out + err
        return self._text + self._caplog.text

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if not any(tag in line for tag in _SERVER_LINES)]

    def warnings(self, pattern: str) -> list[str]:
        return [line for line in self.lines() if "warning" in line.lower() and re.search(pattern, line)]

    def assert_no_crash(self) -> None:
        """No traceback, no KeyError/TypeError, no error logged by the provider or the event loop."""
        for line in self.lines():
            assert not re.search(r"Traceback|KeyError|TypeError|AttributeError|\[error|^ERROR", line), line
        for record in self._caplog.records:
            if not record.name.startswith(_SERVER_LOGGERS):
                assert record.exc_info is None, f"{record.name} logged a traceback: {record.getMessage()}"


def script(sim: Any, fault: Fault, *, recover: bool) -> tuple[int, list[Any]]:
    """Add a message that meets ``fault`` (``repeats`` times then delivered, or forever)."""
    scripted = [fault.make() for _ in range(fault.repeats if recover else 1)]
    if fault.kind == "refused":
        return sim.add_message("delivered"), scripted
    steps = [s.step for s in scripted] + (["delivered"] if recover else [])
    return sim.add_message(*steps), scripted


def wait_delivered(path: str, message_id: int) -> dict[str, Any]:
    """Wait on a message that ends up delivered; return its final status as a dict."""
    if path == "hook":
        for _ in range(10):  # an unknown status is returned, not retried: the caller polls on
            status = hook_status(message_id, max_retries=6)
            if status.is_terminal:
                return status.to_dict()
            assert not status.is_known
        raise AssertionError("the hook never returned a final status")
    if path == "poke":
        return poke_wait(message_id, timeout=10)
    run = trigger_wait(message_id, timeout=10)
    assert run.event["status"] == "done", run.event
    assert run.max_lag < MAX_LOOP_LAG
    return complete(message_id, run.event, timeout=10)


def check_recovery(sim: Any, fault: Fault, path: str, logs: Logs) -> None:
    message_id, scripted = script(sim, fault, recover=True)
    if fault.kind == "refused":
        sim.stop()
        threading.Timer(0.25, sim.start).start()

    result = wait_delivered(path, message_id)

    assert result["message_id"] == message_id
    assert result["status"] == "delivered"
    times = request_times(sim, message_id)
    if fault.kind == "refused":
        assert len(times) == 1  # refused attempts never reach the server; the one after the restart does
        assert logs.warnings(fault.expect), "each refused attempt is logged as a warning"
    else:
        assert len(times) == fault.repeats + 1, "one request per fault, then one that gets the status"
    not_before = scripted[0].retry_not_before
    if not_before is not None:
        assert times[1] >= not_before(times[0]) - 0.05, (
            f"asked to wait until {not_before(times[0]) - times[0]:.2f} s, came after "
            f"{times[1] - times[0]:.2f} s"
        )
    if fault.kind == "malformed":
        assert logs.warnings(fault.expect), "a malformed answer is logged as a warning"
    if fault.kind == "unknown_status" and path != "hook":
        assert logs.warnings(r"status 'scheduled', unknown to this provider")
    logs.assert_no_crash()


def check_persistence(
    sim: Any,
    fault: Fault,
    path: str,
    logs: Logs,
    record_property: Any,
) -> None:
    logs.clear()
    message_id, _ = script(sim, fault, recover=False)
    if fault.kind == "refused":
        sim.stop()
    started = time.time()
    lag: float | None = None
    error: BaseException | None = None

    if path == "hook":
        if fault.kind == "unknown_status":
            statuses = []
            for _ in range(3):  # the caller polls on, at its own pace
                statuses.append(hook_status(message_id, max_retries=1))
                time.sleep(POLL_INTERVAL)
            assert [s.status for s in statuses] == ["scheduled"] * 3
            assert not any(s.is_terminal or s.is_known for s in statuses)
        else:
            with pytest.raises(OctopodsTransientError) as raised:
                hook_status(message_id, max_retries=1)
            error = raised.value
        elapsed = time.time() - started
    elif path == "poke":
        with pytest.raises(OctopodsTimeoutError) as timed_out:
            poke_wait(message_id, timeout=DEADLINE)
        error = timed_out.value
        elapsed = time.time() - started
    else:
        run = trigger_wait(message_id, timeout=DEADLINE)
        elapsed = time.time() - started
        assert run.event["status"] == "timeout", run.event
        assert run.event["pending"] == [message_id]
        lag = run.max_lag
        with pytest.raises(OctopodsTimeoutError) as timed_out:
            complete(message_id, run.event, timeout=DEADLINE)
        error = timed_out.value

    if error is not None:
        message = str(error)
        assert re.search(fault.expect, message), f"{message!r} does not match {fault.expect!r}"
        assert "Traceback" not in message
    if path != "hook":
        if fault.kind != "unknown_status":
            assert "Last error: " in message
        assert elapsed >= DEADLINE - 0.05, f"gave up {DEADLINE - elapsed:.2f} s before the deadline"
        limit = DEADLINE + REQUEST_TIMEOUT + POLL_INTERVAL + SLACK
        assert elapsed <= limit, f"ended {elapsed - DEADLINE:.2f} s after the deadline"
    if lag is not None:
        assert lag < MAX_LOOP_LAG, f"the event loop stalled for {lag * 1000:.0f} ms"

    times = request_times(sim, message_id)
    if fault.kind == "refused":
        # Refused attempts never reach the server: count the warnings each one logs (the hook's
        # last attempt is raised, not logged).
        attempts = len(logs.warnings(fault.expect)) + (path == "hook")
        assert not times
    else:
        attempts = len(times)
        # The trigger shortens its last wait to poll once more at the deadline: not a busy loop.
        gap = min_gap(times[:-1] if path == "trigger" else times)
        assert gap is None or gap >= MIN_GAP, f"two requests {gap * 1000:.0f} ms apart: a busy loop"
        record_property("min_gap_s", gap)
    if path == "hook" and fault.kind != "unknown_status":
        assert attempts == 2, "max_retries=1: one request and one retry"
    assert attempts >= 1
    record_property("requests", attempts)
    if path != "hook":  # the hook makes max_retries + 1 requests by construction
        record_property("requests_per_second", attempts / elapsed)
    record_property("past_deadline_s", elapsed - DEADLINE if path != "hook" else elapsed)
    if lag is not None:
        record_property("loop_lag_ms", lag * 1000)
    logs.assert_no_crash()


@pytest.mark.fault_matrix
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, path: str, sim: Any, capfd, caplog, record_property):
    caplog.set_level(logging.INFO)
    logs = Logs(capfd, caplog)
    check_recovery(sim, fault, path, logs)
    check_persistence(sim, fault, path, logs, record_property)
