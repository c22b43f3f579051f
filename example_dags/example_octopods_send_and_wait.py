"""
Example: send an SMS and wait, in the same task, until the carrier confirms delivery.

``OctopodsSendSmsOperator`` sends the SMS once, then defers to the triggerer, which polls
Octopods until the SMS is final; the worker slot is free meanwhile. The task's XCom is the final
status (with its ``message_id``). An SMS that ends ``failed`` or ``undelivered`` fails the task,
without retries and without sending again, with Octopods' ``failure_reason``.

Run it against the bundled simulator with ``make demo``, or trigger it with a conf such as
``{"destination_phone": "+12015550123"}`` once an ``octopods_default`` connection exists.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator

with DAG(
    dag_id="example_octopods_send_and_wait",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "body": "Your nightly report is ready."},
    tags=["example", "octopods"],
) as dag:
    # [START howto_operator_octopods_send_sms_and_wait]
    send_and_wait = OctopodsSendSmsOperator(
        task_id="send_and_wait",
        destination_phone="{{ params.destination_phone }}",  # templated
        body="{{ params.body }}",  # templated
        wait_for_delivery=True,
        deferrable=True,  # wait in the triggerer, not in a worker slot
        poll_interval=10,  # first interval; grows 1.5x per poll up to 60 s
        timeout=30 * 60,  # fail, without retries, if not final within 30 minutes
        octopods_conn_id="octopods_default",
    )
    # [END howto_operator_octopods_send_sms_and_wait]
