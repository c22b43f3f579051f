"""
The end-to-end HA-triggerer DAG: a deferrable send-and-wait and a deferrable sensor whose wait
outlives its 60-second deadline, so both are deferred when the triggerer holding them is killed.

Short poll intervals; ``send_and_wait`` sends to ``params.destination_phone`` (the test gives a
number the simulator keeps queued until told otherwise), ``wait_past_deadline`` waits on
``params.stuck_message_id``, a message that never leaves the queue.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

#: The sensor's deadline: long enough for both tasks to defer and for a triggerer to take over.
HA_SENSOR_TIMEOUT = 60

with DAG(
    "octopods_e2e_ha",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "", "stuck_message_id": 0},
    tags=["octopods", "e2e"],
):
    OctopodsSendSmsOperator(
        task_id="send_and_wait",
        destination_phone="{{ params.destination_phone }}",
        body="HA triggerers: {{ run_id }}",
        wait_for_delivery=True,
        deferrable=True,
        poll_interval=0.5,
        initial_delay=0.2,
        max_poll_interval=1.0,
        timeout=300,
    )
    OctopodsSmsDeliverySensor(
        task_id="wait_past_deadline",
        message_id="{{ params.stuck_message_id }}",
        deferrable=True,
        poke_interval=0.5,
        initial_delay=0.2,
        max_poll_interval=1.0,
        timeout=HA_SENSOR_TIMEOUT,
    )
