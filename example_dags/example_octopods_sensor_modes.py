"""
Example: wait for SMS delivery in ``poke`` or ``reschedule`` mode, and use the final status.

A gallery for the documentation: the same SMS is waited on by a sensor in ``poke`` mode and by one
in ``reschedule`` mode, and a downstream task reads the final status from XCom. Deferrable mode,
the best choice for long waits, is in ``example_octopods_sms_delivery`` and
``example_octopods_send_then_sensor``; waiting on many messages is in
``example_octopods_batch_delivery``.

Every sensor returns the final status as XCom and fails, without retries, when an SMS ends
``failed`` or ``undelivered`` (with Octopods' ``failure_reason``) or when ``timeout`` passes.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

with DAG(
    dag_id="example_octopods_sensor_modes",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "body": "The nightly load finished."},
    tags=["example", "octopods"],
) as dag:
    send_sms = OctopodsSendSmsOperator(
        task_id="send_sms",
        destination_phone="{{ params.destination_phone }}",
        body="{{ params.body }}",
    )

    # [START howto_sensor_octopods_sms_delivery_poke]
    wait_poke = OctopodsSmsDeliverySensor(
        task_id="wait_poke",
        message_id="{{ ti.xcom_pull(task_ids='send_sms')['message_id'] }}",
        deferrable=False,
        mode="poke",  # keeps its worker slot between polls
        poke_interval=15,  # seconds between polls
        timeout=10 * 60,  # fail, without retries, if the SMS is not final after 10 minutes
    )
    # [END howto_sensor_octopods_sms_delivery_poke]

    # [START howto_sensor_octopods_sms_delivery_reschedule]
    wait_reschedule = OctopodsSmsDeliverySensor(
        task_id="wait_reschedule",
        message_id="{{ ti.xcom_pull(task_ids='send_sms')['message_id'] }}",
        deferrable=False,
        mode="reschedule",  # frees its worker slot between polls
        poke_interval=60,
        timeout=2 * 60 * 60,  # counted from the first poke, across reschedules
    )
    # [END howto_sensor_octopods_sms_delivery_reschedule]

    # [START howto_sensor_octopods_sms_delivery_xcom]
    @task
    def record_delivery(status: dict) -> str:
        """Use the sensor's XCom: the final status of the SMS."""
        return f"SMS {status['message_id']} reached {status['phone_number']} at {status['delivered_at']}"

    record_delivery(wait_poke.output)
    # [END howto_sensor_octopods_sms_delivery_xcom]

    send_sms >> [wait_poke, wait_reschedule]
