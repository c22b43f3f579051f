"""Trigger that waits, in the triggerer, until one or many SMS reach a terminal status."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_octopods._http import backoff_delay
from airflow_provider_octopods.exceptions import OctopodsError, OctopodsTransientError
from airflow_provider_octopods.models import SmsStatus, validate_message_id, validate_message_ids

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

#: Seconds before the first poll: the docs say an immediate poll returns ``queued`` or ``sent``.
DEFAULT_INITIAL_DELAY = 5.0
#: Seconds between the first polls ...
DEFAULT_POLL_INTERVAL = 10.0
#: ... growing by this factor after each poll that saw no change ...
DEFAULT_BACKOFF_FACTOR = 1.5
#: ... up to this many seconds.
DEFAULT_MAX_POLL_INTERVAL = 60.0
#: Seconds the last poll, made at the deadline, may take before the wait times out.
DEADLINE_GRACE = 5.0
#: Requests in flight at once for one trigger waiting on many messages.
DEFAULT_MAX_CONCURRENCY = 10
#: A poll that changes no status is logged at INFO only this often (seconds); else at DEBUG, so a
#: triggerer running a thousand waits does not write a line per poll (``benchmarks/``).
STILL_WAITING_LOG_INTERVAL = 600.0


def _as_epoch(value: float | int | str | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


class OctopodsSmsDeliveryTrigger(BaseTrigger):
    """
    Poll Octopods until every message is terminal (``delivered``, ``failed``, ``undelivered``).

    Polls wait ``initial_delay`` first, then ``poll_interval``, growing by ``backoff_factor`` up to
    ``max_poll_interval``. Transient trouble (HTTP 429 or 5xx, unreadable answers, connection
    errors, timeouts) never ends the wait: the next poll backs off exponentially with jitter,
    honouring ``Retry-After``. The deadline ``end_time`` is absolute, so a trigger rebuilt after a
    triggerer restart keeps it; once it passes, the trigger fires a ``timeout`` event naming the
    last status seen. Many messages share one trigger, polled with at most ``max_concurrency``
    requests in flight over one pooled HTTP session. A poll that changes a status is logged at
    INFO; one that changes nothing at DEBUG, with an INFO "still waiting" line every 10 minutes.

    The event's payload is JSON: ``status`` (``done``, ``timeout`` or ``error``), ``message_ids``,
    ``statuses`` (one ``SmsStatus.to_dict()`` or None per id, in input order), ``message`` and, for
    errors, ``error`` (``OctopodsError.to_dict()``).

    :param message_id: the message to wait on (or use ``message_ids``).
    :param octopods_conn_id: the Octopods connection; the key is read from it, never passed here.
    :param poll_interval: seconds between polls at first.
    :param end_time: the deadline, as a UNIX timestamp (or an aware datetime); None waits forever.
    :param message_ids: the messages to wait on, instead of ``message_id``.
    :param initial_delay: seconds before the first poll.
    :param max_poll_interval: the longest wait between polls, and the cap of error backoff.
    :param backoff_factor: how much the interval grows after each poll (1 keeps it fixed).
    :param max_concurrency: requests in flight at once when waiting on many messages.
    """

    def __init__(
        self,
        message_id: int | str | None = None,
        octopods_conn_id: str = "octopods_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        end_time: float | datetime | None = None,
        *,
        message_ids: Sequence[int | str] | None = None,
        initial_delay: float = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        super().__init__()
        if (message_id is None) == (message_ids is None):
            raise ValueError("Pass exactly one of message_id and message_ids.")
        self.message_id = None if message_id is None else validate_message_id(message_id)
        self.message_ids = None if message_ids is None else validate_message_ids(list(message_ids))
        self.octopods_conn_id = octopods_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = _as_epoch(end_time)
        self.initial_delay = float(initial_delay)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.backoff_factor = max(float(backoff_factor), 1.0)
        self.max_concurrency = max(int(max_concurrency), 1)

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
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "message_ids": self.message_ids,
                "initial_delay": self.initial_delay,
                "max_poll_interval": self.max_poll_interval,
                "backoff_factor": self.backoff_factor,
                "max_concurrency": self.max_concurrency,
            },
        )

    def poll_delays(self) -> Iterator[float]:
        """
        Yield the seconds to wait before each poll while polls succeed: this trigger's schedule.

        ``initial_delay``, then ``poll_interval`` growing by ``backoff_factor`` up to
        ``max_poll_interval``. A transient error does not advance it (the error backs off on its
        own); the deadline only shortens a wait. Pure arithmetic, so the cost of a schedule is
        computed without waiting (``benchmarks/poll_schedule.py``).
        """
        yield self.initial_delay
        interval = self.poll_interval
        while True:
            yield interval
            interval = min(interval * self.backoff_factor, self.max_poll_interval)

    def _request_budget(self) -> float | None:
        """
        Seconds one request may take: the time left before the deadline, plus a short grace for
        the last poll at the deadline. So a slow or stalled server never holds the wait past its
        deadline by more than that grace.
        """
        if self.end_time is None:
            return None
        return max(self.end_time - time.time(), 0.0) + min(DEADLINE_GRACE, self.max_poll_interval)

    def _event(self, status: str, last: dict[int, SmsStatus], message: str, **extra: Any) -> TriggerEvent:
        statuses = [last[i].to_dict() if i in last else None for i in self.ids]
        return TriggerEvent(
            {"status": status, "message_ids": self.ids, "statuses": statuses, "message": message, **extra}
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until every message is terminal, the deadline passes or a permanent error occurs."""
        from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

        hook = OctopodsAsyncHook(self.octopods_conn_id)
        limit = asyncio.Semaphore(self.max_concurrency)
        last: dict[int, SmsStatus] = {}
        pending = self.ids
        warned: set[str] = set()
        schedule = self.poll_delays()
        delay = next(schedule)
        failures = 0
        last_error: str | None = None
        said, said_at = "", 0.0

        async def poll(message_id: int) -> SmsStatus | OctopodsError:
            async with limit:
                try:
                    return await hook.get_sms_status(message_id, timeout=self._request_budget())
                except OctopodsError as err:
                    return err

        try:
            while True:
                if self.end_time is not None:
                    delay = min(delay, max(self.end_time - time.time(), 0.0))
                await asyncio.sleep(delay)
                if len(pending) == 1:  # the common case, without a task per request
                    results: list[SmsStatus | OctopodsError] = [await poll(pending[0])]
                else:
                    results = await asyncio.gather(*(poll(i) for i in pending))
                retry_after: float | None = None
                transient = False
                for message_id, result in zip(pending, results, strict=False):
                    if isinstance(result, OctopodsTransientError):
                        transient, last_error = True, str(result)
                        if result.retry_after is not None:
                            retry_after = max(retry_after or 0.0, result.retry_after)
                    elif isinstance(result, OctopodsError):
                        self.log.error("Stopping the wait on SMS %s: %s", message_id, result)
                        yield self._event("error", last, str(result), error=result.to_dict())
                        return
                    else:
                        last[message_id] = result
                        if not result.is_known and result.status not in warned:
                            warned.add(result.status)
                            self.log.warning(
                                "SMS %s has status %r, unknown to this provider; treating it as not "
                                "final and polling on.",
                                message_id,
                                result.status,
                            )
                pending = [i for i in pending if not (i in last and last[i].is_terminal)]
                if not pending:
                    yield self._event("done", last, f"{len(self.ids)} SMS reached a final status.")
                    return
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event(
                        "timeout", last, "deadline passed", pending=pending, last_error=last_error
                    )
                    return
                if transient:
                    failures += 1
                    delay = backoff_delay(failures, retry_after, cap=self.max_poll_interval)
                    self.log.warning("%s Next poll in %.1f s.", last_error, delay)
                else:
                    failures, last_error = 0, None
                    delay = next(schedule)
                    summary = ", ".join(
                        f"{i}: {last[i].status}" if i in last else str(i) for i in pending[:5]
                    )
                    if summary != said or time.monotonic() - said_at >= STILL_WAITING_LOG_INTERVAL:
                        said, said_at = summary, time.monotonic()
                        log = self.log.info
                    else:
                        log = self.log.debug
                    log("Waiting on %d SMS (%s); next poll in %.1f s.", len(pending), summary, delay)
        finally:
            await hook.close()
