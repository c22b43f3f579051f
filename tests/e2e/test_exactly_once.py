"""
A retried send never texts twice (Airflow 3.3's task state store): the process of a send-and-wait
task is SIGKILLed while it waits, Airflow retries the task, and the retry resumes the wait on the
message it sent. The simulator sees one POST; the task ends ``success`` with the delivered status.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import psutil

from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment

DAG_ID = "octopods_e2e_resume"
TASK = "send_and_wait"
SEND = "/api/v1/sms/messages"
#: The simulator keeps an SMS to this number queued until the test scripts it.
STAYS_QUEUED_PHONE = "+12015550109"


def _task_processes_polling(simulator: OctopodsSimulator, airflow: AirflowDeployment) -> set[int]:
    """The processes holding a TCP connection to the simulator, but this one and the triggerer's."""
    port = int(simulator.url.rsplit(":", 1)[1])
    triggerer = psutil.Process(airflow.processes["triggerer"].pid)
    others = {os.getpid(), triggerer.pid, *(p.pid for p in triggerer.children(recursive=True))}
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.pid and c.pid not in others
    }


def test_a_killed_send_and_wait_is_retried_and_resumes_without_sending_again(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    sends_before = simulator.request_count(SEND)
    run_id = airflow.trigger(DAG_ID, {"destination_phone": STAYS_QUEUED_PHONE})

    def sent() -> int | None:
        with simulator._lock:
            ids = [m.message_id for m in simulator.messages.values() if m.body == f"Exactly once: {run_id}"]
        return ids[0] if ids else None

    message_id = wait_for("the task to send its SMS", sent, timeout=120)
    path = f"{SEND}/{message_id}"
    wait_for("the task to poll its SMS", lambda: simulator.request_count(path) > 0, timeout=60)
    (pid,) = wait_for(
        "the polling task process", lambda: _task_processes_polling(simulator, airflow) or None, timeout=30
    )

    os.kill(pid, signal.SIGKILL)  # as an OOM kill or a lost worker would

    retry = airflow.wait_state(DAG_ID, run_id, TASK, {"running"}, timeout=120)
    wait_for(
        "the retry to try 2",
        lambda: airflow.task_instance(DAG_ID, run_id, TASK)["try_number"] == 2,
        timeout=60,
    )
    polls_before = simulator.request_count(path)
    wait_for(
        "the retry to poll the same SMS", lambda: simulator.request_count(path) > polls_before, timeout=60
    )
    simulator.add_message("delivered", message_id=message_id)

    done = airflow.wait_state(DAG_ID, run_id, TASK, {"success", "failed"}, timeout=120)
    assert done["state"] == "success", airflow.task_log(DAG_ID, run_id, TASK, try_number=2)
    assert done["try_number"] == 2, retry
    final = airflow.xcom(DAG_ID, run_id, TASK)
    assert final["message_id"] == message_id and final["status"] == "delivered"
    assert simulator.request_count(SEND) - sends_before == 1  # one POST: the retry did not send
    log = airflow.wait_log(DAG_ID, run_id, TASK, "not sending it again", try_number=2)
    assert f"SMS {message_id} was sent by an earlier try of this task; not sending it again." in log
