"""
The wait for delivery: the trigger that polls in the triggerer, and the engine every mode shares.

:class:`WaitEngine` holds every rule of waiting on delivery, once, for every mode and channel; it is
I/O-free: it never sleeps, calls Octopods or logs. A driver (the trigger's ``run()``, the
sensor's ``poke()``, the operator's in-worker wait, which runs the trigger) asks
:meth:`WaitEngine.sleep_for` how long to wait, polls :attr:`WaitEngine.pending`, feeds the answers
to :meth:`WaitEngine.feed` and acts on the :class:`Step` it returns: log its lines, then stop with
its event or wait ``delay`` seconds. It owns the poll schedule, the pending ids, the last status
seen per id, the unknown-status warnings (once per status), failure count and backoff (honouring
``Retry-After``), the deadline, and the event payload, built (:meth:`WaitEngine.feed`) and read
(:func:`statuses_from_event`) here.

This module is imported when a DAG file is parsed (by the sensor and the operator): it imports
the hooks (``requests``, ``aiohttp``) only when a trigger runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, overload

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_octopods.exceptions import (
    OctopodsBadRequestError,
    OctopodsDeliveryError,
    OctopodsError,
    OctopodsThrottledError,
    OctopodsTimeoutError,
    OctopodsTransientError,
    error_from_dict,
)
from airflow_provider_octopods.models import (
    CHANNELS,
    DELETED,
    DELIVERED,
    SMS,
    WHATSAPP,
    Channel,
    MessageStatus,
    deadline,
    failure_message,
    parse_count,
    parse_wait_for,
    reached,
    seconds,
    timeout_message,
    validate_message_id,
    validate_message_ids,
)
from airflow_provider_octopods.utils.budget import retry_delay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence
    from types import ModuleType

    from airflow.providers.common.compat.sdk import BaseOperator

    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

__all__ = [
    "OctopodsDeliveryTrigger",
    "OctopodsSmsDeliveryTrigger",
    "OctopodsWhatsAppDeliveryTrigger",
    "WaitEngine",
    "defer_wait",
]

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
#: A wait on several messages logs its progress (counts, rate, time left) at most this often (seconds).
HEARTBEAT_INTERVAL = 60.0
#: After a list that held none of the pending messages, the list is asked again after this many rounds.
LIST_RETRY_ROUNDS = 5
#: The event statuses: every message final, the deadline passed, a permanent error.
DONE, TIMEOUT, ERROR = "done", "timeout", "error"


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
    :param wait_for: ``delivered`` or ``read`` (:func:`~airflow_provider_octopods.models.reached`).
    :param channel: the channel of the messages.
    :param fail_fast: end the wait at the first message that fails, without waiting for the others.
    """

    def __init__(
        self,
        message_ids: Sequence[int],
        schedule: PollSchedule,
        end_time: float | None = None,
        wait_for: str = DELIVERED,
        channel: Channel = SMS,
        fail_fast: bool = False,
    ) -> None:
        self.message_ids = list(message_ids)
        self.schedule = schedule
        self.end_time = end_time
        self.wait_for = wait_for
        self.channel = channel
        self.fail_fast = fail_fast
        self._started: float | None = None
        self._skip_list = 0
        self.pending = list(self.message_ids)
        self.last: dict[int, MessageStatus] = {}
        self.failures = 0
        self.last_error: str | None = None
        self.backoff_until = -math.inf
        self._warned: set[str] = set()
        self._delays = schedule.delays()
        self._delay = next(self._delays)
        self._said, self._said_at = "", -math.inf

    def wants_list(self, now: float | None = None) -> bool:
        """
        Whether this round asks the channel's list first: it lists, more than one message waits,
        it is not the round at the deadline (which asks by id, so a timeout names when each message
        was delivered), and the list found some of them lately (it holds only the newest 100 sends
        of the key: in a busy workspace it may hold none of these; then it is asked again only
        every :data:`LIST_RETRY_ROUNDS` rounds).

        :param now: the current UNIX time.
        """
        at_deadline = self.end_time is not None and now is not None and now >= self.end_time
        if not self.channel.listable or len(self.pending) < 2 or at_deadline:
            return False
        self._skip_list = max(self._skip_list - 1, 0)
        return self._skip_list == 0

    def listed(self, found: int) -> None:
        """Note how many pending messages the round's list answered (none: skip it for a while)."""
        self._skip_list = LIST_RETRY_ROUNDS if found == 0 else 0

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

    def feed(
        self,
        results: Sequence[MessageStatus | OctopodsError] | Mapping[int, MessageStatus | OctopodsError],
        now: float,
    ) -> Step:
        """
        Take the answers to a poll of :attr:`pending` and return what to do next.

        :param results: a status or the error of each pending id: in the order of :attr:`pending`
            (a prefix of it when a poll stopped early), or by id (ids left out were not polled).
        :param now: the current UNIX time.
        """
        step = Step()
        retry_after: float | None = None
        transient = False
        self._started = now if self._started is None else self._started
        answered = (
            [(i, results[i]) for i in self.pending if i in results]
            if isinstance(results, Mapping)
            else zip(self.pending, results, strict=False)
        )
        for message_id, result in answered:
            if isinstance(result, OctopodsTransientError):
                transient = True
                if not (isinstance(result, OctopodsThrottledError) and self.last_error):
                    self.last_error = str(result)  # local throttling does not hide Octopods' own error
                if result.retry_after is not None:
                    retry_after = max(retry_after or 0.0, result.retry_after)
            elif isinstance(result, OctopodsError):
                step.logs.append(
                    (logging.ERROR, "Stopping the wait on %s %s: %s", (self.channel.noun, message_id, result))
                )
                step.event = self._event(ERROR, str(result), error=result.to_dict())
                return step
            else:
                self._record(message_id, result, step)
        failed_now = self.fail_fast and any(
            reached(self.last[i], self.wait_for) is False for i in self.pending if i in self.last
        )
        self.pending = [
            i for i in self.pending if i not in self.last or reached(self.last[i], self.wait_for) is None
        ]
        if failed_now and self.pending:
            step.event = self._event(DONE, "stopped at the first failure (fail_fast)", pending=self.pending)
        elif not self.pending:
            step.event = self._event(
                DONE, f"{self.channel.count(len(self.message_ids))} reached a final status."
            )
        elif self.end_time is not None and now >= self.end_time:
            step.event = self._event(
                TIMEOUT, "deadline passed", pending=self.pending, last_error=self.last_error
            )
        elif transient:
            self.failures += 1
            step.delay = retry_delay(self.failures, retry_after, cap=self.schedule.max_poll_interval)
            self.backoff_until = now + step.delay
            step.logs.append((logging.WARNING, "%s Next poll in %.1f s.", (self.last_error, step.delay)))
        else:
            self.failures, self.last_error, self.backoff_until = 0, None, -math.inf
            step.delay = next(self._delays)
            self._still_waiting(step, now)
        self._delay = step.delay
        return step

    def _record(self, message_id: int, status: MessageStatus, step: Step) -> None:
        before = self.last.get(message_id)
        self.last[message_id] = status
        if reached(status, self.wait_for) is False and (
            before is None or reached(before, self.wait_for) is None
        ):
            to = f" to {status.phone_number}" if status.phone_number else ""
            why = status.failure_reason or f"status '{status.status}'"
            step.logs.append((logging.WARNING, "%s%s failed: %s", (status.noun, to, why)))
        if not status.is_known and status.status not in self._warned:
            self._warned.add(status.status)
            step.logs.append(
                (
                    logging.WARNING,
                    "%s has status %r, unknown to this provider; treating it as not final and polling on.",
                    (status.noun, status.status),
                )
            )

    def _still_waiting(self, step: Step, now: float) -> None:
        """Log the wait at INFO when a status changed (or every so often), else at DEBUG."""
        if len(self.message_ids) > 1:
            self._heartbeat(step, now)
            return
        summary = ", ".join(
            f"{i}: {self.last[i].status}" if i in self.last else str(i) for i in self.pending[:5]
        )
        level = logging.DEBUG
        if summary != self._said or now - self._said_at >= STILL_WAITING_LOG_INTERVAL:
            self._said, self._said_at, level = summary, now, logging.INFO
        step.logs.append(
            (
                level,
                "Waiting on %s (%s); next poll in %.1f s.",
                (self.channel.count(len(self.pending)), summary, step.delay),
            )
        )

    def _heartbeat(self, step: Step, now: float) -> None:
        """A wait on several messages: their counts, the rate and the time left, at INFO at most once a minute."""
        level = logging.DEBUG
        if now - self._said_at >= HEARTBEAT_INTERVAL:
            self._said_at, level = now, logging.INFO
        final = [self.last[i] for i in self.message_ids if i not in self.pending]
        ok = sum(1 for s in final if reached(s, self.wait_for))
        rate = len(final) / max(now - (now if self._started is None else self._started), 1.0)
        seconds_left = max(self.end_time - now, 0) if self.end_time else None
        left = (
            "no deadline"
            if seconds_left is None
            else f"{seconds_left:.0f} s left"
            if seconds_left < 120
            else f"{seconds_left / 60:.0f} min left"
        )
        step.logs.append(
            (
                level,
                "Waiting on %d of %d %s: %d %s, %d failed; %.1f final/s; %s; next poll in %.1f s.",
                (
                    len(self.pending),
                    len(self.message_ids),
                    self.channel.plural,
                    ok,
                    self.wait_for,
                    len(final) - ok,
                    rate,
                    left,
                    step.delay,
                ),
            )
        )

    def crashed(self, err: BaseException) -> dict[str, Any]:
        """Return the error event of an unexpected exception in a driver (never lose the wait)."""
        error = OctopodsError(
            f"The wait on {self.channel.plural} {self._ids_text()} stopped on an unexpected error: {err!r}"
        )
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
            "channel": self.channel.name,
            "wait_for": self.wait_for,
            **extra,
        }


def statuses_from_event(event: dict[str, Any] | None, timeout: float | None) -> list[MessageStatus]:
    """
    Return the final statuses a wait event reports, or raise its error.

    Reads events of every version of this provider; shared by every task that waits, so they all
    finish alike.

    :param event: the event payload.
    :param timeout: the wait's timeout in seconds, named in the timeout error.
    :return: one terminal status per message id, in input order.
    """
    ids, last = event_statuses(event)
    event = event or {}  # event_statuses refused an empty one
    status = event["status"]
    if status == DONE and event.get("pending"):  # fail_fast: a message failed, the others were not awaited
        failure = (
            failure_message(list(last.values()), event.get("wait_for", DELIVERED)) or "A message failed."
        )
        raise OctopodsDeliveryError(
            f"{failure}\nStopped at the first failure (fail_fast): {len(event['pending'])} other message(s) "
            "were still waiting and were not waited for."
        )
    if status == DONE:
        return [last[i] for i in ids]
    if status == TIMEOUT:
        channel = CHANNELS.get(str(event.get("channel")), SMS)
        raise OctopodsTimeoutError(
            timeout_message(
                event.get("pending", ids),
                last,
                timeout,
                event.get("last_error"),
                event.get("wait_for", DELIVERED),
                channel.noun,
            )
        )
    raise OctopodsError(f"The Octopods trigger sent an event this provider does not know: {status!r}.")


def event_statuses(event: dict[str, Any] | None) -> tuple[list[int], dict[int, MessageStatus]]:
    """
    Return the ids a wait event covers and the last status seen of each, or raise its error.

    A bulk send reads its report from this: a timed-out or fail-fast wait is no error there.

    :param event: the event payload.
    """
    if not event:
        raise OctopodsError("The Octopods trigger ended without an event.")
    if event.get("status") == ERROR:
        raise error_from_dict(event.get("error") or {"message": event.get("message")})
    ids = [int(i) for i in event.get("message_ids", [])]
    statuses = zip(ids, event.get("statuses", []), strict=False)
    return ids, {i: MessageStatus.from_dict(s) for i, s in statuses if s is not None}


def require_delivered(
    statuses: Sequence[MessageStatus], log: Any, wait_for: str = DELIVERED
) -> list[dict[str, Any]]:
    """
    Raise :class:`OctopodsDeliveryError` if any message did not reach ``wait_for``; else return them as dicts.

    :param statuses: final statuses.
    :param log: the task's logger, to log each delivery.
    :param wait_for: ``delivered`` or ``read``.
    """
    failure = failure_message(statuses, wait_for)
    if failure:
        raise OctopodsDeliveryError(failure)
    for status in statuses:
        when = status.read_at if wait_for != DELIVERED else status.delivered_at
        log.info("%s %s at %s.", status.noun, status.status, when or "a time Octopods did not report")
    return [s.to_dict() for s in statuses]


def listed_results(
    pending: Sequence[int], listing: dict[int, MessageStatus] | OctopodsError, wait_for: str = DELIVERED
) -> tuple[dict[int, MessageStatus | OctopodsError], list[int], int]:
    """
    Split a round of a batch wait: what the list answered, the ids to ask one by one, and how many it held.

    The one rule of reading a list, for the trigger and the sensor alike. The list says which
    messages are still waiting: a message is resolved only by an item with its own id, and only
    while it is not final for ``wait_for``. A message the list shows as final (delivered, read,
    deleted, failed) is asked for by id once, since a list item has no ``delivered_at``,
    ``read_at`` or ``status_message``: the result is the same as a wait on that message alone.
    A list Octopods refused (e.g. a 400 "no messages sent yet") or answered unreadably (a 2xx too
    large or malformed) answers nothing: every id is asked for by id. Any other failed list (a 429,
    a 5xx, a rejected key) is the result of every id, so the wait backs off or stops as for any poll.

    :param pending: the ids polled this round.
    :param listing: the list's statuses by id, or the error of the list call.
    :param wait_for: what the wait waits for.
    """
    unreadable = isinstance(listing, OctopodsTransientError) and 200 <= (listing.status_code or 0) < 300
    if isinstance(listing, OctopodsBadRequestError) or unreadable:
        listing = {}
    if isinstance(listing, OctopodsError):
        return dict.fromkeys(pending, listing), [], len(pending)
    held = [i for i in pending if i in listing]
    found: dict[int, MessageStatus | OctopodsError] = {
        i: listing[i] for i in held if reached(listing[i], wait_for) is None and listing[i].status != DELETED
    }
    return found, [i for i in pending if i not in found], len(held)


class OctopodsDeliveryTrigger(ScheduledWait, BaseTrigger):
    """
    Poll Octopods until every message of :attr:`channel` is final for ``wait_for``.

    Final means :func:`~airflow_provider_octopods.models.reached` decides: ``delivered`` (or
    ``read``, ``deleted``), or a failure; with ``wait_for="read"``, ``read`` (``delivered`` polls on).
    A wait on several messages of a channel that lists its sends (WhatsApp) asks the list first
    each round and polls by id only the messages not in it (:func:`listed_results`).

    Polls wait ``initial_delay`` first, then ``poll_interval``, growing by ``backoff_factor`` up to
    ``max_poll_interval``. Transient trouble (HTTP 429 or 5xx, unreadable answers, connection
    errors, timeouts) never ends the wait: the next poll backs off exponentially with jitter,
    honouring ``Retry-After``. The deadline ``end_time`` is absolute, so a trigger rebuilt after a
    triggerer restart keeps it; once it passes, the trigger fires a ``timeout`` event naming the
    last status seen. Many messages share one trigger, polled with at most ``max_concurrency``
    requests in flight over one pooled HTTP session. A poll that changes a status is logged at
    INFO; one that changes nothing at DEBUG, with an INFO "still waiting" line every 10 minutes.

    The event's payload is JSON: ``status`` (``done``, ``timeout`` or ``error``), ``message_ids``,
    ``statuses`` (one ``MessageStatus.to_dict()`` or None per id, in input order), ``message`` and, for
    errors, ``error`` (``OctopodsError.to_dict()``); :mod:`airflow_provider_octopods._wait` builds
    and reads it. An unexpected exception in the wait ends it with an ``error`` event too, never a
    crash of the trigger.

    :param message_id: the message to wait on (or use ``message_ids``).
    :param octopods_conn_id: the Octopods connection; the key is read from it, never passed here.
    :param poll_interval: seconds (or a timedelta) between polls at first; more than 0.
    :param end_time: the deadline, as a UNIX timestamp, a datetime or an ISO 8601 string (naive
        means UTC); None waits forever.
    :param message_ids: the messages to wait on, instead of ``message_id``.
    :param initial_delay: seconds (or a timedelta) before the first poll.
    :param max_poll_interval: the longest wait between polls, and the cap of error backoff (seconds
        or a timedelta).
    :param backoff_factor: how much the interval grows after each poll (1 keeps it fixed).
    :param max_concurrency: requests in flight at once when waiting on many messages.
    :param wait_for: ``delivered`` or ``read``.
    :param fail_fast: end the wait at the first message that fails, without waiting for the others.
    """

    #: The channel of the messages: a subclass names it (the trigger's kwargs never hold it).
    channel: ClassVar[Channel] = SMS

    def __init__(
        self,
        message_id: int | str | None = None,
        octopods_conn_id: str | None = None,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        end_time: float | datetime | str | None = None,
        *,
        message_ids: Sequence[int | str] | None = None,
        initial_delay: float | timedelta = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float | timedelta = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        wait_for: str = DELIVERED,
        fail_fast: bool = False,
    ) -> None:
        super().__init__()
        if (message_id is None) == (message_ids is None):
            raise ValueError("Pass exactly one of message_id and message_ids.")
        self.message_id = (
            None if message_id is None else validate_message_id(message_id, channel=self.channel)
        )
        self.message_ids = (
            None if message_ids is None else validate_message_ids(message_ids, channel=self.channel)
        )
        self.wait_for = parse_wait_for(wait_for)
        self.fail_fast = bool(fail_fast)
        self.octopods_conn_id = octopods_conn_id or self.channel.conn_id
        self.schedule = PollSchedule.of(initial_delay, poll_interval, backoff_factor, max_poll_interval)
        self.end_time = deadline(end_time)
        self.max_concurrency = parse_count(max_concurrency, "max_concurrency")
        self._engine: WaitEngine | None = None  # the running wait's, set by run()

    @property
    def ids(self) -> list[int]:
        """The ids waited on, in input order."""
        return [self.message_id] if self.message_id is not None else list(self.message_ids or [])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and JSON kwargs that rebuild this trigger (no key, no secrets)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "message_id": self.message_id,
                "octopods_conn_id": self.octopods_conn_id,
                "end_time": self.end_time,
                "message_ids": self.message_ids,
                "max_concurrency": self.max_concurrency,
                "wait_for": self.wait_for,
                **({"fail_fast": True} if self.fail_fast else {}),
                **self.schedule.as_kwargs(),
            },
        )

    def poll_delays(self) -> Iterator[float]:
        """
        Yield the seconds to wait before each poll while polls succeed: this trigger's schedule.

        A transient error does not advance it (the error backs off on its own); the deadline only
        shortens a wait. Pure arithmetic (``benchmarks/poll_schedule.py``).
        """
        return self.schedule.delays()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until every message is terminal, the deadline passes or a permanent error occurs."""
        hooks = await _hooks_module()
        engine = self._engine = WaitEngine(
            self.ids, self.schedule, self.end_time, self.wait_for, self.channel, self.fail_fast
        )
        hook: OctopodsAsyncHook = hooks.OctopodsAsyncHook(self.octopods_conn_id)
        try:
            while (event := await self._round(hook, engine)) is None:
                pass
            yield TriggerEvent(event)
        except Exception as err:  # never crash the triggerer's view of the wait: report it
            self.log.exception(
                "The wait on %s %s stopped on an unexpected error.", self.channel.plural, self.ids
            )
            yield TriggerEvent(engine.crashed(err))
        finally:
            await hook.close()

    async def _round(self, hook: OctopodsAsyncHook, engine: WaitEngine) -> dict[str, Any] | None:
        """
        Sleep, poll, take the answers; return the event that ends the wait, or None.

        A function of its own so that a round's answers, its step and its log lines are gone
        while the wait sleeps, not kept in ``run``'s frame: thousands of sleeping waits hold
        fewer objects for the garbage collector to walk.
        """
        await asyncio.sleep(engine.sleep_for(time.time()))
        results = await self._poll(hook, engine.pending, engine.request_budget(time.time()))
        step = engine.feed(results, time.time())
        step.emit(self.log)
        return step.event

    async def _poll(
        self, hook: OctopodsAsyncHook, ids: list[int], budget: float | None
    ) -> list[MessageStatus | OctopodsError]:
        """Ask for each id's status (the list first, where it helps), at most ``max_concurrency`` at once."""
        if len(ids) == 1:  # the common case: one request, no task, no list
            return [await self._status(hook, ids[0], budget)]
        return await self._poll_many(hook, ids, budget)

    async def _poll_many(
        self, hook: OctopodsAsyncHook, ids: list[int], budget: float | None
    ) -> list[MessageStatus | OctopodsError]:
        """
        :meth:`_poll` of several ids. A function of its own: its comprehensions make cells of its
        variables in every call, objects a single wait's poll does not need to hold.
        """
        found: dict[int, MessageStatus | OctopodsError] = {}
        rest = ids
        engine = self._engine or WaitEngine(ids, self.schedule, channel=self.channel)
        if engine.wants_list(time.time()):
            try:
                listing: dict[int, MessageStatus] | OctopodsError = await hook.list_messages(
                    self.channel, budget
                )
            except OctopodsError as err:
                listing = err
            found, rest, held = listed_results(ids, listing, self.wait_for)
            engine.listed(held)
        limit = asyncio.Semaphore(self.max_concurrency)
        answers = await asyncio.gather(*(self._status(hook, i, budget, limit) for i in rest))
        found.update(zip(rest, answers, strict=True))
        return [found[i] for i in ids]

    async def _status(
        self,
        hook: OctopodsAsyncHook,
        message_id: int,
        budget: float | None,
        limit: asyncio.Semaphore | None = None,
    ) -> MessageStatus | OctopodsError:
        """
        Ask for one message's status (within ``limit``); an error is returned, for the engine to weigh.

        A method, not a closure in :meth:`_poll`: a closure's variables become cells in every
        call of the function that defines it, objects each waiting poll would hold.
        """
        if limit is not None:
            async with limit:
                return await self._status(hook, message_id, budget)
        try:
            return await hook.get_message_status(message_id, budget, self.channel)
        except OctopodsError as err:
            return err


class OctopodsSmsDeliveryTrigger(OctopodsDeliveryTrigger):
    """
    Poll Octopods until every SMS is final (``delivered``, ``read``, ``failed``, ``undelivered``).

    Arguments as for :class:`OctopodsDeliveryTrigger`; the connection defaults to ``octopods_default``.
    """

    channel = SMS


class OctopodsWhatsAppDeliveryTrigger(OctopodsDeliveryTrigger):
    """
    Poll Octopods until every WhatsApp message is final for ``wait_for`` (``delivered`` or ``read``).

    Arguments as for :class:`OctopodsDeliveryTrigger`; the connection defaults to
    ``octopods_whatsapp_default``. A wait on several messages reads the list of the newest 100
    sends once per round.
    """

    channel = WHATSAPP


#: The trigger of each channel, by the channel's name.
DELIVERY_TRIGGERS: dict[str, type[OctopodsDeliveryTrigger]] = {
    SMS.name: OctopodsSmsDeliveryTrigger,
    WHATSAPP.name: OctopodsWhatsAppDeliveryTrigger,
}


def defer_wait(
    task: BaseOperator,
    trigger: OctopodsDeliveryTrigger,
    timeout: float,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """
    Defer ``task`` to ``trigger``, resuming in ``execute_complete``; Airflow's own defer timeout
    allows a grace past ``timeout`` so the trigger's clearer timeout event wins.

    :param task: the deferring operator.
    :param trigger: the wait.
    :param timeout: the wait's timeout in seconds.
    :param kwargs: keyword arguments passed on to ``execute_complete``.
    """
    task.defer(
        trigger=trigger,
        method_name="execute_complete",
        kwargs=kwargs,
        timeout=timedelta(seconds=timeout + DEFER_TIMEOUT_GRACE),
    )


_hooks: ModuleType | None = None


def _import_hooks() -> ModuleType:
    from airflow_provider_octopods.hooks import octopods

    return octopods


async def _hooks_module() -> ModuleType:
    """
    Return the hooks module, imported in a thread the first time.

    The first trigger (or deadline alert) of a process imports the hooks (``requests``,
    ``aiohttp``, the HTTP provider) in a thread, so the triggerer's event loop never stalls on it;
    later ones take the module as it is, without a thread hop each.
    """
    global _hooks
    if _hooks is None:
        _hooks = await asyncio.to_thread(_import_hooks)
    return _hooks
