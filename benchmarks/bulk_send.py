"""
Bulk send: ``OctopodsBulkSendOperator`` sending 10,000 SMS within a key's request budget, and
the worker memory it takes.

Each phase runs the operator in a fresh Python process, directly (``task.execute(context)``
with ``wait_for_delivery=False``, as ``tests/test_bulk.py`` does), against a simulator in its
own process (``octopods-simulator --quiet``, recording the time and status of every answer
and the phone of every message it creates: ``RecordingSimulatorProcess``). The send phase is
measured; the wait for delivery is not (``wait_for_delivery=False``: it is the batch wait of
benchmark 2). The recipients are ``--recipients`` distinct numbers libphonenumber calls valid
(ten US area codes; none ends in the simulator's magic suffixes ``01xx``), one short text each.

- **fixed**: the simulator limited to ``--limit`` (50) requests/s per key (a sliding one-second
  window, 429 with ``Retry-After`` past it); the connection extra ``max_requests_per_second`` =
  ``--rate`` (45). Targets: sustained send rate (accepted sends / (last send - first send), from
  the simulator's clock) >= 95% of the rate; no 429 after the first second; the operator's
  ``execute()`` (checking every row, then sending) within 1.1x of ``recipients / rate``.
- **adaptive**: the same with the extra unset (the budget adapts to 429s). Target: 429s at most
  1% of the requests.
- both: exactly one message per recipient (the simulator's messages: as many as recipients, one
  per phone, none elsewhere) and the report counts every recipient ``sent``.
- **memory**: 1,000, 10,000 and 100,000 rows (``--memory-sizes``) against an unlimited simulator
  with ``max_requests_per_second`` = 10,000: worker memory growth = peak RSS during ``execute()``
  minus RSS after imports, the rows built and a one-row warm-up send (``/proc/self/clear_refs``
  resets the kernel's peak; a 5 ms sampler backs it up). The task state store is write-only
  there (each value JSON-encoded, as the accessor sends it to the API server, and dropped: in a
  real worker the ledger lives in the metadata database). Targets: <= 50 MB at 10,000 rows; flat
  in the number of rows (growth at the largest size <= 2x the growth at the smallest). Then
  ``tracemalloc`` at ``--trace-n`` (10,000) rows: what is still allocated when the sends are
  done (in ``_finish``), by source line: what dominates.
- **loop** (the named baseline, ``--baseline-n`` = 1,000 rows): what a ``PythonOperator`` would
  do without this operator: ``OctopodsHook.send_sms`` per row, in order, against the same limited
  simulator (the sync hook has no request budget; it sends a 429 again after ``Retry-After``).

``--quick`` runs toy sizes in seconds (the smoke test): the correctness targets are judged, the
timing, 429-share and memory ones only reported. Exit 1 when a judged target is missed.

Run from the repository root::

    .venv/bin/python -m benchmarks.bulk_send                  # about 13 minutes
    .venv/bin/python -m benchmarks.bulk_send --phases fixed --recipients 2000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks._common import (
    BENCH_KEY,
    OCTOPODS_CONN_ID,
    ROOT,
    Machine,
    RecordingSimulatorProcess,
)

#: The issue's targets.
TARGET_RATE_SHARE = 0.95
TARGET_WALL_RATIO = 1.1
TARGET_429_SHARE = 0.01
TARGET_GROWTH_MB_10K = 50.0
#: "Flat": the growth at the largest size at most this times the growth at the smallest.
FLAT_RATIO = 2.0
#: A fast simulator's budget (the memory phase): far above what one worker sends.
FAST_RATE = 10_000.0
#: Area codes of the generated numbers (every NPA-NXX below is valid to libphonenumber).
AREA_CODES = ("212", "312", "415", "617", "646", "718", "202", "305", "404", "512")
#: The sizes of a full run and of ``--quick``, unless given.
FULL_SIZES: dict[str, Any] = {
    "recipients": 10_000,
    "memory_sizes": [1_000, 10_000, 100_000],
    "trace_n": 10_000,
    "baseline_n": 1_000,
}
QUICK_SIZES: dict[str, Any] = {"recipients": 60, "memory_sizes": [100, 400], "trace_n": 100, "baseline_n": 20}
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# -- the recipients -------------------------------------------------------------------------


def valid_phones(n: int) -> list[str]:
    """
    Return ``n`` distinct E.164 numbers libphonenumber calls valid, the same ones every call.

    Ten US area codes, exchanges 201-999 (not 555 nor N11), line numbers from 2000 up: none ends
    in ``01xx``, the simulator's magic suffixes, so each is ``queued``, ``sent``, ``delivered``.

    :param n: how many.
    """
    import phonenumbers

    phones: list[str] = []
    for line in range(2000, 10000):
        for area in AREA_CODES:
            for exchange in range(201, 1000):
                if exchange == 555 or exchange % 100 == 11:
                    continue
                national = int(f"{area}{exchange}{line}")
                if phonenumbers.is_valid_number(
                    phonenumbers.PhoneNumber(country_code=1, national_number=national)
                ):
                    phones.append(f"+1{national}")
                    if len(phones) == n:
                        return phones
    raise ValueError(f"only {len(phones)} numbers")


def make_rows(phones: list[str]) -> list[dict[str, Any]]:
    """One row per phone: a short GSM-7 text, one segment."""
    return [
        {"destination_phone": p, "body": f"Your order {i:06d} has shipped."} for i, p in enumerate(phones)
    ]


class MemoryStore:
    """A task state store in memory, with the accessor's methods (``get``, ``set``, ``delete``)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class WriteOnlyStore:
    """
    A task state store whose values leave the process: JSON-encoded (as the accessor sends them
    to the API server), counted, not kept. Empty when read (a first try).
    """

    def __init__(self) -> None:
        self.sets = 0
        self.bytes = 0
        self.largest = 0

    def get(self, key: str, default: Any = None) -> Any:
        return default

    def set(self, key: str, value: Any, **_: Any) -> None:
        size = len(json.dumps(value))
        self.sets, self.bytes, self.largest = self.sets + 1, self.bytes + size, max(self.largest, size)

    def delete(self, key: str) -> None:
        pass


# -- the child process -----------------------------------------------------------------------


def current_rss() -> int:
    """This process's resident memory in bytes (Linux ``/proc``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) to the current RSS; False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _kernel_peak() -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class _Sampler(threading.Thread):
    """Sample the RSS every 5 ms; keep the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = current_rss()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, current_rss())

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, current_rss())


def _short(path: str) -> str:
    import sysconfig

    for marker in ("site-packages/", f"{ROOT}/", f"{Path(sysconfig.get_paths()['stdlib']).parent}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _top_allocations(snapshot: Any, rows: int, limit: int = 12) -> list[dict[str, Any]]:
    import linecache
    import tracemalloc

    snapshot = snapshot.filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    )
    stats = snapshot.statistics("lineno")
    top = []
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        # "" for code with no file, such as a dataclass's generated __init__ ("<string>")
        line = linecache.getline(frame.filename, frame.lineno)
        top.append(
            {
                "where": f"{_short(frame.filename)}:{frame.lineno}",
                "code": line.strip()[:90],
                "bytes": stat.size,
                "blocks": stat.count,
                "bytes_per_row": stat.size / max(rows, 1),
            }
        )
    return top


def max_in_one_second(times: list[float]) -> int:
    """The most of ``times`` in any half-open one-second interval (the simulator's sliding window)."""
    ordered, most, start = sorted(times), 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _count_grants() -> list[float]:
    """Record when the request budget lets each request through (``time.monotonic()``), in this process."""
    from airflow_provider_octopods.utils import budget

    grants: list[float] = []
    take = budget.RequestBudget._take

    def counted(self: Any, now: float) -> bool:
        granted = take(self, now)
        if granted:
            grants.append(time.monotonic())
        return granted

    budget.RequestBudget._take = counted  # type: ignore[method-assign]
    return grants


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one phase's operator (or the loop baseline) here; return its measurements."""
    import logging

    logging.getLogger("airflow_provider_octopods").setLevel(logging.INFO)
    from airflow_provider_octopods.hooks import octopods as hooks
    from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator

    n = int(spec["n"])
    start_rss = current_rss()
    phones = valid_phones(n + 1)
    warm, phones = phones[-1], phones[:-1]
    rows = make_rows(phones)
    gc.collect()
    rows_rss = current_rss() - start_rss
    if spec["kind"] == "loop":  # a careful loop: a send that certainly did not leave is sent again
        from airflow_provider_octopods.exceptions import OctopodsError

        hook = hooks.OctopodsHook(OCTOPODS_CONN_ID)
        failures: Counter[str] = Counter()
        resent = 0
        t0 = time.monotonic()
        for row in rows:
            for attempt in range(1, 11):
                try:
                    hook.send_sms(row["destination_phone"], row["body"])
                except OctopodsError as err:
                    if attempt < 10 and hooks.may_send_again(err):  # a 429: after its Retry-After
                        resent += 1
                        time.sleep(getattr(err, "retry_after", None) or 1.0)
                        continue
                    failures[type(err).__name__] += 1
                break
        wall = time.monotonic() - t0
        hook.close()
        return {"kind": "loop", "n": n, "wall_s": wall, "resent": resent, "failures": dict(failures)}

    # the budget's grants, in the send phases only (the list would count in the memory phase)
    grants = _count_grants() if spec["kind"] in ("fixed", "adaptive") else None
    marks: dict[str, Any] = {}
    tracing = bool(spec.get("trace"))

    class Measured(OctopodsBulkSendOperator):
        def _check(self, context: Any, recipients: Any) -> None:
            super()._check(context, recipients)
            marks["checked"] = time.monotonic()

        def _finish(self, context: Any, outcomes: Any, event: Any) -> Any:
            marks["sent"] = time.monotonic()
            if tracing and self.task_id == "bulk":  # not the warm-up
                import tracemalloc

                marks["traced_at_finish"], marks["traced_peak"] = tracemalloc.get_traced_memory()
                marks["top"] = _top_allocations(tracemalloc.take_snapshot(), n)
            return super()._finish(context, outcomes, event)

    def operator(task_id: str, messages: list[dict[str, Any]]) -> Any:
        return Measured(
            task_id=task_id,
            messages=messages,
            wait_for_delivery=False,
            window=int(spec["window"]),
            octopods_conn_id=OCTOPODS_CONN_ID,
        )

    if spec.get("warm_up"):  # every lazy import, the connection, an aiohttp session once
        warm_row = [{"destination_phone": warm, "body": "warm-up"}]
        operator("warm", warm_row).execute(
            {"ti": SimpleNamespace(max_tries=0), "task_state_store": MemoryStore()}
        )
    store: Any = WriteOnlyStore() if spec["store"] == "write-only" else MemoryStore()
    task = operator("bulk", rows)
    context = {"ti": SimpleNamespace(max_tries=0), "task_state_store": store}
    gc.collect()
    if tracing:
        import tracemalloc

        tracemalloc.start()
    base = current_rss()
    reset = _reset_peak()
    sampler = _Sampler()
    sampler.start()
    t0 = time.monotonic()
    report = task.execute(context)
    t1 = time.monotonic()
    sampled = sampler.stop()
    kernel = _kernel_peak() if reset else None
    peak = max(sampled, kernel or 0)
    if tracing:
        tracemalloc.stop()
    result = {
        "kind": spec["kind"],
        "n": n,
        "warm_phone": warm if spec.get("warm_up") else None,
        "execute_s": t1 - t0,
        "check_s": marks["checked"] - t0,
        "send_s": marks["sent"] - marks["checked"],
        "counts": report["counts"],
        "recipients": report["recipients"],
        "rows_mb": rows_rss / 2**20,
        "rss_base_mb": base / 2**20,
        "rss_peak_mb": peak / 2**20,
        "growth_mb": (peak - base) / 2**20,
        "growth_bytes_per_row": (peak - base) / n,
        "peak_from": "kernel VmHWM" if kernel is not None and kernel >= sampled else "5 ms sampler",
        "client_grants": None if grants is None else len(grants),
        "client_max_1s": None if grants is None else max_in_one_second(grants),
    }
    if isinstance(store, WriteOnlyStore):
        result.update(store_sets=store.sets, store_bytes=store.bytes, store_largest=store.largest)
    else:
        result.update(
            store_sets=None,
            store_bytes=sum(len(json.dumps(v)) for v in store.values.values()),
            store_largest=max((len(json.dumps(v)) for v in store.values.values()), default=0),
        )
    if tracing:
        result.update(
            traced_at_finish_mb=marks["traced_at_finish"] / 2**20,
            traced_peak_mb=marks["traced_peak"] / 2**20,
            top=marks["top"],
        )
    return result


# -- the parent ------------------------------------------------------------------------------


def child_env(url: str, rate: float | None) -> dict[str, str]:
    """
    The environment of a child: a fresh ``AIRFLOW_HOME`` and the benchmark's Octopods connection.

    :param url: the simulator's base URL.
    :param rate: the ``max_requests_per_second`` extra, or None to leave it unset (adaptive).
    """
    conn: dict[str, Any] = {"conn_type": "octopods", "host": url, "password": BENCH_KEY}
    if rate is not None:
        conn["extra"] = {"max_requests_per_second": rate}
    return {
        **os.environ,
        f"AIRFLOW_CONN_{OCTOPODS_CONN_ID.upper()}": json.dumps(conn),
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="octopods-bench-home-"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def run_child(spec: dict[str, Any], url: str, rate: float | None, timeout: float) -> dict[str, Any]:
    """
    Run ``spec`` in a fresh ``python -m benchmarks.bulk_send --child``; return its result and log.

    :param spec: the phase's description.
    :param url: the simulator's base URL.
    :param rate: the connection's ``max_requests_per_second`` (None: unset).
    :param timeout: seconds the child may take.
    """
    with tempfile.TemporaryFile("w+") as log:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bulk_send", "--child"],
            input=json.dumps(spec),
            cwd=ROOT,
            env=child_env(url, rate),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            timeout=timeout,
            check=False,
        )
        log.seek(0)
        lines = log.read().splitlines()
    if done.returncode != 0:
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"The {spec['kind']} child failed (exit {done.returncode}):\n{tail}")
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["log"] = [line for line in lines if "Sent " in line or "Checked " in line][-3:]
    return result


def judge_sends(record: dict[str, Any], phones: list[str], extra_phones: set[str]) -> dict[str, Any]:
    """
    What the simulator saw: requests, accepted sends, 429s and when, one message per recipient.

    :param record: :meth:`RecordingSimulatorProcess.record`.
    :param phones: the recipients.
    :param extra_phones: other phones sent to on purpose (the warm-up).
    """
    answers = sorted(record["answers"])
    sends = [t for t, kind, status in answers if kind == "send" and status == 201]
    throttled = [t for t, _, status in answers if status == 429]
    first = answers[0][0] if answers else 0.0
    per_phone = Counter(phone for _, phone in record["messages"] if phone not in extra_phones)
    wanted = set(phones)
    span = sends[-1] - sends[0] if len(sends) > 1 else 0.0
    admitted = [t for t, _, status in answers if status != 429]
    stalls = []
    for at in throttled:  # the longest pause between two answers in the 1.5 s before each 429
        before = [t for t in admitted if at - 1.5 <= t <= at]
        stalls.append(max((b - a for a, b in pairwise(before)), default=0.0))
    return {
        "requests": len(answers),
        "sends_accepted": len(sends),
        "throttled": len(throttled),
        "throttled_after_1s": sum(1 for t in throttled if t > first + 1.0),
        "throttled_at_s": [round(t - first, 3) for t in throttled][:50],
        "pause_before_429_s": [round(x, 3) for x in stalls][:50],
        # the simulator's own admission times with a rate limit; else its answers' times
        "server_max_1s": max_in_one_second(record.get("admitted") or admitted),
        "other_statuses": dict(Counter(s for _, _, s in answers if s not in (201, 429))),
        "span_s": span,
        "sustained_rate": len(sends) / span if span > 0 else 0.0,
        "messages": sum(per_phone.values()),
        "distinct_phones": len(per_phone),
        "doubled": sum(1 for c in per_phone.values() if c > 1),
        "missing": len(wanted - set(per_phone)),
        "strangers": len(set(per_phone) - wanted),
    }


class Checks:
    """Target checks: (what, measured, met, judged); a judged miss makes the exit code 1."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, bool | None, bool]] = []

    def add(self, what: str, measured: str, met: bool | None, judged: bool = True) -> None:
        self.rows.append((what, measured, met, judged))

    @property
    def missed(self) -> list[str]:
        return [what for what, _, met, judged in self.rows if judged and met is False]

    def table(self) -> list[str]:
        lines = ["| target | measured | result |", "| --- | --- | --- |"]
        for what, measured, met, judged in self.rows:
            verdict = "reported" if met is None else ("met" if met else "MISSED")
            if not judged and met is not None:
                verdict += " (not judged at this size)"
            lines.append(
                f"| {what} | {measured} | **{verdict}** |"
                if judged
                else f"| {what} | {measured} | {verdict} |"
            )
        return lines


def send_phase(name: str, args: argparse.Namespace, checks: Checks, judge_timing: bool) -> dict[str, Any]:
    """Run the fixed or adaptive phase; add its checks; return its figures."""
    rate = args.rate if name == "fixed" else None
    phones = valid_phones(args.recipients)
    spec = {"kind": name, "n": args.recipients, "window": args.window, "store": "memory"}
    with RecordingSimulatorProcess(args=["--rate-limit", str(args.limit)] if args.limit else []) as sim:
        child = run_child(spec, sim.url, rate, args.timeout)
        time.sleep(0.2)
        seen = judge_sends(sim.record(), phones, set())
    r = {**child, **seen, "phase": name, "rate": rate, "limit": args.limit}
    n = args.recipients
    once = (
        seen["messages"] == n and seen["distinct_phones"] == n and not seen["doubled"] and not seen["missing"]
    )
    all_sent = r["counts"] == {"sent": n}
    checks.add(
        f"{name}: exactly one message per recipient",
        f"{seen['messages']:,} messages, {seen['distinct_phones']:,} distinct phones, "
        f"{seen['doubled']} doubled, {seen['missing']} missing, {seen['strangers']} others",
        once,
    )
    checks.add(f"{name}: the report counts every recipient sent", json.dumps(r["counts"]), all_sent)
    if name == "fixed":
        share = seen["sustained_rate"] / args.rate
        checks.add(
            f"fixed: sustained send rate >= {TARGET_RATE_SHARE:.0%} of {args.rate:g}/s",
            f"{seen['sustained_rate']:.2f}/s ({share:.1%})",
            share >= TARGET_RATE_SHARE,
            judge_timing,
        )
        checks.add(
            "fixed: no 429 after the first second",
            f"{seen['throttled_after_1s']} (all: {seen['throttled']}, at {seen['throttled_at_s']} s); most "
            f"requests in 1 s: {r['client_max_1s']} let through by the budget, {seen['server_max_1s']} admitted "
            f"by the simulator; longest pause between answers in the 1.5 s before each 429: "
            f"{seen['pause_before_429_s']} s",
            seen["throttled_after_1s"] == 0,
        )
        ideal = n / args.rate
        checks.add(
            f"fixed: execute() within {TARGET_WALL_RATIO}x of {n:,}/{args.rate:g} = {ideal:.1f} s",
            f"{r['execute_s']:.1f} s ({r['execute_s'] / ideal:.3f}x; checks {r['check_s']:.1f} s, "
            f"sends {r['send_s']:.1f} s = {r['send_s'] / ideal:.3f}x)",
            r["execute_s"] <= TARGET_WALL_RATIO * ideal,
            judge_timing,
        )
    else:
        share = seen["throttled"] / max(seen["requests"], 1)
        checks.add(
            f"adaptive: 429s <= {TARGET_429_SHARE:.0%} of requests",
            f"{seen['throttled']} of {seen['requests']:,} ({share:.2%})",
            share <= TARGET_429_SHARE,
            judge_timing,
        )
    return r


def send_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| budget | recipients | requests | accepted sends | 429s | 429s after 1 s | first to last send (s) "
        "| sustained rate (/s) | most in 1 s: budget, simulator | execute() (s) | of which checks (s) | sends (s) "
        "| messages | distinct phones | report |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        budget = f"{r['rate']:g}/s (fixed)" if r["rate"] is not None else "unset (adaptive)"
        lines.append(
            f"| {budget} | {r['n']:,} | {r['requests']:,} | {r['sends_accepted']:,} | {r['throttled']} "
            f"| {r['throttled_after_1s']} | {r['span_s']:.1f} | {r['sustained_rate']:.2f} "
            f"| {r['client_max_1s']}, {r['server_max_1s']} | {r['execute_s']:.1f} "
            f"| {r['check_s']:.1f} | {r['send_s']:.1f} | {r['messages']:,} | {r['distinct_phones']:,} "
            f"| {', '.join(f'{k} {v:,}' for k, v in r['counts'].items())} |"
        )
    return lines


def memory_phase(args: argparse.Namespace, checks: Checks, judge: bool) -> dict[str, Any]:
    """Run the memory sizes and the tracemalloc run; add their checks; return the figures."""
    runs = []
    for n in args.memory_sizes:
        spec = {"kind": "memory", "n": n, "window": args.window, "store": "write-only", "warm_up": True}
        with RecordingSimulatorProcess() as sim:
            child = run_child(spec, sim.url, FAST_RATE, args.timeout)
            seen = judge_sends(sim.record(), valid_phones(n), {child["warm_phone"]})
        ok = (
            seen["messages"] == n
            and not seen["doubled"]
            and not seen["missing"]
            and child["counts"] == {"sent": n}
        )
        runs.append({**child, **seen, "exactly_once": ok})
        print(
            f"  memory, {n:,} rows: growth {child['growth_mb']:.1f} MB "
            f"({child['growth_bytes_per_row']:.0f} B/row), execute {child['execute_s']:.1f} s",
            flush=True,
        )
    traced = None
    if args.trace_n:
        spec = {
            "kind": "memory",
            "n": args.trace_n,
            "window": args.window,
            "store": "write-only",
            "warm_up": True,
            "trace": True,
        }
        with RecordingSimulatorProcess() as sim:
            traced = run_child(spec, sim.url, FAST_RATE, args.timeout)
    for r in runs:
        checks.add(
            f"memory {r['n']:,} rows: exactly one message per recipient, all sent",
            json.dumps(r["counts"]),
            r["exactly_once"],
        )
    at_10k = [r for r in runs if r["n"] == 10_000]
    if at_10k:
        checks.add(
            f"memory: growth <= {TARGET_GROWTH_MB_10K:g} MB at 10,000 rows",
            f"{at_10k[0]['growth_mb']:.1f} MB",
            at_10k[0]["growth_mb"] <= TARGET_GROWTH_MB_10K,
            judge,
        )
    if len(runs) >= 2:
        small, large = min(runs, key=lambda r: r["n"]), max(runs, key=lambda r: r["n"])
        flat = large["growth_mb"] <= FLAT_RATIO * max(small["growth_mb"], 1.0)
        per_row = ", ".join(f"{r['growth_bytes_per_row']:,.0f} B at {r['n']:,}" for r in runs)
        checks.add(
            f"memory: flat in the number of rows (growth at {large['n']:,} <= {FLAT_RATIO:g}x at {small['n']:,})",
            f"{small['growth_mb']:.1f} MB -> {large['growth_mb']:.1f} MB ({per_row} per row)",
            flat,
            judge,
        )
    return {"runs": runs, "traced": traced}


def memory_tables(memory: dict[str, Any]) -> list[str]:
    lines = [
        "| rows | the rows given (MB) | RSS before execute() (MB) | peak RSS (MB) | growth (MB) | growth per row (B) "
        "| execute() (s) | store: sets, bytes written, largest value (B) | peak from |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in memory["runs"]:
        lines.append(
            f"| {r['n']:,} | {r['rows_mb']:.1f} | {r['rss_base_mb']:.1f} | {r['rss_peak_mb']:.1f} | {r['growth_mb']:.1f} "
            f"| {r['growth_bytes_per_row']:,.0f} | {r['execute_s']:.1f} | {r['store_sets']:,}, {r['store_bytes']:,}, "
            f"{r['store_largest']:,} | {r['peak_from']} |"
        )
    traced = memory.get("traced")
    if traced:
        lines += [
            "",
            f"tracemalloc, {traced['n']:,} rows: {traced['traced_at_finish_mb']:.1f} MB still allocated when the "
            f"sends are done (in `_finish`), traced peak {traced['traced_peak_mb']:.1f} MB; the top lines:",
            "",
            "| where | code | MB | blocks | B per row |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for t in traced["top"]:
            code = t["code"].replace("|", "\\|")
            lines.append(
                f"| `{t['where']}` | `{code}` | {t['bytes'] / 2**20:.2f} | {t['blocks']:,} | {t['bytes_per_row']:.0f} |"
            )
    return lines


def loop_phase(args: argparse.Namespace) -> dict[str, Any]:
    """The named baseline: ``OctopodsHook.send_sms`` per row, in order, against the limited simulator."""
    phones = valid_phones(args.baseline_n)
    spec = {"kind": "loop", "n": args.baseline_n, "window": args.window, "store": "memory"}
    with RecordingSimulatorProcess(args=["--rate-limit", str(args.limit)] if args.limit else []) as sim:
        child = run_child(spec, sim.url, args.rate, args.timeout)
        seen = judge_sends(sim.record(), phones, set())
    return {**child, **seen}


def main(argv: list[str] | None = None) -> int:
    """
    Run the phases, print their tables, target checks and a summary line; 1 if a target is missed.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bulk_send",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipients", type=int, help="recipients of fixed and adaptive (10,000; quick: 60)")
    parser.add_argument("--rate", type=float, default=45.0, help="max_requests_per_second (fixed)")
    parser.add_argument("--limit", type=int, default=50, help="the simulator's requests/s per key (0: none)")
    parser.add_argument("--window", type=int, default=50, help="the operator's window")
    parser.add_argument(
        "--memory-sizes",
        type=int,
        nargs="+",
        help="rows of the memory runs (1,000 10,000 100,000; quick: 100 400)",
    )
    parser.add_argument(
        "--trace-n", type=int, help="rows of the tracemalloc run (10,000; quick: 100; 0: none)"
    )
    parser.add_argument("--baseline-n", type=int, help="rows of the loop baseline (1,000; quick: 20)")
    parser.add_argument(
        "--phases",
        nargs="+",
        default=["fixed", "adaptive", "memory", "loop"],
        choices=["fixed", "adaptive", "memory", "loop"],
    )
    parser.add_argument(
        "--quick", action="store_true", help="toy sizes; timing and memory targets not judged"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a child may take")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(json.loads(sys.stdin.read()))), flush=True)
        return 0
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    machine = Machine.here()
    print(machine.describe())
    print(f"command: python -m benchmarks.bulk_send {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(
        f"OctopodsBulkSendOperator.execute() in a fresh process, wait_for_delivery=False (the wait is not "
        f"included), window {args.window}; simulator in its own process",
        flush=True,
    )
    checks = Checks()
    results: dict[str, Any] = {"machine": asdict(machine), "args": vars(args)}
    summary: list[str] = []
    sends = []
    for name in ("fixed", "adaptive"):
        if name in args.phases:
            r = send_phase(name, args, checks, judge_timing=not args.quick)
            sends.append(r)
            results[name] = r
            print(f"  {name}: done in {r['execute_s']:.1f} s", flush=True)
            if name == "fixed":
                summary.append(
                    f"fixed {args.rate:g}/s: {r['sustained_rate']:.2f}/s sustained, {r['throttled_after_1s']} 429s "
                    f"after 1 s, execute {r['execute_s']:.0f} s ({r['execute_s'] * args.rate / r['n']:.3f}x ideal)"
                )
            else:
                summary.append(
                    f"adaptive: {r['throttled']} 429s ({r['throttled'] / max(r['requests'], 1):.2%}), "
                    f"{r['sustained_rate']:.1f}/s, {r['doubled']} doubled, {r['missing']} missing"
                )
    if "loop" in args.phases:
        loop = results["loop"] = loop_phase(args)
        print(f"  loop baseline: done in {loop['wall_s']:.1f} s", flush=True)
    print()
    if sends:
        print(f"## Send phase: {args.recipients:,} recipients, simulator limited to {args.limit}/s per key")
        print()
        print("\n".join(send_table(sends)))
        for r in sends:
            for line in r["log"]:
                print(f"    {r['phase']} log: {line.split('] ', 1)[-1].strip()[:150]}")
        print()
    if "loop" in args.phases:
        loop = results["loop"]
        share = loop["throttled"] / max(loop["requests"], 1)
        print(
            f"## Baseline: OctopodsHook.send_sms per row, in order ({args.baseline_n:,} rows, same simulator)"
        )
        print()
        print(
            "| rows | wall (s) | requests | accepted | 429s | sent again after a 429 | sustained rate (/s) "
            "| most in 1 s (simulator) | messages | doubled | missing | failures |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        print(
            f"| {loop['n']:,} | {loop['wall_s']:.1f} | {loop['requests']:,} | {loop['sends_accepted']:,} "
            f"| {loop['throttled']} ({share:.1%}) | {loop['resent']:,} | {loop['sustained_rate']:.2f} "
            f"| {loop['server_max_1s']} | {loop['messages']:,} "
            f"| {loop['doubled']} | {loop['missing']} | {loop['failures'] or 'none'} |"
        )
        print()
        summary.append(f"loop baseline: {loop['sustained_rate']:.1f}/s, {share:.1%} 429s")
    if "memory" in args.phases:
        memory = results["memory"] = memory_phase(args, checks, judge=not args.quick)
        print()
        print(
            f"## Memory: worker growth during execute(), unlimited simulator, max_requests_per_second {FAST_RATE:g}"
        )
        print()
        print("\n".join(memory_tables(memory)))
        print()
        runs = memory["runs"]
        summary.append(
            "memory: "
            + ", ".join(f"{r['growth_mb']:.1f} MB at {r['n']:,}" for r in runs)
            + (f" ({runs[-1]['growth_bytes_per_row']:.0f} B/row)" if runs else "")
        )
    print("## Targets")
    print()
    print("\n".join(checks.table()))
    if args.json:
        results["checks"] = checks.rows
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    missed = checks.missed
    print()
    print(
        "bulk send: "
        + "; ".join(summary)
        + (f"; MISSED: {', '.join(missed)}" if missed else "; every target met")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
