"""
The end-to-end WhatsApp DAGs, on the ``octopods_whatsapp_default`` connection (the simulator's
WhatsApp key).

- ``octopods_e2e_whatsapp_read``: a deferrable send of template 539 that waits in the triggerer
  until the message is ``read`` (the simulator reads it 2 s after the send).
- ``octopods_e2e_whatsapp_fallback``: a deferrable WhatsApp send-and-wait to
  ``params.destination_phone`` and, only if it fails, an SMS to the same number
  (``trigger_rule="all_failed"``). A number WhatsApp delivers skips the SMS; +12015550101
  ("Recipient is not a WhatsApp user." in the simulator) fails the WhatsApp task and sends the SMS.

Short intervals. The fallback's wait starts polling 2 s after the send: a trigger that fires the
moment it starts can meet Airflow 3.3.2's "state mismatch" window (see ``test_deployment.py``),
and the failing number fails at the simulator's ``sent_after`` (0.3 s).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import (
    OctopodsSendSmsOperator,
    OctopodsSendWhatsAppTemplateOperator,
)

#: The simulator's body-only template: "Hi {{1}}, your order {{2}} has shipped."
TEMPLATE_ID = 539
#: A number the simulator's WhatsApp delivers, then reads.
READ_PHONE = "+12015550123"
#: What the fallback's SMS says; the test finds its send by it.
FALLBACK_BODY = "WhatsApp did not reach you: {{ run_id }}"

with DAG(
    "octopods_e2e_whatsapp_read",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["octopods", "e2e", "whatsapp"],
):
    OctopodsSendWhatsAppTemplateOperator(
        task_id="send_and_wait_read",
        template_id=TEMPLATE_ID,
        destination_phone=READ_PHONE,
        message_variables=["Alex", "1234"],
        wait_for_delivery=True,
        wait_for="read",
        deferrable=True,
        poll_interval=1,
        initial_delay=0,
        max_poll_interval=1,
        timeout=60,
    )

with DAG(
    "octopods_e2e_whatsapp_fallback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": READ_PHONE},
    tags=["octopods", "e2e", "whatsapp"],
):
    whatsapp = OctopodsSendWhatsAppTemplateOperator(
        task_id="whatsapp",
        template_id=TEMPLATE_ID,
        destination_phone="{{ params.destination_phone }}",
        message_variables=["Alex", "1234"],
        wait_for_delivery=True,
        deferrable=True,
        poll_interval=1,
        initial_delay=2,
        max_poll_interval=1,
        timeout=30,
        retries=0,
    )
    sms_fallback = OctopodsSendSmsOperator(
        task_id="sms_fallback",
        destination_phone="{{ params.destination_phone }}",
        body=FALLBACK_BODY,
        trigger_rule="all_failed",
        retries=0,
    )
    whatsapp >> sms_fallback
