"""
The provider in a real Airflow 3 deployment: API server, scheduler with the LocalExecutor and one
executor slot, DAG processor and triggerer on PostgreSQL, with DAG runs triggered through the
REST API and checked through it (states, XCom, logs) and in the database.

``dag.test()`` runs triggers inline; here the sensor really defers, the triggerer really polls
the simulator, and the scheduler really resumes the task on a worker.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods.testing import FAILURE_REASONS, Status
from tests.e2e.conftest import E2E_API_KEY
from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment, PostgresServer

DAG_ID = "octopods_e2e_deferral"
SENSOR = "wait_for_delivery"
TRIGGER_CLASSPATH = "airflow_provider_octopods.triggers.octopods.OctopodsSmsDeliveryTrigger"
# The tests deliver (or fail) an SMS only once ``other_work`` has run, i.e. once the worker that
# deferred the sensor has exited. Airflow 3.3.2's scheduler fails a task whose trigger fires while
# the executor's "success" for the deferring run is still unprocessed and the resumed run already
# queued ("state mismatch": apache/airflow#66374, #67287, #72716). The provider's default
# initial_delay (5 s) keeps real runs clear of that window; the test DAG polls after 0.2 s.


def polls_of(simulator: OctopodsSimulator, message_id: int, since: float = 0.0) -> int:
    """How many status requests for ``message_id`` reached the simulator after ``since``."""
    path = f"/api/v1/sms/messages/{message_id}"
    return sum(1 for r in list(simulator.requests) if r.path == path and r.at >= since)


def wait_polled(simulator: OctopodsSimulator, message_id: int, since: float, what: str) -> None:
    """Wait until the triggerer polls ``message_id`` (a request after ``since``)."""
    wait_for(what, lambda: polls_of(simulator, message_id, since) > 0, timeout=60)


def test_deferred_sensor_frees_its_worker_slot_and_resumes_after_the_trigger_fires(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    message_id = simulator.add_message("queued")  # stays queued until we say otherwise

    run_id = airflow.trigger(DAG_ID, {"message_id": message_id})

    deferred = airflow.wait_state(DAG_ID, run_id, SENSOR, {"deferred"})
    assert deferred["trigger"]["classpath"] == TRIGGER_CLASSPATH
    assert E2E_API_KEY not in str(deferred)
    wait_polled(simulator, message_id, 0.0, f"the triggerer to poll SMS {message_id}")

    # One executor slot: other_work can only run because the deferred sensor gave it back.
    other = airflow.wait_state(DAG_ID, run_id, "other_work", {"success"}, timeout=90)
    sensor = airflow.task_instance(DAG_ID, run_id, SENSOR)
    assert sensor["state"] == "deferred", sensor
    assert other["start_date"] > sensor["start_date"]
    assert sensor["triggerer_job"]["job_type"] == "TriggererJob"
    assert sensor["triggerer_job"]["state"] == "running"
    polls_while_deferred = polls_of(simulator, message_id)

    simulator.add_message("delivered", message_id=message_id)

    done = airflow.wait_state(DAG_ID, run_id, SENSOR, {"success", "failed"}, timeout=90)
    assert done["state"] == "success", airflow.task_log(DAG_ID, run_id, SENSOR)
    assert done["try_number"] == 1  # resumed after the trigger fired, not retried
    assert polls_of(simulator, message_id) > polls_while_deferred
    xcom = airflow.xcom(DAG_ID, run_id, SENSOR)
    assert xcom["message_id"] == message_id
    assert xcom["status"] == "delivered"
    assert xcom["delivered_at"]
    log = airflow.task_log(DAG_ID, run_id, SENSOR)
    assert "Pausing task as DEFERRED" in log
    assert "Trigger fired event" in log
    assert f"SMS {message_id} delivered at" in log
    assert airflow.wait_run(DAG_ID, run_id) == "success"


@pytest.mark.parametrize(
    ("status", "reason"),
    [("undelivered", FAILURE_REASONS["carrier_blocked"]), ("failed", FAILURE_REASONS["invalid_number"])],
)
def test_failed_delivery_fails_the_task_with_the_reason_in_its_log(
    airflow: AirflowDeployment, simulator: OctopodsSimulator, status: str, reason: str
) -> None:
    message_id = simulator.add_message("queued")
    run_id = airflow.trigger(DAG_ID, {"message_id": message_id})
    airflow.wait_state(DAG_ID, run_id, SENSOR, {"deferred"})
    airflow.wait_state(DAG_ID, run_id, "other_work", {"success"}, timeout=90)  # the race above

    simulator.add_message("sent", Status(status, reason), message_id=message_id)

    ended = airflow.wait_state(DAG_ID, run_id, SENSOR, {"failed", "success"}, timeout=90)
    log = airflow.wait_log(DAG_ID, run_id, SENSOR, "OctopodsDeliveryError")
    assert ended["state"] == "failed", log
    assert "Pausing task as DEFERRED" in log
    assert "OctopodsDeliveryError" in log
    assert f"SMS {message_id} was not delivered: status '{status}', failure_reason: {reason}" in log
    with pytest.raises(AssertionError, match="404"):
        airflow.xcom(DAG_ID, run_id, SENSOR)
    assert airflow.wait_run(DAG_ID, run_id) == "failed"


def test_deferred_task_completes_after_the_triggerer_is_killed_and_restarted(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    message_id = simulator.add_message("queued")
    run_id = airflow.trigger(DAG_ID, {"message_id": message_id})
    airflow.wait_state(DAG_ID, run_id, SENSOR, {"deferred"})
    wait_polled(simulator, message_id, 0.0, f"the first triggerer to poll SMS {message_id}")
    first_job = airflow.task_instance(DAG_ID, run_id, SENSOR)["triggerer_job"]

    airflow.kill_component("triggerer")  # SIGKILL: no clean shutdown, as in a crash
    killed_at = time.time()
    time.sleep(2.0)
    assert polls_of(simulator, message_id, since=killed_at + 0.5) == 0, "something still polls"
    assert airflow.task_instance(DAG_ID, run_id, SENSOR)["state"] == "deferred"

    restarted_at = time.time()
    airflow.start_component("triggerer")
    # The new triggerer adopts the trigger once the dead one's heartbeat is stale.
    wait_polled(simulator, message_id, restarted_at, f"the restarted triggerer to poll SMS {message_id}")
    adopted = airflow.task_instance(DAG_ID, run_id, SENSOR)
    assert adopted["state"] == "deferred"
    assert adopted["triggerer_job"]["id"] != first_job["id"]

    simulator.add_message("delivered", message_id=message_id)  # only the new triggerer can see it

    done = airflow.wait_state(DAG_ID, run_id, SENSOR, {"success", "failed"}, timeout=90)
    assert done["state"] == "success", airflow.task_log(DAG_ID, run_id, SENSOR)
    assert airflow.xcom(DAG_ID, run_id, SENSOR)["status"] == "delivered"
    assert airflow.wait_run(DAG_ID, run_id) == "success"
    airflow.wait_healthy(timeout=60, components=["triggerer"])


#: The example DAGs that wait in the triggerer: (dag_id, deferring task, final XCom's shape).
EXAMPLES = [
    ("example_octopods_sms_delivery", "wait_for_delivery", dict),
    ("example_octopods_send_and_wait", "send_and_wait", dict),
    ("example_octopods_send_then_sensor", "wait_for_delivery", dict),
    ("example_octopods_batch_delivery", "wait_for_all", list),
]


def test_example_dags_send_defer_and_succeed(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    """The shipped example DAGs, unchanged (realistic 10 s intervals), with their default params."""
    sent_before = simulator.request_count("/api/v1/sms/messages")
    runs = {dag_id: airflow.trigger(dag_id, {}) for dag_id, _, _ in EXAMPLES}
    seen: dict[str, set[str]] = {dag_id: set() for dag_id in runs}

    def all_finished() -> bool:
        finished = True
        for dag_id, task_id, _ in EXAMPLES:
            state = airflow.task_instance(dag_id, runs[dag_id], task_id)["state"]
            seen[dag_id].add(str(state))
            finished &= state in {"success", "failed"}
        return finished

    wait_for("the example DAGs to finish", all_finished, timeout=240, interval=0.5)

    for dag_id, task_id, shape in EXAMPLES:
        run_id = runs[dag_id]
        assert "deferred" in seen[dag_id], f"{dag_id}.{task_id} never deferred: {seen[dag_id]}"
        state = airflow.task_instance(dag_id, run_id, task_id)["state"]
        assert state == "success", f"{dag_id}: {airflow.task_log(dag_id, run_id, task_id)}"
        final: Any = airflow.xcom(dag_id, run_id, task_id)
        assert isinstance(final, shape)
        statuses = final if isinstance(final, list) else [final]
        assert statuses and {s["status"] for s in statuses} == {"delivered"}, final
        assert all(s["message_id"] in simulator.messages for s in statuses)
        assert airflow.wait_run(dag_id, run_id) == "success"
    assert simulator.request_count("/api/v1/sms/messages") - sent_before == 6  # 1 + 1 + 1 + 3 sends


def test_api_key_is_in_no_log_and_not_in_clear_in_the_database(
    airflow: AirflowDeployment, postgres: PostgresServer
) -> None:
    """After everything above: component, task and trigger logs, and a dump of the whole database."""
    logs = airflow.all_log_text()
    assert b"Pausing task as DEFERRED" in logs  # the logs we search are the real ones
    assert E2E_API_KEY.encode() not in logs
    dump = postgres.dump()
    assert b"COPY public.connection" in dump
    assert E2E_API_KEY.encode() not in dump
