"""
The wait engine: every rule of waiting on SMS delivery, once, for every mode.

Pure and I/O-free: it never sleeps, calls Octopods or logs. A driver (the trigger's ``run()``,
the sensor's ``poke()``, the operator's in-worker wait) asks :meth:`WaitEngine.sleep_for` how long
to wait, polls :attr:`WaitEngine.pending`, feeds the answers to :meth:`WaitEngine.feed` and acts on
the :class:`Step` it returns: log its lines, then stop with its event or wait ``delay`` seconds.

It owns the poll schedule (initial delay, interval, growth, cap), the pending ids, the last status
seen per id, the unknown-status warnings (once per status), failure count and backoff (honouring
``Retry-After``), the deadline, and the event payload, built (:meth:`WaitEngine.feed`) and read
(:func:`statuses_from_event`) here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from airflow_provider_octopods._http import backoff_delay
from airflow_provider_octopods.exceptions import (
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsInputError,
    OctopodsThrottledError,
    OctopodsTimeoutError,
    OctopodsTransientError,
    error_from_dict,
)
from airflow_provider_octopods.models import SmsStatus, failure_message, parse_timestamp, timeout_message

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: Seconds before the first poll: the docs say an immediate poll returns ``queued`` or ``sent``.
DEFAULT_INITIAL_DELAY = 5.0
#: Seconds between the first polls ...
DEFAULT_POLL_INTERVAL = 10.0
#: ... growing by this factor after each poll that saw no change ...
DEFAULT_BACKOFF_FACTOR = 1.5
#: ... up to this many seconds.
DEFAULT_MAX_POLL_INTERVAL = 60.0
#: Seconds to wait for delivery unless told otherwise: carriers usually confirm within minutes.
DEFAULT_TIMEOUT = 60 * 60.0
#: Seconds the last poll, made at the deadline, may take before the wait times out.
DEADLINE_GRACE = 5.0
#: Requests in flight at once for one trigger waiting on many messages.
DEFAULT_MAX_CONCURRENCY = 10
#: Extra seconds Airflow's own defer timeout allows past ours, so the trigger's clearer timeout wins.
DEFER_TIMEOUT_GRACE = 300.0
#: A poll that changes no status is logged at INFO only this often (seconds); else at DEBUG, so a
#: triggerer running a thousand waits does not write a line per poll (``benchmarks/``).
STILL_WAITING_LOG_INTERVAL = 600.0
#: The event statuses: every message final, the deadline passed, a permanent error.
DONE, TIMEOUT, ERROR = "done", "timeout", "error"


def seconds(value: Any, field: str, *, positive: bool = False) -> float:
    """
    Return a duration in seconds from a number or a :class:`~datetime.timedelta`, or raise clearly.

    :param value: the duration.
    :param field: the argument's name, for the error message.
    :param positive: refuse zero too (an interval of 0 would poll in a busy loop).
    """
    number = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise OctopodsInputError(field, f"got {value!r:.40}; pass seconds as a number or a timedelta.")
    if number < 0 or (positive and number == 0):
        least = "more than 0" if positive else "at least 0"
        raise OctopodsInputError(field, f"got {number:g} s; pass {least} seconds.")
    return float(number)


def deadline(value: Any, field: str = "end_time") -> float | None:
    """
    Return a deadline as a UNIX timestamp, or None for none.

    Accepts a timestamp, a datetime or an ISO 8601 string; a naive one is UTC, as everywhere in
    Airflow.

    :param value: the deadline.
    :param field: the argument's name, for the error message.
    """
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            raise OctopodsInputError(field, f"{value!r:.40} is not an ISO 8601 date and time.")
        return parsed.timestamp()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return seconds(value, field)


@dataclass(frozen=True)
class PollSchedule:
    """
    When to poll while polls succeed: ``initial_delay``, then ``poll_interval`` growing by
    ``backoff_factor`` up to ``max_poll_interval`` (which also caps the backoff after errors).

    Build it with :meth:`of`, which checks and normalises the values.
    """

    initial_delay: float = DEFAULT_INITIAL_DELAY
    poll_interval: float = DEFAULT_POLL_INTERVAL
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL

    @classmethod
    def of(
        cls,
        initial_delay: Any = DEFAULT_INITIAL_DELAY,
        poll_interval: Any = DEFAULT_POLL_INTERVAL,
        backoff_factor: Any = DEFAULT_BACKOFF_FACTOR,
        max_poll_interval: Any = DEFAULT_MAX_POLL_INTERVAL,
        interval_field: str = "poll_interval",
    ) -> PollSchedule:
        """
        Return the schedule of these arguments (numbers of seconds or timedeltas).

        An interval of 0 is refused (it would poll in a busy loop); the cap is at least the
        interval and the factor at least 1.

        :param initial_delay: seconds before the first poll.
        :param poll_interval: seconds between the first polls.
        :param backoff_factor: growth of the interval after each poll.
        :param max_poll_interval: the longest interval, and the cap of error backoff.
        :param interval_field: the name the caller gives ``poll_interval``, for errors.
        """
        interval = seconds(poll_interval, interval_field, positive=True)
        factor = seconds(backoff_factor, "backoff_factor")
        return cls(
            initial_delay=seconds(initial_delay, "initial_delay"),
            poll_interval=interval,
            backoff_factor=max(factor, 1.0),
            max_poll_interval=max(seconds(max_poll_interval, "max_poll_interval"), interval),
        )

    def as_kwargs(self) -> dict[str, Any]:
        """Return the schedule as keyword arguments of :meth:`of` and of the trigger (seconds, JSON-safe)."""
        return asdict(self)

    def delays(self) -> Iterator[float]:
        """Yield the seconds to wait before each poll while polls succeed (pure arithmetic)."""
        yield self.initial_delay
        interval = self.poll_interval
        while True:
            yield interval
            interval = min(interval * self.backoff_factor, self.max_poll_interval)


class _FromSchedule:
    """
    A read-only attribute of a :class:`ScheduledWait`: the value of the same name in its ``schedule``.

    Each such attribute is documented by the string after its assignment, as any attribute.
    """

    name: str

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, holder: None, owner: type) -> _FromSchedule: ...
    @overload
    def __get__(self, holder: ScheduledWait, owner: type | None = None) -> float: ...
    def __get__(self, holder: ScheduledWait | None, owner: type | None = None) -> _FromSchedule | float:
        return self if holder is None else getattr(holder.schedule, self.name)

    def __set__(self, holder: ScheduledWait, value: Any) -> None:
        raise AttributeError(f"{self.name} is read-only: it is part of the wait's schedule.")


class ScheduledWait:
    """The values of a :class:`PollSchedule` held in ``schedule``, as attributes of its holder."""

    schedule: PollSchedule

    initial_delay = _FromSchedule()
    """Seconds before the first poll."""
    poll_interval = _FromSchedule()
    """Seconds between the first polls."""
    backoff_factor = _FromSchedule()
    """Growth of the interval after each poll."""
    max_poll_interval = _FromSchedule()
    """The longest interval, and the cap of error backoff."""


#: A log line: level, format, arguments.
LogLine = tuple[int, str, tuple[Any, ...]]


@dataclass
class Step:
    """
    What to do after a poll: log ``logs``, then finish with ``event`` or wait ``delay`` seconds.

    :param delay: seconds until the next poll (when ``event`` is None).
    :param event: the final event payload, or None to poll again.
    :param logs: lines to log, in order.
    """

    delay: float = 0.0
    event: dict[str, Any] | None = None
    logs: list[LogLine] = field(default_factory=list)

    def emit(self, log: Any) -> None:
        """Log the step's lines through ``log`` (a logging or Airflow task logger: ``log.log(level, ...)``)."""
        for level, text, args in self.logs:
            log.log(level, text, *args)


class WaitEngine:
    """
    The state of one wait on one or many messages, and every decision about it.

    :param message_ids: the ids to wait on, validated, in input order.
    :param schedule: when to poll.
    :param end_time: the deadline (UNIX time), or None to wait until every message is final.
    """

    def __init__(
        self, message_ids: Sequence[int], schedule: PollSchedule, end_time: float | None = None
    ) -> None:
        self.message_ids = list(message_ids)
        self.schedule = schedule
        self.end_time = end_time
        self.pending = list(self.message_ids)
        self.last: dict[int, SmsStatus] = {}
        self.failures = 0
        self.last_error: str | None = None
        self.backoff_until = -math.inf
        self._warned: set[str] = set()
        self._delays = schedule.delays()
        self._delay = next(self._delays)
        self._said, self._said_at = "", -math.inf

    def sleep_for(self, now: float) -> float:
        """Return the seconds to wait before the next poll; the deadline only shortens it."""
        if self.end_time is None:
            return self._delay
        return min(self._delay, max(self.end_time - now, 0.0))

    def is_backing_off(self, now: float) -> bool:
        """Whether a poll made now would cut the backoff after trouble (for drivers that do not sleep)."""
        return now < self.backoff_until

    def request_budget(self, now: float) -> float | None:
        """
        Seconds one request may take: the time left, plus a short grace for the poll at the
        deadline; so a stalled server never holds the wait much past it. None: no deadline.
        """
        if self.end_time is None:
            return None
        return max(self.end_time - now, 0.0) + min(DEADLINE_GRACE, self.schedule.max_poll_interval)

    def feed(self, results: Sequence[SmsStatus | OctopodsError], now: float) -> Step:
        """
        Take the answers to a poll of :attr:`pending` (same order) and return what to do next.

        :param results: a status or the error of each pending id.
        :param now: the current UNIX time.
        """
        step = Step()
        retry_after: float | None = None
        transient = False
        for message_id, result in zip(self.pending, results, strict=False):
            if isinstance(result, OctopodsTransientError):
                transient = True
                if not (isinstance(result, OctopodsThrottledError) and self.last_error):
                    self.last_error = str(result)  # local throttling does not hide Octopods' own error
                if result.retry_after is not None:
                    retry_after = max(retry_after or 0.0, result.retry_after)
            elif isinstance(result, OctopodsError):
                step.logs.append((logging.ERROR, "Stopping the wait on SMS %s: %s", (message_id, result)))
                step.event = self._event(ERROR, str(result), error=result.to_dict())
                return step
            else:
                self._record(message_id, result, step)
        self.pending = [i for i in self.pending if not (i in self.last and self.last[i].is_terminal)]
        if not self.pending:
            step.event = self._event(DONE, f"{len(self.message_ids)} SMS reached a final status.")
        elif self.end_time is not None and now >= self.end_time:
            step.event = self._event(
                TIMEOUT, "deadline passed", pending=self.pending, last_error=self.last_error
            )
        elif transient:
            self.failures += 1
            step.delay = backoff_delay(self.failures, retry_after, cap=self.schedule.max_poll_interval)
            self.backoff_until = now + step.delay
            step.logs.append((logging.WARNING, "%s Next poll in %.1f s.", (self.last_error, step.delay)))
        else:
            self.failures, self.last_error, self.backoff_until = 0, None, -math.inf
            step.delay = next(self._delays)
            self._still_waiting(step, now)
        self._delay = step.delay
        return step

    def _record(self, message_id: int, status: SmsStatus, step: Step) -> None:
        self.last[message_id] = status
        if not status.is_known and status.status not in self._warned:
            self._warned.add(status.status)
            step.logs.append(
                (
                    logging.WARNING,
                    "SMS %s has status %r, unknown to this provider; treating it as not final and polling on.",
                    (message_id, status.status),
                )
            )

    def _still_waiting(self, step: Step, now: float) -> None:
        """Log the wait at INFO when a status changed (or every so often), else at DEBUG."""
        summary = ", ".join(
            f"{i}: {self.last[i].status}" if i in self.last else str(i) for i in self.pending[:5]
        )
        level = logging.DEBUG
        if summary != self._said or now - self._said_at >= STILL_WAITING_LOG_INTERVAL:
            self._said, self._said_at, level = summary, now, logging.INFO
        step.logs.append(
            (level, "Waiting on %d SMS (%s); next poll in %.1f s.", (len(self.pending), summary, step.delay))
        )

    def crashed(self, err: BaseException) -> dict[str, Any]:
        """Return the error event of an unexpected exception in a driver (never lose the wait)."""
        error = OctopodsError(f"The wait on SMS {self._ids_text()} stopped on an unexpected error: {err!r}")
        return self._event(ERROR, str(error), error=error.to_dict())

    def _ids_text(self) -> str:
        shown = ", ".join(str(i) for i in self.message_ids[:5])
        return shown + (f" and {len(self.message_ids) - 5} more" if len(self.message_ids) > 5 else "")

    def _event(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        statuses = [self.last[i].to_dict() if i in self.last else None for i in self.message_ids]
        return {
            "status": status,
            "message_ids": self.message_ids,
            "statuses": statuses,
            "message": message,
            **extra,
        }


def statuses_from_event(event: dict[str, Any] | None, timeout: float | None) -> list[SmsStatus]:
    """
    Return the final statuses a wait event reports, or raise its error.

    Reads events of every version of this provider; shared by every task that waits, so they all
    finish alike.

    :param event: the event payload.
    :param timeout: the wait's timeout in seconds, named in the timeout error.
    :return: one terminal status per message id, in input order.
    """
    if not event:
        raise OctopodsError("The Octopods trigger ended without an event.")
    ids = [int(i) for i in event.get("message_ids", [])]
    last = {
        i: SmsStatus.from_dict(s)
        for i, s in zip(ids, event.get("statuses", []), strict=False)
        if s is not None
    }
    status = event.get("status")
    if status == DONE:
        return [last[i] for i in ids]
    if status == TIMEOUT:
        raise OctopodsTimeoutError(
            timeout_message(event.get("pending", ids), last, timeout, event.get("last_error"))
        )
    if status == ERROR:
        raise error_from_dict(event.get("error") or {"message": event.get("message")})
    raise OctopodsError(f"The Octopods trigger sent an event this provider does not know: {status!r}.")


def require_delivered(statuses: Sequence[SmsStatus], log: Any) -> list[dict[str, Any]]:
    """
    Raise :class:`OctopodsDeliveryError` if any SMS was not delivered; else return the statuses as dicts.

    :param statuses: terminal statuses.
    :param log: the task's logger, to log each delivery.
    """
    failure = failure_message(statuses)
    if failure:
        raise OctopodsDeliveryError(failure)
    for status in statuses:
        log.info("SMS %s delivered at %s.", status.message_id, status.delivered_at)
    return [s.to_dict() for s in statuses]
