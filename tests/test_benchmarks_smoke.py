"""
Smoke runs of ``benchmarks/``: each benchmark end to end at toy size (N=5, fractions of a
second), so the commands in ``benchmarks/README.md`` keep working. No performance target is
asserted here (timing belongs to ``make bench``); only that the runs finish, every wait succeeds
and the counts are self-consistent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

TOY = [
    *("--poll-interval", "0.1", "--min-delivery", "0.1", "--max-delivery", "0.4"),
    *("--calibrate", "0.1", "--in-process"),
]


def _run(main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_triggerer_scale_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import triggerer_scale

    out = _run(triggerer_scale.main, ["--n", "5", *TOY, "--json", str(tmp_path / "r.json")], capsys)
    assert "octopods vs HttpSensorTrigger @N=5:" in out.splitlines()[-1]
    figures = json.loads((tmp_path / "r.json").read_text())["runs"]["5"]["figures"]
    octo, http, floor = figures["octopods"], figures["http"], figures["floor"]
    assert "= floor" in out.splitlines()[-1]
    for side in (octo, http, floor):
        assert side["failed_waits"] == 0
        assert side["polls"] >= 5  # at least one poll per wait
        assert side["lifecycle_cpu_us"] >= 0 and side["cpu_per_poll_us"] > 0
    # The mechanism the benchmark measures: one TCP connection per poll, versus a shared pool.
    assert http["connections"] == http["polls"]
    assert 1 <= octo["connections"] < octo["polls"]


def test_batch_wait_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import batch_wait

    out = _run(batch_wait.main, ["--n", "5", *TOY, "--json", str(tmp_path / "r.json")], capsys)
    assert out.splitlines()[-1].startswith("1 trigger on 5 ids vs 5 single triggers:")
    figures = json.loads((tmp_path / "r.json").read_text())["figures"]
    batch, single = figures["octopods-batch"], figures["octopods"]
    assert (batch["triggers"], single["triggers"]) == (1, 5)
    assert batch["failed_waits"] == single["failed_waits"] == 0
    assert batch["requests"] >= 5 and single["requests"] >= 5
    assert batch["event_kb_max"] > single["event_kb_max"]  # one event carries all five statuses


def test_poll_schedule_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import poll_schedule

    out = _run(poll_schedule.main, ["--verify", "--verify-polls", "3", "--no-search"], capsys)
    assert "MISMATCH" not in out
    assert out.count("(ok)") == 3
    assert out.splitlines()[-1].startswith("default schedule per message:")
    rows = {r["name"]: r for r in (poll_schedule.evaluate(s) for s in poll_schedule.candidates())}
    default, five = rows["default"], rows["fixed 5 s poke"]
    for row in rows.values():
        for seconds in poll_schedule.SCENARIOS:
            requests, delay = row[f"{seconds:g} s"]
            assert requests >= 1 and delay >= 0
    assert default["600 s"][0] < five["600 s"][0]  # backoff: fewer requests on a long wait


def test_parse_cost_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import parse_cost

    out = _run(parse_cost.main, ["--runs", "1", "--baselines", "sdk", "--targets", "octopods"], capsys)
    assert out.splitlines()[-1].startswith("DAG-parse import cost after airflow.sdk (median of 1):")
    # Deterministic, unlike timings: importing the sensor pulls in no HTTP client and no hook.
    assert out.splitlines()[-1].endswith("heavy imports: none")


def test_request_budget_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import request_budget

    argv = [
        *("--n", "10", "--limit", "20", "--rate", "15", "--coalesce-n", "20", "--coalesce-ids", "4"),
        *("--time-scale", "0.05", "--in-process", "--json", str(tmp_path / "r.json")),
    ]
    out = _run(request_budget.main, argv, capsys)
    assert out.splitlines()[-1].startswith("request budget: fixed:")
    phases = json.loads((tmp_path / "r.json").read_text())["phases"]
    for phase in phases.values():
        assert phase["failed_waits"] == 0
        assert phase["requests"] >= 1
    # Deterministic, unlike timings: a budget under the limit is never refused.
    assert phases["fixed"]["throttled"] == 0
    # Waits on one id started together share their requests.
    assert phases["coalesce"]["requests"] * 2 <= phases["coalesce"]["polls"]


def test_whatsapp_batch_wait_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import whatsapp_batch_wait

    argv = [
        *("--n", "5", "120", "--poll-interval", "0.05", "--deliver-after", "0.2"),
        *("--budget-rate", "50", "--budget-deliver-after", "0.5", "--json", str(tmp_path / "r.json")),
    ]
    out = _run(whatsapp_batch_wait.main, argv, capsys)
    assert out.splitlines()[-1].startswith("WhatsApp batch wait, with the list vs per id: N=5 messages:")
    report = json.loads((tmp_path / "r.json").read_text())
    runs = {(r["n"], r["shape"], r["side"]): r for r in report["runs"]}
    assert len(runs) == 8  # 2 sizes x 2 list shapes x 2 sides
    for (n, _, side), run in runs.items():
        assert run["event_status"] == "done" and run["delivered"] == n, run
        full = [r for r in run["per_round"] if r["pending"] == n and not r["final"]]
        assert run["full_rounds"] == len(full) and (full or side == "per-id"), run
        # Deterministic, unlike timings: with every message pending, a round asks the list once
        # and polls by id only the messages not among the newest 100; without it, every one.
        listed = side == "list"
        if full:  # per id on 120 messages, a round may already see deliveries
            assert {r["requests"] for r in full} == {1 + max(0, n - 100) if listed else n}, run
            assert {r["list_requests"] for r in full} == {1 if listed else 0}, run
        assert run["requests"] == run["list_requests"] + run["status_requests"], run
    for row in report["comparison"]:
        assert row["met"] is (True if row["n"] == 5 else None)
    budgeted, unset = report["budget"]
    assert budgeted["within"] and budgeted["rate_limited"] == 0, budgeted
    assert budgeted["list_requests"] >= 1 and budgeted["status_requests"] >= 1  # both kinds counted
    assert unset["rate"] is None and unset["within"] is None
    # --other-sends: newer sends of a busy workspace push the wait's messages out of the list.
    assert whatsapp_batch_wait.expected_per_round(100, "list", other_sends=100) == 101
    assert whatsapp_batch_wait.expected_per_round(100, "list", other_sends=40) == 41


def test_bulk_send_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import bulk_send

    argv = ["--quick", "--recipients", "60", "--memory-sizes", "100", "300", "--trace-n", "100"]
    out = _run(bulk_send.main, [*argv, "--json", str(tmp_path / "r.json")], capsys)
    assert out.splitlines()[-1].startswith("bulk send: fixed 45/s:")
    assert out.splitlines()[-1].endswith("every target met")
    assert "| 45/s (fixed) | 60 |" in out and "| unset (adaptive) | 60 |" in out
    report = json.loads((tmp_path / "r.json").read_text())
    # Deterministic, unlike timings: each recipient gets exactly one message, every one is
    # reported sent, and a budget under the simulator's limit is never refused after 1 s.
    for phase in ("fixed", "adaptive"):
        r = report[phase]
        assert (r["messages"], r["distinct_phones"], r["doubled"], r["missing"]) == (60, 60, 0, 0)
        assert r["counts"] == {"sent": 60}
    assert report["fixed"]["throttled_after_1s"] == 0
    assert report["loop"]["messages"] == 20 and report["loop"]["doubled"] == 0
    runs = report["memory"]["runs"]
    assert [r["n"] for r in runs] == [100, 300] and all(r["exactly_once"] for r in runs)
    assert all(r["growth_mb"] >= 0 and r["store_sets"] > 0 for r in runs)
    assert report["memory"]["traced"]["top"]  # tracemalloc's top lines are reported


def test_bulk_kill_retry_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import bulk_kill_retry

    argv = [
        *("--recipients", "60", "--rate", "50", "--kills", "1", "--window", "10", "--seed", "10"),
        *("--no-baseline", "--json", str(tmp_path / "r.json")),
    ]
    out = _run(bulk_kill_retry.main, argv, capsys)
    last = out.splitlines()[-1]
    assert last.startswith("kill and retry, 60 recipients, 1 kills: 0 duplicates,")
    assert last.endswith("every target met")
    (ledger,) = json.loads((tmp_path / "r.json").read_text())["sides"]
    assert ledger["duplicates"] == 0 and ledger["not_reported"] == 0
    assert ledger["sent"] + ledger["unconfirmed"] == 60
    (kill,) = ledger["kills"]
    assert kill["killed"] and len(kill["in_flight"]) == ledger["unconfirmed"] <= 10


def test_wait_objects_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import wait_objects

    out = _run(
        wait_objects.main, ["--n", "20", "--settle", "0.4", "--json", str(tmp_path / "r.json")], capsys
    )
    assert out.splitlines()[-1].startswith("wait objects: queued ")
    counted = json.loads((tmp_path / "r.json").read_text())
    # a queued poll holds its request's chain; the floor holds a sleeping GET loop's objects
    assert counted["queued"]["per_wait"] > counted["sleeping"]["per_wait"] > 0
    assert counted["floor"]["per_wait"] > 0
