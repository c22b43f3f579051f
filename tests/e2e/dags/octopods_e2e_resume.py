"""
The end-to-end exactly-once DAG: a send-and-wait in the worker (not deferred) with one retry.

The test SIGKILLs the task's process after the send, while it waits; Airflow retries the task,
which reads the message id back from the task state store and resumes the wait (Airflow 3.3+).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator

with DAG(
    "octopods_e2e_resume",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": ""},
    tags=["octopods", "e2e"],
):
    OctopodsSendSmsOperator(
        task_id="send_and_wait",
        destination_phone="{{ params.destination_phone }}",
        body="Exactly once: {{ run_id }}",
        wait_for_delivery=True,
        deferrable=False,
        poll_interval=0.5,
        initial_delay=0.2,
        max_poll_interval=1.0,
        timeout=300,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
