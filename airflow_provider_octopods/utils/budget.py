"""
When a request may go: one request budget per Octopods key in each event loop, coalesced status
polls, and the delay before the next try (backoff and ``Retry-After``) of every caller.

Octopods limits requests per API key and answers HTTP 429 past the limit. A triggerer running
thousands of waits on one key would, with each wait backing off on its own, ask far more than
the limit and see every wait back off and come back together. Instead, every request to one base
URL with one key, on one event loop, draws from one token bucket (:class:`RequestBudget`):

- its rate is the connection's ``max_requests_per_second`` extra when set;
- unset, the budget is *adaptive*: knowing no limit, it starts at :data:`ADAPTIVE_START_RATE`
  and doubles every second while requests queue (a slow start, as TCP's); on a 429 it drops to
  :data:`ADAPTIVE_DECREASE` times the rate it was really sending at (requests let through in the
  last second), then grows back by :data:`ADAPTIVE_INCREASE` requests/s per second while
  requests are queueing (AIMD, as TCP does);
- a 429's ``Retry-After`` stops the whole group: nobody sends before it passes;
- requests wait in one FIFO queue and are let through ``1 / rate`` seconds apart (a few at once
  only at high rates: :data:`BURST_SECONDS`),
  so polls due at the same moment are spread rather than sent in a burst. A waiter is a future
  (no task), the queue has one timer armed at a time, and each request costs O(1).

Two callers asking the status of the same message (same base URL and key) while a request for it
is queued or in flight share that request's answer or error (:func:`coalesce`); a later call makes
a new request.

The key is never stored: groups are told apart by an HMAC of base URL and key under a random
per-process secret. Budgets live in a ``WeakKeyDictionary`` keyed by event loop and hold no
reference to their loop while idle, so a closed loop and its budgets are garbage collected.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import random
import weakref
from collections import deque
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_octopods.exceptions import OctopodsInputError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable

T = TypeVar("T")

#: An adaptive budget never goes below this many requests per second ...
ADAPTIVE_MIN_RATE = 0.2
#: ... nor above this many.
ADAPTIVE_MAX_RATE = 10_000.0
#: Requests per second an adaptive budget (no ``max_requests_per_second``) starts at, doubling every
#: second while requests queue until the first 429. Unthrottled, a fresh triggerer sent a burst
#: (as many requests as aiohttp had connections) before the first 429 came back: 1.3-1.7% of the
#: requests of ``benchmarks/request_budget.py`` were refused (0.12% from 200/s); a start at 10/s
#: grown by 1/s per second held a fresh triggerer far below the key's limit for minutes, one at
#: 50/s doubling still cost ``benchmarks/triggerer_scale.py`` a poll per wait at N = 5,000.
ADAPTIVE_START_RATE = 200.0
#: On a 429, an adaptive budget's rate becomes this times the rate it was sending at (the
#: requests let through in the last second, or its rate if lower).
ADAPTIVE_DECREASE = 0.5
#: While requests queue without a 429, an adaptive budget grows by this many requests/s per second.
ADAPTIVE_INCREASE = 1.0
#: The bucket holds the requests its rate earns in this many seconds, and at least one: a
#: budget of 45/s spaces every request 22 ms apart, one of 1,000/s lets bursts of 20 through,
#: which spares a timer per request when the key is far from any limit.
BURST_SECONDS = 0.02
#: Seconds the whole group pauses after a 429 that came without ``Retry-After``.
DEFAULT_429_PAUSE = 1.0
#: The connection extra that fixes the budget's rate.
RATE_EXTRA = "max_requests_per_second"

#: Transient errors back off exponentially from this many seconds ...
BACKOFF_BASE = 1.0
#: ... up to this cap, which also bounds a server's ``Retry-After``.
BACKOFF_CAP = 60.0

_SECRET = os.urandom(32)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """
    Return the seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), capped.

    :param value: the header's value.
    :param now: the current time, for HTTP-dates (tests pass it).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), BACKOFF_CAP)


def retry_delay(attempt: int, retry_after: float | None = None, cap: float = BACKOFF_CAP) -> float:
    """
    Return how long to wait before try number ``attempt + 1``: the one backoff rule of the provider.

    Exponential backoff with "equal jitter" (half fixed, half random), capped at ``cap``; never
    shorter than what the server asked for with ``Retry-After`` (capped at :data:`BACKOFF_CAP`).

    :param attempt: how many attempts in a row have failed.
    :param retry_after: seconds from the server's ``Retry-After``, if any.
    :param cap: the longest wait.
    """
    # The exponent stops growing long after the cap is reached: 2 ** 1024 is too large for a float.
    exp = min(cap, BACKOFF_BASE * (2 ** min(max(attempt - 1, 0), 64)))
    delay = exp / 2 + random.uniform(0, exp / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP))
    return delay


def group_id(base_url: str, key: str) -> str:
    """
    Return the id of the group of requests to ``base_url`` with ``key``: a keyed hash, not the key.

    :param base_url: the API's scheme, host and port.
    :param key: the Channel API key.
    """
    return hmac.new(_SECRET, f"{base_url}\n{key}".encode(), hashlib.sha256).hexdigest()


def read_rate(extra: dict[str, Any], label: str) -> float | None:
    """
    Read the ``max_requests_per_second`` extra of a connection: a number above 0, or None (adaptive).

    :param extra: the connection's extras.
    :param label: the connection, as ``_http.connection_label`` names it (``connection 'x'``).
    """
    raw = extra.get(RATE_EXTRA)
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, bool):
            raise TypeError(raw)
        rate = float(raw)
    except (TypeError, ValueError, OverflowError):
        rate = math.nan
    if not 0 < rate < math.inf:  # also refuses NaN
        raise OctopodsInputError(
            f"extra '{RATE_EXTRA}' of {label}",
            f"{raw!r:.20} is not a rate; give requests per second above 0 (e.g. 45 for a limit of 50), "
            "or leave it out to adapt to Octopods' 429 answers.",
        )
    return rate


class RequestBudget:
    """
    A token bucket shared by every request of one group (base URL and key) on one event loop.

    Use :meth:`run` around one request, or :meth:`acquire` before it and :meth:`on_answer` after.
    The bucket holds what the rate earns in :data:`BURST_SECONDS` (at least one token), so
    requests are spaced ``1 / rate`` seconds apart, in bursts of a few only at high rates.

    :param base_url: the API's base URL (shown in ``repr``; the key is never held).
    :param rate: requests per second, or None for an adaptive rate.
    """

    def __init__(self, base_url: str, rate: float | None = None) -> None:
        self.base_url = base_url
        self.fixed_rate = rate
        self.rate = rate if rate is not None else ADAPTIVE_START_RATE
        self._tokens = 1.0
        self._refilled = -math.inf
        self.blocked_until = -math.inf
        self._decreased_at = -math.inf
        self._grown_at: float | None = None
        #: When the requests of the last second were let through (what an adaptive rate halves).
        self._recent: deque[float] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._abandoned = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Requests let through, and 429 answers seen (for benchmarks and logs).
        self.granted = 0
        self.throttled = 0

    def __repr__(self) -> str:
        mode = f"{self.fixed_rate:g}/s" if self.fixed_rate is not None else f"adaptive, now {self.rate:.3g}/s"
        return f"RequestBudget(base_url={self.base_url!r}, rate={mode}, waiting={self.waiting})"

    @property
    def waiting(self) -> int:
        """How many requests are queued for a slot."""
        return len(self._waiters) - self._abandoned

    def configure(self, rate: float | None) -> None:
        """
        Apply a (possibly edited) connection's rate: a number fixes it, None makes it adaptive.

        :param rate: requests per second, or None.
        """
        if rate == self.fixed_rate:
            return
        if rate is not None:
            self.rate = rate
        elif self.fixed_rate is not None:
            self.rate = min(self.fixed_rate, ADAPTIVE_START_RATE)
        self.fixed_rate = rate

    def _take(self, now: float) -> bool:
        """Refill the bucket up to ``now`` and take a token if one is there and no pause is on."""
        self._tokens = min(
            max(1.0, self.rate * BURST_SECONDS), self._tokens + (now - self._refilled) * self.rate
        )
        self._refilled = now
        if now < self.blocked_until or self._tokens < 1.0 - 1e-9:
            return False
        self._tokens -= 1.0
        self.granted += 1
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - 1.0:
            recent.popleft()
        return True

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the one timer for when the head of the queue may go (if anyone waits)."""
        if self._timer is not None or not self.waiting:
            return
        when = max(self.blocked_until, self._refilled + (1.0 - self._tokens) / self.rate)
        self._timer = loop.call_at(when, self._wake, loop, when)

    def _rearm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._arm(loop)

    def _wake(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """
        Let the head of the queue through (skipping cancelled waiters), then re-arm.

        The grant counts from when the timer was due, not from when the loop got to it, so a
        late loop does not slow the budget down; lateness past one interval is not made up, so a
        stalled loop is not followed by a burst.
        """
        self._timer = None
        now = max(when, self._refilled, loop.time() - 1.0 / self.rate)
        while self._waiters:
            head = self._waiters[0]
            if head.gone or head.future.done():  # cancelled while waiting
                self._waiters.popleft()
                self._abandoned -= head.gone
                head.gone = True
                continue
            if not self._take(now):
                break
            self._waiters.popleft()
            head.future.set_result(None)
        self._arm(loop)

    def _abandon(self, waiter: _Waiter) -> None:
        """Count a cancelled waiter; compact the queue once they are half of it (amortised O(1))."""
        if waiter.gone:  # already dropped from the queue
            return
        waiter.gone = True
        self._abandoned += 1
        if self._abandoned * 2 >= len(self._waiters):
            self._waiters = deque(w for w in self._waiters if not w.gone)
            self._abandoned = 0
            if not self._waiters and self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def acquire(self, timeout: float | None = None) -> float:
        """
        Wait for this group's next slot (FIFO) and return the loop time it was granted at.

        A free slot is taken at once, without yielding to the event loop; a queued caller awaits
        a future (no task is made, even with a ``timeout``: a timer fails the future).

        :param timeout: seconds to wait at most; past them, leave the queue and raise
            :class:`TimeoutError`.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self.waiting and self._take(now):
            return now
        waiter = _Waiter(loop.create_future())
        self._waiters.append(waiter)
        self._arm(loop)
        expiry = None if timeout is None else loop.call_at(now + timeout, _expire, waiter.future)
        try:
            await waiter.future
        except (asyncio.CancelledError, TimeoutError):
            if not waiter.future.done() or waiter.future.cancelled() or waiter.future.exception():
                self._abandon(waiter)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        return loop.time()

    def _sending_rate(self, now: float) -> float:
        """
        The rate an adaptive decrease halves: the lower of the budget's rate and what it let through.

        Requests let through in the last second tell the rate really sent at (a fresh budget's
        nominal rate is far above it); a second that held a pause does not, so then the budget's
        own rate is halved, as plain AIMD does.
        """
        if now - 1.0 < self.blocked_until:
            return self.rate
        sent = sum(1 for granted in self._recent if granted > now - 1.0)
        return min(self.rate, max(sent, 1))

    def on_answer(
        self, status_code: int | None, retry_after: float | None = None, sent_at: float | None = None
    ) -> None:
        """
        Learn from one answer: a 429 pauses the group and (adaptive) halves the rate it was sending at.

        :param status_code: the answer's HTTP status (None when no answer arrived).
        :param retry_after: seconds from the answer's ``Retry-After``, if any.
        :param sent_at: what :meth:`acquire` returned for this request; a 429 to a request let
            through before the last decrease does not decrease again.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if status_code == 429:
            self.throttled += 1
            if self.fixed_rate is None and (sent_at is None or sent_at > self._decreased_at):
                self.rate = max(ADAPTIVE_MIN_RATE, self._sending_rate(now) * ADAPTIVE_DECREASE)
                self._decreased_at = now
            pause = retry_after if retry_after is not None and retry_after > 0 else DEFAULT_429_PAUSE
            self.blocked_until = max(self.blocked_until, now + pause)
            self._tokens, self._refilled = 0.0, now
            self._rearm(loop)
        elif self.fixed_rate is None and status_code is not None:
            if self.waiting and self._grown_at is not None:  # grow only while demand exceeds the rate
                grown = min(now - self._grown_at, 1.0)
                if self._decreased_at == -math.inf:  # no 429 yet: slow start
                    self.rate = min(ADAPTIVE_MAX_RATE, self.rate * 2**grown)
                else:
                    self.rate = min(ADAPTIVE_MAX_RATE, self.rate + ADAPTIVE_INCREASE * grown)
            self._grown_at = now

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """
        Wait for a slot, make one request with ``call()`` and learn from its outcome.

        An exception carrying ``status_code`` (as ``OctopodsApiError`` does) and ``retry_after``
        is an answer; any other is no answer.

        :param call: makes the request when called.
        """
        sent_at = await self.acquire()
        try:
            result = await call()
        except Exception as err:
            status = getattr(err, "status_code", None)
            self.on_answer(
                status if isinstance(status, int) else None, getattr(err, "retry_after", None), sent_at
            )
            raise
        self.on_answer(200, None, sent_at)
        return result


def _expire(future: asyncio.Future[None]) -> None:
    """Fail a queued caller's future when its time to wait is up (unless it was let through)."""
    if not future.done():
        future.set_exception(TimeoutError())


class _Waiter:
    """One queued request: the future it awaits, and whether it left the queue's count."""

    __slots__ = ("future", "gone")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.gone = False


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RequestBudget]] = (
    weakref.WeakKeyDictionary()
)
_in_flight: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Hashable, list[asyncio.Future[Any]]]
] = weakref.WeakKeyDictionary()


def request_budget(base_url: str, key: str, rate: float | None = None) -> RequestBudget:
    """
    Return the budget of ``base_url`` and ``key`` on the running event loop, set to ``rate``.

    :param base_url: the API's base URL.
    :param key: the Channel API key (hashed, never kept).
    :param rate: the connection's ``max_requests_per_second``, or None for adaptive.
    """
    return group_budget(group_id(base_url, key), base_url, rate)


def group_budget(group: str, base_url: str, rate: float | None = None) -> RequestBudget:
    """
    Return the budget of the group ``group`` (a :func:`group_id`) on the running event loop.

    :param group: what :func:`group_id` returned for the base URL and key.
    :param base_url: the API's base URL (for the budget's ``repr``).
    :param rate: the connection's ``max_requests_per_second``, or None for adaptive.
    """
    loop = asyncio.get_running_loop()
    budgets = _budgets.get(loop)  # get first: setdefault makes a weak reference on every call
    if budgets is None:
        budgets = _budgets[loop] = {}
    budget = budgets.get(group)
    if budget is None:
        budget = budgets[group] = RequestBudget(base_url, rate)
    else:
        budget.configure(rate)
    return budget


class _LeaderGone(Exception):
    """The caller making a shared request was cancelled; a follower makes it instead."""


def _give_up(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def coalesce(
    name: Hashable, call: Callable[..., Awaitable[T]], *args: Any, until: float | None = None
) -> T:
    """
    Share one request among concurrent callers with the same ``name``.

    The first caller (the leader) makes the request itself; callers with the same name that
    arrive before it ends (followers) each await a future the leader fills with its result or
    error, so sharing costs no task. The leader then yields once, so every caller resumes in the
    same loop iteration and their next polls stay in step. A follower cancelled while waiting
    leaves the others alone; if the leader is cancelled, one follower makes the request instead.
    A follower waits until its own ``until`` at most (the leader's limit may be longer), then
    raises ``TimeoutError``. Nothing is cached after the request ends.

    :param name: what identifies the request, e.g. ``(group_id(...), message_id)``.
    :param call: makes the request when called with ``args`` (no closure: a poll waiting in the
        budget holds fewer objects).
    :param args: the arguments of ``call``.
    :param until: when (``loop.time()``) a follower stops waiting; None: when the leader ends.
    """
    loop = asyncio.get_running_loop()
    running = _in_flight.get(loop)
    if running is None:
        running = _in_flight[loop] = {}
    followers = running.get(name)
    if followers is not None:
        mine: asyncio.Future[T] = loop.create_future()
        followers.append(mine)
        timer = None if until is None else loop.call_at(until, _give_up, mine)
        try:
            return await mine
        except _LeaderGone:
            return await coalesce(name, call, *args, until=until)
        finally:
            if timer is not None:
                timer.cancel()
    followers = running[name] = []
    try:
        result = await call(*args)
    except BaseException as err:
        del running[name]
        shared = err if isinstance(err, Exception) else _LeaderGone()  # cancelled: a follower takes over
        for waiter in followers:
            if not waiter.done():
                waiter.set_exception(shared)
        raise
    del running[name]
    for waiter in followers:
        if not waiter.done():
            waiter.set_result(result)
    if followers:
        await asyncio.sleep(0)
    return result
