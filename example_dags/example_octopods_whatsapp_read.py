"""
Example: send a WhatsApp template and wait, in the same task, until the recipient reads it.

``OctopodsSendWhatsAppTemplateOperator`` reads the key's templates, checks the template and the
variables against it, sends it once, then defers to the triggerer until Octopods reports the
message ``read``. ``delivered`` is not enough here: a message delivered but not read within
``timeout`` fails the task, naming when it was delivered; one that ends ``failed`` fails it at
once, with Octopods' ``failure_reason``. The task's XCom is the final status, with ``read_at``
and ``template_id``.

Trigger it with a conf such as ``{"destination_phone": "+12015550123"}`` once an
``octopods_whatsapp_default`` connection (the WhatsApp channel's key) exists. Template 539 has a
body with two placeholders ("Hi {{1}}, your order {{2}} has shipped." in the simulator): give the
id of one of your own templates in ``template_id``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import OctopodsSendWhatsAppTemplateOperator

with DAG(
    dag_id="example_octopods_whatsapp_read",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "template_id": 539, "name": "Alex", "order": "1234"},
    tags=["example", "octopods", "whatsapp"],
) as dag:
    # [START howto_operator_octopods_whatsapp_read]
    send_and_wait_read = OctopodsSendWhatsAppTemplateOperator(
        task_id="send_and_wait_read",
        template_id="{{ params.template_id }}",  # templated; an approved template of the key
        destination_phone="{{ params.destination_phone }}",  # templated
        # Every placeholder is in the body: one value each, in order (each one templated).
        message_variables=["{{ params.name }}", "{{ params.order }}"],
        wait_for_delivery=True,
        wait_for="read",  # delivered is not final: wait for the read receipt
        deferrable=True,  # wait in the triggerer, not in a worker slot
        poll_interval=10,  # first interval; grows 1.5x per poll up to 60 s
        timeout=60 * 60,  # fail, without retries, if not read within an hour of the send
        octopods_conn_id="octopods_whatsapp_default",
    )
    # [END howto_operator_octopods_whatsapp_read]
