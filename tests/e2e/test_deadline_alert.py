"""
SMS deadline alerts in a real deployment: a DAG run misses its Deadline Alert, the scheduler
queues the ``OctopodsSmsNotifier`` callback, the triggerer runs its async path, and the simulator
receives one SMS whose text was rendered from the deadline's context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.e2e.conftest import E2E_API_KEY
from tests.e2e.dags.octopods_e2e_deadline import DEADLINE_ALERT_PHONE
from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment

DAG_ID = "octopods_e2e_deadline"


def test_a_missed_deadline_texts_the_rendered_alert_from_the_triggerer(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    run_id = airflow.trigger(DAG_ID, {"hold_seconds": 20})

    def alert_sent() -> list[str] | None:
        airflow.check_alive()
        with simulator._lock:
            bodies = [m.body for m in simulator.messages.values() if m.phone_number == DEADLINE_ALERT_PHONE]
        return bodies or None

    bodies = wait_for("the deadline alert SMS to reach the simulator", alert_sent, timeout=90)
    assert len(bodies) == 1, bodies
    body = bodies[0]
    assert body.startswith(f"Deadline missed: {DAG_ID} / {run_id} / due "), body
    assert "{{" not in body and "}}" not in body, body
    due = body.rsplit("due ", 1)[1]
    assert due[:4].isdigit() and due[4] == "-", body  # a rendered timestamp (2026-...), not empty

    # The alert did not wait for the run, nor stop it: the run still finishes on its own.
    assert airflow.wait_run(DAG_ID, run_id, timeout=120) == "success"
    # The callback ran in the triggerer, with the connection's key, which is in none of its logs.
    sends = [r for r in list(simulator.requests) if r.method == "POST" and r.had_key]
    assert sends, "the alert was sent without the connection's key"
    assert E2E_API_KEY.encode() not in airflow.all_log_text()
