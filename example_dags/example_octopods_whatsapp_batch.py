"""
Example: send a WhatsApp template to several numbers, then wait on all of them with one sensor.

The send is mapped, one task instance (and one message) per number; ``OctopodsWhatsAppDeliverySensor``
takes every send's XCom and waits, deferred to the triggerer, until each message is delivered
(``read`` and ``deleted`` count). While more than one message is pending, each round reads
Octopods' list of the key's newest 100 sends once and asks for the others by id. The sensor's
XCom is the list of final statuses, in the order of the sends.

Trigger it once an ``octopods_whatsapp_default`` connection (the WhatsApp channel's key) exists;
``params.template_id`` (an approved template of yours with two body placeholders) can be
overridden in the run's conf.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendWhatsAppTemplateOperator
from airflow_provider_octopods.sensors.octopods import OctopodsWhatsAppDeliverySensor

with DAG(
    dag_id="example_octopods_whatsapp_batch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"template_id": 539, "name": "Alex", "order": "1234"},
    tags=["example", "octopods", "whatsapp"],
) as dag:
    # [START howto_sensor_octopods_whatsapp_batch]
    send_whatsapp = OctopodsSendWhatsAppTemplateOperator.partial(
        task_id="send_whatsapp",
        template_id="{{ params.template_id }}",
        message_variables=["{{ params.name }}", "{{ params.order }}"],
    ).expand(destination_phone=["+12015550123", "+12015550124", "+12015550125"])

    wait_for_all = OctopodsWhatsAppDeliverySensor(
        task_id="wait_for_all",
        message_ids=send_whatsapp.output,  # every send's XCom; its message_id is read
        wait_for="delivered",  # or "read": wait for every read receipt
        deferrable=True,
        poke_interval=10,
        timeout=30 * 60,
        octopods_conn_id="octopods_whatsapp_default",
    )
    # [END howto_sensor_octopods_whatsapp_batch]
