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
