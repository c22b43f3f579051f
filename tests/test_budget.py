"""
The request budget per key (``utils/budget.py``), coalesced polls, and the simulator's rate limit.

The bucket's arithmetic runs on an event loop with a virtual clock (:class:`VirtualClockLoop`):
time jumps to the next timer instead of passing, so rates are counted over simulated seconds,
never timed. Coalescing and the rate limit run against the real simulator.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import selectors
import time
import urllib.error
import urllib.request
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods.exceptions import OctopodsInputError, OctopodsTransientError, Sent
from airflow_provider_octopods.testing import OctopodsSimulator, Reply
from airflow_provider_octopods.utils import budget as _budget
from airflow_provider_octopods.utils.budget import (
    ADAPTIVE_DECREASE,
    ADAPTIVE_INCREASE,
    ADAPTIVE_START_RATE,
    RequestBudget,
    coalesce,
    group_id,
    read_rate,
    request_budget,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

KEY = "budget-test-key-do-not-leak-9f8e7d"


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that, when nothing is ready, advances the loop's clock instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self.clock += timeout
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` only moves when it would otherwise wait for a timer."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.clock


def virtual_run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` on a fresh :class:`VirtualClockLoop` (close it after)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def _grants(budget: RequestBudget, n: int) -> list[float]:
    """Queue ``n`` requests at once; return the (virtual) times they were let through, in order."""
    loop = asyncio.get_running_loop()
    order: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await budget.acquire()
        order.append((i, loop.time()))

    await asyncio.gather(*(one(i) for i in range(n)))
    assert [i for i, _ in order] == list(range(n)), "not first come, first served"
    return [t for _, t in order]


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_fixed_rate_spreads_a_burst_first_come_first_served() -> None:
    async def main() -> list[float]:
        return await _grants(request_budget("https://api.test", KEY, 45.0), 2000)

    times = virtual_run(main)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / 45)  # spread: never two at once
    assert max(gaps) == pytest.approx(1 / 45)
    assert times[-1] - times[0] == pytest.approx(1999 / 45)
    assert _max_in_window(times) <= 46  # under a limit of 50 per sliding second, with room


def test_one_budget_per_base_url_and_key_on_a_loop() -> None:
    async def main() -> None:
        a = request_budget("https://api.test", KEY, 5.0)
        assert request_budget("https://api.test", KEY, 5.0) is a
        assert request_budget("https://api.test", KEY + "x", 5.0) is not a
        assert request_budget("https://other.test", KEY, 5.0) is not a
        # An edited connection changes the rate of the running budget.
        assert request_budget("https://api.test", KEY, 9.0) is a and a.rate == 9.0
        assert request_budget("https://api.test", KEY, None) is a and a.fixed_rate is None

    virtual_run(main)


def test_retry_after_pauses_the_whole_group_and_a_fixed_rate_stays() -> None:
    async def main() -> tuple[list[float], RequestBudget]:
        budget = RequestBudget("https://api.test", 10.0)
        loop = asyncio.get_running_loop()
        sent = await budget.acquire()
        waiting = asyncio.ensure_future(_grants(budget, 20))
        await asyncio.sleep(0)
        budget.on_answer(429, 7.5, sent)
        paused_at = loop.time()
        times = await waiting
        return [t - paused_at for t in times], budget

    times, budget = virtual_run(main)
    assert min(times) >= 7.5  # nobody sent before Retry-After passed ...
    assert times[0] == pytest.approx(7.5)
    assert times[1] - times[0] == pytest.approx(0.1)  # ... then at the fixed rate again
    assert budget.rate == 10.0 and budget.throttled == 1


def test_adaptive_starts_slow_then_halves_what_it_was_sending_once_per_burst() -> None:
    async def main() -> tuple[RequestBudget, float, list[float]]:
        budget = RequestBudget("https://api.test")
        loop = asyncio.get_running_loop()
        assert budget.rate == ADAPTIVE_START_RATE
        # Knowing no limit, a fresh budget doubles its rate every second while requests queue and
        # succeed (a slow start): 600 requests wanted at once go out faster than at its start rate.
        start = loop.time()
        await asyncio.gather(*(budget.run(lambda: asyncio.sleep(0)) for _ in range(600)))
        ramp = loop.time() - start
        assert budget.rate > 2 * ADAPTIVE_START_RATE
        # Three requests in flight together all get 429: one decrease, to half of what it was
        # really sending in the last second (not half of its nominal rate), not three decreases.
        sent = [await budget.acquire() for _ in range(3)]
        sending = budget._sending_rate(loop.time())
        for at in sent:
            budget.on_answer(429, None, at)
        assert budget.rate == sending * ADAPTIVE_DECREASE
        # A 429 to a request let through after the decrease (and its pause) decreases again,
        # halving the rate (the second just past held a pause: it says nothing of the demand).
        before = budget.rate
        budget.on_answer(429, None, await budget.acquire())
        low = budget.rate
        assert low == before * ADAPTIVE_DECREASE
        # After a 429, while requests queue and succeed, the rate grows by ADAPTIVE_INCREASE per second.
        rates: list[float] = []

        async def request() -> None:
            await budget.run(lambda: asyncio.sleep(0))
            rates.append(budget.rate)

        await asyncio.gather(*(request() for _ in range(200)))
        return budget, ramp, [low, *rates]

    budget, ramp, rates = virtual_run(main)
    assert ramp < 0.7 * 600 / ADAPTIVE_START_RATE  # doubling: 1.6 s for 600 requests at 200/s, not 3
    assert rates == sorted(rates)  # only ever up without a 429
    assert rates[0] + ADAPTIVE_INCREASE < budget.rate < rates[0] * 1.5  # growing linearly now, not doubling


def test_adaptive_rate_follows_the_demand_not_its_ceiling() -> None:
    """Two requests a second that meet a 429 leave a budget of one a second, not of 500."""

    async def main() -> float:
        budget = RequestBudget("https://api.test")
        for _ in range(3):
            await budget.acquire()
            await asyncio.sleep(0.5)
        budget.on_answer(429, None, await budget.acquire())
        return budget.rate

    assert virtual_run(main) == 2 * ADAPTIVE_DECREASE


def test_adaptive_recovery_is_about_one_request_per_second_per_second() -> None:
    async def main() -> tuple[float, float, float]:
        budget = RequestBudget("https://api.test")
        loop = asyncio.get_running_loop()
        sent = [await budget.acquire() for _ in range(20)]
        budget.on_answer(429, None, sent[-1])  # down to half of the 20/s it was sending
        await asyncio.sleep(2)  # the 429's pause
        start_rate, start = budget.rate, loop.time()
        await asyncio.gather(*(budget.run(lambda: asyncio.sleep(0)) for _ in range(300)))
        return start_rate, budget.rate, loop.time() - start

    start_rate, end_rate, elapsed = virtual_run(main)
    assert start_rate == 20 * ADAPTIVE_DECREASE
    assert end_rate - start_rate == pytest.approx(ADAPTIVE_INCREASE * elapsed, rel=0.1)


def test_error_without_an_answer_does_not_change_the_rate() -> None:
    async def main() -> RequestBudget:
        budget = RequestBudget("https://api.test")

        async def refused() -> None:
            raise OctopodsTransientError("no connection", sent=Sent.NO)

        with pytest.raises(OctopodsTransientError):
            await budget.run(refused)

        async def throttled() -> None:
            raise OctopodsTransientError("429", status_code=429, retry_after=2.0)

        with pytest.raises(OctopodsTransientError):
            await budget.run(throttled)
        return budget

    budget = virtual_run(main)
    # One 429, which halves the rate it was sending at: two requests in the last second.
    assert budget.throttled == 1 and budget.rate == 2 * ADAPTIVE_DECREASE


def test_cancelled_waiters_leave_the_queue_and_others_keep_their_turn() -> None:
    async def main() -> tuple[list[int], RequestBudget]:
        budget = RequestBudget("https://api.test", 1.0)
        await budget.acquire()
        served: list[int] = []

        async def one(i: int) -> None:
            await budget.acquire()
            served.append(i)

        tasks = [asyncio.ensure_future(one(i)) for i in range(10)]
        await asyncio.sleep(0)
        for i in (0, 3, 4, 5, 6, 7):
            tasks[i].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return served, budget

    served, budget = virtual_run(main)
    assert served == [1, 2, 8, 9]
    assert budget.waiting == 0 and budget._timer is None


@pytest.mark.parametrize("timeout", [None, 600.0])
def test_thousands_of_waiters_cost_no_task_and_one_timer_each_at_most(timeout: float | None) -> None:
    async def main() -> tuple[int, int]:
        budget = RequestBudget("https://api.test", 45.0)  # a bucket of one: every waiter queues
        await budget.acquire()
        waiters = [asyncio.ensure_future(budget.acquire(timeout)) for _ in range(5000)]
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        timers = sum(1 for h in loop._scheduled if not h.cancelled())  # type: ignore[attr-defined]
        tasks = len(asyncio.all_tasks())
        await asyncio.gather(*waiters)
        return timers, tasks

    timers, tasks = virtual_run(main)
    # The queue's one timer, plus each waiter's expiry when it has a time limit.
    assert timers == 1 + (5000 if timeout is not None else 0)
    assert tasks == 5001  # the 5,000 callers and main: the budget adds none


def test_a_waiter_whose_time_is_up_leaves_the_queue_and_the_next_keeps_its_turn() -> None:
    async def main() -> tuple[float, list[float], RequestBudget]:
        budget = RequestBudget("https://api.test", 1.0)
        loop = asyncio.get_running_loop()
        start = await budget.acquire()
        impatient = asyncio.ensure_future(budget.acquire(0.5))
        patient = asyncio.ensure_future(budget.acquire())
        with pytest.raises(TimeoutError):
            await impatient
        gave_up = loop.time() - start
        return gave_up, [await patient - start], budget

    gave_up, served, budget = virtual_run(main)
    assert gave_up == pytest.approx(0.5)
    assert served == [pytest.approx(1.0)]  # the slot the impatient one left went to the next
    assert budget.waiting == 0 and budget._timer is None


@pytest.mark.parametrize(("rate", "at_once"), [(45.0, 1), (100.0, 2), (1000.0, 20)])
def test_the_bucket_holds_what_the_rate_earns_in_the_burst_window(rate: float, at_once: int) -> None:
    async def main() -> list[float]:
        budget = RequestBudget("https://api.test", rate)
        await asyncio.sleep(1)  # a full bucket
        loop = asyncio.get_running_loop()
        start = loop.time()
        return [await budget.acquire() - start for _ in range(at_once + 3)]

    times = virtual_run(main)
    assert at_once == max(1, int(rate * _budget.BURST_SECONDS))
    assert times[:at_once] == [0.0] * at_once  # a burst of what the bucket held ...
    gaps = [b - a for a, b in itertools.pairwise(times[at_once - 1 :])]
    assert gaps == [pytest.approx(1 / rate)] * 3  # ... then spaced at the rate


def test_key_never_in_repr_or_state() -> None:
    async def main() -> RequestBudget:
        budget = request_budget("https://api.test", KEY, None)
        await budget.acquire()
        return budget

    budget = virtual_run(main)
    assert KEY not in repr(budget) and "https://api.test" in repr(budget)
    assert KEY not in repr(vars(budget))
    assert group_id("https://api.test", KEY) != group_id("https://api.test", KEY + "1")
    assert KEY not in group_id("https://api.test", KEY)
    for groups in list(_budget._budgets.values()):
        assert all(KEY not in name for name in groups)


def test_closed_loops_and_their_budgets_are_collected() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        budget = request_budget("https://api.test", KEY, 1000.0)
        await asyncio.gather(*(budget.acquire() for _ in range(5)))
        await coalesce(("x", 1), lambda: asyncio.sleep(0))
        # Some still waiting when asyncio.run ends: cancelled, they must not pin the loop.
        budget.configure(0.01)
        left = [asyncio.ensure_future(budget.acquire()) for _ in range(5)]
        left.append(asyncio.ensure_future(coalesce(("x", 2), lambda: asyncio.sleep(10))))
        await asyncio.sleep(0)
        assert budget.waiting >= 4 and not left[-1].done()

    gc.collect()
    before = (len(_budget._budgets), len(_budget._in_flight))  # loops of other tests Airflow may hold
    for _ in range(20):
        asyncio.run(main())
    gc.collect()
    assert [ref() for ref in loops] == [None] * 20
    assert len(_budget._budgets) <= before[0] and len(_budget._in_flight) <= before[1]


@pytest.mark.parametrize("raw", [0, -1, "abc", True, float("nan"), float("inf"), [45]])
def test_bad_rate_names_the_extra_and_the_fix(raw: Any) -> None:
    with pytest.raises(OctopodsInputError) as caught:
        read_rate({"max_requests_per_second": raw}, "connection 'octopods_default'")
    assert caught.value.field == "extra 'max_requests_per_second' of connection 'octopods_default'"
    assert "requests per second above 0" in str(caught.value)


def test_rate_is_read_with_the_connection_settings() -> None:
    from airflow.models.connection import Connection

    from airflow_provider_octopods.hooks.octopods import connection_settings

    def conn(extra: dict[str, Any]) -> Connection:
        # The settings now carry the key too: a connection without one is refused before its extras.
        return Connection(
            conn_id="c", conn_type="octopods", host="https://x.test", password=KEY, extra=json.dumps(extra)
        )

    assert connection_settings(conn({})).max_requests_per_second is None
    assert connection_settings(conn({"max_requests_per_second": "45"})).max_requests_per_second == 45.0
    assert connection_settings(conn({"max_requests_per_second": 2.5})).max_requests_per_second == 2.5
    with pytest.raises(OctopodsInputError, match="max_requests_per_second"):
        connection_settings(conn({"max_requests_per_second": 0}))


# -- against the simulator ----------------------------------------------------------------


async def test_concurrent_polls_of_one_message_share_one_request(octopods_conn: OctopodsSimulator) -> None:
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    message = octopods_conn.add_message("sent", "delivered")
    path = f"/api/v1/sms/messages/{message}"
    hooks = [OctopodsAsyncHook() for _ in range(5)]
    try:
        first = await asyncio.gather(*(h.get_sms_status(message) for h in hooks))
        assert octopods_conn.request_count(path) == 1
        assert {s.status for s in first} == {"sent"}
        # A later call is a new request (nothing cached), and sees the new status.
        later = await hooks[0].get_sms_status(message)
        assert later.status == "delivered" and octopods_conn.request_count(path) == 2
        # An error is shared too.
        octopods_conn.inject(Reply(503, {"error": "down"}))
        errors = await asyncio.gather(*(h.get_sms_status(message) for h in hooks), return_exceptions=True)
        assert all(isinstance(e, OctopodsTransientError) and e.status_code == 503 for e in errors)
        assert octopods_conn.request_count(path) == 3
        # Different messages are not merged.
        other = octopods_conn.add_message("delivered")
        await asyncio.gather(hooks[0].get_sms_status(message), hooks[1].get_sms_status(other))
        assert octopods_conn.request_count() == 5
        # Again, concurrently: again one request for all.
        await asyncio.gather(*(h.get_sms_status(message) for h in hooks))
        assert octopods_conn.request_count() == 6
    finally:
        for hook in hooks:
            await hook.close()


class _GatedRequest:
    """A request that counts its calls, says when one started and answers once released."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return f"answer {self.calls}"

    async def leader_and_followers(
        self, followers: int
    ) -> tuple[asyncio.Future[str], list[asyncio.Future[str]]]:
        """Start one caller, wait until its request runs, then start ``followers`` more."""
        leader = asyncio.ensure_future(coalesce(("g", 1), self))
        await self.started.wait()
        waiting = [asyncio.ensure_future(coalesce(("g", 1), self)) for _ in range(followers)]
        await asyncio.sleep(0)
        return leader, waiting


async def test_a_cancelled_caller_does_not_cancel_the_shared_request() -> None:
    request = _GatedRequest()
    leader, followers = await request.leader_and_followers(3)
    followers[0].cancel()  # a follower leaving changes nothing for the others
    request.release.set()
    assert await leader == "answer 1"
    assert [await f for f in followers[1:]] == ["answer 1", "answer 1"] and request.calls == 1
    assert followers[0].cancelled()


async def test_when_the_caller_making_the_request_is_cancelled_a_follower_makes_it() -> None:
    request = _GatedRequest()
    leader, followers = await request.leader_and_followers(3)
    request.started.clear()
    leader.cancel()
    await request.started.wait()  # a follower asked again; the others joined it
    request.release.set()
    assert [await f for f in followers] == ["answer 2"] * 3 and request.calls == 2  # one new request


async def test_a_follower_stops_at_its_own_deadline_and_the_others_still_share_the_answer() -> None:
    # Regression: a caller that joined another's request waited as long as that request took,
    # past its own deadline (two triggers on one message with different deadlines).
    request = _GatedRequest()
    leader = asyncio.ensure_future(coalesce(("g", 1), request))
    await request.started.wait()
    loop = asyncio.get_running_loop()
    hurried = asyncio.ensure_future(coalesce(("g", 1), request, until=loop.time() + 0.05))
    patient = asyncio.ensure_future(coalesce(("g", 1), request, until=loop.time() + 60))

    with pytest.raises(TimeoutError):
        await hurried
    request.release.set()
    assert (await leader, await patient, request.calls) == ("answer 1", "answer 1", 1)


async def test_a_poll_sharing_a_slow_request_still_ends_at_its_own_limit(
    octopods_conn: OctopodsSimulator,
) -> None:
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook
    from airflow_provider_octopods.testing import Hang

    message = octopods_conn.add_message(Hang(2), "delivered")  # answers 503 after 2 s
    async with OctopodsAsyncHook() as patient, OctopodsAsyncHook() as hurried:
        slow = asyncio.ensure_future(patient.get_sms_status(message))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(
            OctopodsTransientError, match=r"did not answer GET /api/v1/sms/messages/\d+ within 0\.5 s"
        ):
            await hurried.get_sms_status(message, timeout=0.5)
        assert time.monotonic() - started < 1.5
        with pytest.raises(OctopodsTransientError, match=r"HTTP 503"):  # the patient one waited it out
            await slow
    assert octopods_conn.request_count(f"/api/v1/sms/messages/{message}") == 1


def _get(url: str, key: str) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"X-Octopods-Auth": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def test_simulator_rate_limit_answers_429_with_retry_after_and_counts_them() -> None:
    with OctopodsSimulator(KEY, rate_limit=3) as sim:
        message = sim.add_message("delivered")
        url = f"{sim.url}/api/v1/sms/messages/{message}"
        answers = [_get(url, KEY) for _ in range(5)]
        codes = [code for code, _ in answers]
        assert codes == [200, 200, 200, 429, 429]  # five within far less than a second
        assert answers[3][1]["Retry-After"] == "1"
        assert sim.rate_limited == 2
        # Per key: another key has its own window (and is refused for being unknown, not limited).
        assert _get(url, "another-key")[0] == 401
        with urllib.request.urlopen(f"{sim.url}/_simulator/stats", timeout=10) as response:
            assert json.loads(response.read())["rate_limited"] == 2


def test_simulator_without_rate_limit_never_answers_429() -> None:
    with OctopodsSimulator(KEY) as sim:
        message = sim.add_message("delivered")
        url = f"{sim.url}/api/v1/sms/messages/{message}"
        assert {_get(url, KEY)[0] for _ in range(20)} == {200}
        assert sim.rate_limited == 0


async def test_budget_keeps_a_burst_under_the_simulators_limit() -> None:
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    with OctopodsSimulator(KEY, rate_limit=10) as sim:
        env = sim.connection_extra()
        env["extra"] = {"max_requests_per_second": 8}
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(env))
            ids = [sim.add_message("delivered") for _ in range(16)]
            async with OctopodsAsyncHook() as hook:
                statuses = await asyncio.gather(*(hook.get_sms_status(i) for i in ids))
        assert {s.status for s in statuses} == {"delivered"}
        assert sim.rate_limited == 0 and sim.request_count() == 16


async def test_a_queued_poll_keeps_its_place_past_the_request_timeout_but_not_past_its_callers_limit() -> (
    None
):
    """
    The connection's ``timeout`` counts from the send, so a long queue does not drop polls (which
    would go to its back again); the caller's own limit (a trigger's deadline) counts the queue.
    """
    from airflow_provider_octopods.hooks.octopods import OctopodsAsyncHook

    with OctopodsSimulator(KEY) as sim:
        env = sim.connection_extra()
        env["extra"] = {"max_requests_per_second": 2, "timeout": 0.3}  # a slot every 0.5 s
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(env))
            ids = [sim.add_message("delivered") for _ in range(4)]
            async with OctopodsAsyncHook() as hook:
                # The last of four waits 1.5 s for its slot, well past the 0.3 s request timeout.
                statuses = await asyncio.gather(*(hook.get_sms_status(i) for i in ids))
                assert [s.status for s in statuses] == ["delivered"] * 4
                assert sim.request_count() == 4
                # With a limit of its own (1.2 s), a caller behind three others (slots at 0, 0.5
                # and 1 s once the bucket is full again) gives up when its limit passes, sending nothing.
                await asyncio.sleep(0.5)
                late = [sim.add_message("delivered") for _ in range(4)]
                outcomes = await asyncio.gather(
                    *(hook.get_sms_status(i, timeout=1.2) for i in late), return_exceptions=True
                )
    assert [type(o).__name__ for o in outcomes] == ["MessageStatus"] * 3 + ["OctopodsThrottledError"]
    throttled = outcomes[3]
    assert isinstance(throttled, OctopodsTransientError) and throttled.request_sent is False
    assert throttled.sent is Sent.NO and throttled.request == "status"
    assert sim.request_count() == 7  # the fourth was never sent
    assert sim.request_count(f"/api/v1/sms/messages/{late[3]}") == 0
