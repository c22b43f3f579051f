"""
Example: send an SMS in one task and wait for its delivery in another.

``OctopodsSendSmsOperator`` (without ``wait_for_delivery``) returns ``SentSms.to_dict()`` as XCom;
``OctopodsSmsDeliverySensor`` pulls its ``message_id`` and waits, deferred to the triggerer. Two
tasks instead of one let other work run between the send and the wait, give the wait its own
timeout and retries, and let you clear the wait without sending the SMS again.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

with DAG(
    dag_id="example_octopods_send_then_sensor",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "body": "Your order has shipped."},
    tags=["example", "octopods"],
) as dag:
    # [START howto_operator_octopods_send_sms]
    send_sms = OctopodsSendSmsOperator(
        task_id="send_sms",
        destination_phone="{{ params.destination_phone }}",
        body="{{ params.body }}",
        destination_user_name="Ada Lovelace",  # shown in Octopods
    )
    # [END howto_operator_octopods_send_sms]

    # [START howto_sensor_octopods_wait_for_sent_sms]
    wait_for_delivery = OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id="{{ ti.xcom_pull(task_ids='send_sms')['message_id'] }}",
        deferrable=True,
        poke_interval=10,
        timeout=30 * 60,
    )
    # [END howto_sensor_octopods_wait_for_sent_sms]

    send_sms >> wait_for_delivery
