"""Trigger that waits, in the triggerer, until one or many SMS reach a terminal status."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_octopods._lazy import hooks_module
from airflow_provider_octopods._wait import (
    DEADLINE_GRACE,
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    DEFER_TIMEOUT_GRACE,
    STILL_WAITING_LOG_INTERVAL,
    PollSchedule,
    ScheduledWait,
    WaitEngine,
    deadline,
)
from airflow_provider_octopods.exceptions import OctopodsError
from airflow_provider_octopods.models import SmsStatus, validate_message_id, validate_message_ids

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from airflow.providers.common.compat.sdk import BaseOperator

    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

__all__ = [
    "DEADLINE_GRACE",
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_POLL_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "STILL_WAITING_LOG_INTERVAL",
    "OctopodsSmsDeliveryTrigger",
    "defer_wait",
]


class OctopodsSmsDeliveryTrigger(ScheduledWait, BaseTrigger):
    """
    Poll Octopods until every message is final (``delivered``, ``read``, ``failed``, ``undelivered``).

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
    """

    def __init__(
        self,
        message_id: int | str | None = None,
        octopods_conn_id: str = "octopods_default",
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        end_time: float | datetime | str | None = None,
        *,
        message_ids: Sequence[int | str] | None = None,
        initial_delay: float | timedelta = DEFAULT_INITIAL_DELAY,
        max_poll_interval: float | timedelta = DEFAULT_MAX_POLL_INTERVAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        super().__init__()
        if (message_id is None) == (message_ids is None):
            raise ValueError("Pass exactly one of message_id and message_ids.")
        self.message_id = None if message_id is None else validate_message_id(message_id)
        self.message_ids = None if message_ids is None else validate_message_ids(message_ids)
        self.octopods_conn_id = octopods_conn_id
        self.schedule = PollSchedule.of(initial_delay, poll_interval, backoff_factor, max_poll_interval)
        self.end_time = deadline(end_time)
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
                "end_time": self.end_time,
                "message_ids": self.message_ids,
                "max_concurrency": self.max_concurrency,
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
        hooks = await hooks_module()
        engine = WaitEngine(self.ids, self.schedule, self.end_time)
        hook: OctopodsAsyncHook = hooks.OctopodsAsyncHook(self.octopods_conn_id)
        try:
            while True:
                await asyncio.sleep(engine.sleep_for(time.time()))
                results = await self._poll(hook, engine.pending, engine.request_budget(time.time()))
                step = engine.feed(results, time.time())
                step.emit(self.log)
                if step.event is not None:
                    yield TriggerEvent(step.event)
                    return
        except Exception as err:  # never crash the triggerer's view of the wait: report it
            self.log.exception("The wait on SMS %s stopped on an unexpected error.", self.ids)
            yield TriggerEvent(engine.crashed(err))
        finally:
            await hook.close()

    async def _poll(
        self, hook: OctopodsAsyncHook, ids: list[int], budget: float | None
    ) -> list[SmsStatus | OctopodsError]:
        """Ask for each id's status, at most ``max_concurrency`` at once; errors are returned."""

        async def poll(message_id: int) -> SmsStatus | OctopodsError:
            try:
                return await hook.get_sms_status(message_id, timeout=budget)
            except OctopodsError as err:
                return err

        if len(ids) == 1:  # the common case, without a task per request
            return [await poll(ids[0])]
        limit = asyncio.Semaphore(self.max_concurrency)

        async def limited(message_id: int) -> SmsStatus | OctopodsError:
            async with limit:
                return await poll(message_id)

        return list(await asyncio.gather(*(limited(i) for i in ids)))


def defer_wait(
    task: BaseOperator,
    trigger: OctopodsSmsDeliveryTrigger,
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
