"""
Two triggerers (Airflow's own HA): the one holding every Octopods wait is SIGKILLed, the other
adopts them all; every wait finishes there, the deadline set before the crash is kept, and no
SMS is sent twice.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from tests.e2e.dags.octopods_e2e_ha import HA_SENSOR_TIMEOUT
from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment

DAG_ID = "octopods_e2e_ha"
TASKS = ("send_and_wait", "wait_past_deadline")
SEND = "/api/v1/sms/messages"
#: The simulator keeps an SMS to this number queued until the test scripts it.
STAYS_QUEUED_PHONE = "+12015550109"
RUNS = 2


def _api_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _polled_since(simulator: OctopodsSimulator, message_ids: set[int], since: float) -> set[int]:
    paths = {f"{SEND}/{i}": i for i in message_ids}
    return {paths[r.path] for r in list(simulator.requests) if r.path in paths and r.at >= since}


def _holders(airflow: AirflowDeployment, runs: list[str]) -> set[int] | None:
    """The ids of the triggerer jobs holding the DAG's deferred tasks, once all are assigned."""
    jobs = [airflow.task_instance(DAG_ID, r, t)["triggerer_job"] for r in runs for t in TASKS]
    return {job["id"] for job in jobs} if all(jobs) else None


def test_a_second_triggerer_takes_over_every_wait_keeping_deadlines_and_sending_nothing_twice(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    stuck = [simulator.add_message("queued") for _ in range(RUNS)]
    sends_before = simulator.request_count(SEND)
    runs = [
        airflow.trigger(DAG_ID, {"destination_phone": STAYS_QUEUED_PHONE, "stuck_message_id": stuck[i]})
        for i in range(RUNS)
    ]
    deferred = {
        (run_id, task_id): airflow.wait_state(DAG_ID, run_id, task_id, {"deferred"}, timeout=120)
        for run_id in runs
        for task_id in TASKS
    }
    bodies = {f"HA triggerers: {run_id}" for run_id in runs}
    sent = [m.message_id for m in simulator.messages.values() if m.body in bodies]
    assert len(sent) == RUNS
    waits = set(stuck) | set(sent)
    wait_for("every wait to be polled", lambda: _polled_since(simulator, waits, 0.0) == waits, timeout=60)
    holders = wait_for("every trigger to be assigned", lambda: _holders(airflow, runs), timeout=60)
    assert len(holders) == 1, holders  # one triggerer runs so far: it holds every wait

    # A second triggerer joins; it takes nothing from a healthy one. Then the holder crashes.
    airflow.start_component("triggerer-2", kind="triggerer")
    time.sleep(3.0)
    assert _holders(airflow, runs) == holders
    airflow.kill_component("triggerer")
    killed_at = time.time()

    # Airflow reassigns the dead triggerer's triggers once its heartbeat is stale (8 s here).
    wait_for(
        "the second triggerer to poll every wait",
        lambda: _polled_since(simulator, waits, killed_at + 0.5) == waits,
        timeout=90,
    )
    adopted = _holders(airflow, runs)
    assert adopted is not None and len(adopted) == 1 and adopted != holders, (holders, adopted)

    for message_id in sent:  # only the second triggerer can see these deliveries
        simulator.add_message("delivered", message_id=message_id)
    for run_id in runs:
        done = airflow.wait_state(DAG_ID, run_id, "send_and_wait", {"success", "failed"}, timeout=90)
        assert done["state"] == "success", airflow.task_log(DAG_ID, run_id, "send_and_wait")
        assert done["try_number"] == 1
        assert airflow.xcom(DAG_ID, run_id, "send_and_wait")["status"] == "delivered"

        # The stuck message times out at the deadline set when the sensor deferred, not a fresh
        # one counted from the takeover.
        sensor = airflow.wait_state(DAG_ID, run_id, "wait_past_deadline", {"failed", "success"}, timeout=120)
        assert sensor["state"] == "failed"
        log = airflow.wait_log(DAG_ID, run_id, "wait_past_deadline", "OctopodsTimeoutError")
        assert "last status 'queued'" in log
        deferred_at = _api_time(deferred[(run_id, "wait_past_deadline")]["start_date"])
        ended_at = _api_time(sensor["end_date"])
        assert HA_SENSOR_TIMEOUT <= ended_at - deferred_at < HA_SENSOR_TIMEOUT + 20, (deferred_at, ended_at)
        assert ended_at - killed_at < HA_SENSOR_TIMEOUT + 20

    assert simulator.request_count(SEND) - sends_before == RUNS  # one SMS per run, none sent twice
    # The survivor is now the deployment's triggerer (later tests may kill and restart it).
    airflow.processes["triggerer"] = airflow.processes.pop("triggerer-2")
    airflow.wait_healthy(timeout=60, components=["triggerer"])
