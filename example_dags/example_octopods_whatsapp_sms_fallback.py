"""
Example: a WhatsApp template first, and an SMS only if WhatsApp did not deliver it in time.

The ``whatsapp`` task sends the template and waits, deferred to the triggerer, until it is
delivered (``read`` and ``deleted`` count); it fails when the message ends ``failed``, when
10 minutes pass without delivery, or when the send itself fails. Trigger rules do the rest:
``sms_fallback`` runs only when ``whatsapp`` failed (``all_failed``) and is skipped when it
succeeded. The run succeeds either way; the ``whatsapp`` task's state says which way it went.

Both tasks send to ``params.destination_phone``; override it, and ``params.template_id``, with
the run's conf, e.g. ``{"destination_phone": "+12015550101"}``, a number the simulator's WhatsApp
fails ("Recipient is not a WhatsApp user."). The connections: ``octopods_whatsapp_default`` (the
WhatsApp channel's key) and ``octopods_default`` (the SMS channel's).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.operators.octopods import (
    OctopodsSendSmsOperator,
    OctopodsSendWhatsAppTemplateOperator,
)

with DAG(
    dag_id="example_octopods_whatsapp_sms_fallback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "template_id": 539, "name": "Alex", "order": "1234"},
    tags=["example", "octopods", "whatsapp"],
) as dag:
    # [START howto_operator_octopods_whatsapp_sms_fallback]
    whatsapp = OctopodsSendWhatsAppTemplateOperator(
        task_id="whatsapp",
        template_id="{{ params.template_id }}",
        destination_phone="{{ params.destination_phone }}",
        message_variables=["{{ params.name }}", "{{ params.order }}"],
        wait_for_delivery=True,  # fail unless delivered ...
        timeout=timedelta(minutes=10),  # ... within 10 minutes of the send
        deferrable=True,
        retries=0,  # no retry to wait for: the SMS goes out as soon as this task fails
        octopods_conn_id="octopods_whatsapp_default",
    )

    sms_fallback = OctopodsSendSmsOperator(
        task_id="sms_fallback",
        destination_phone="{{ params.destination_phone }}",
        body="Hi {{ params.name }}, your order {{ params.order }} has shipped.",
        trigger_rule="all_failed",  # only when the WhatsApp task failed; skipped otherwise
        octopods_conn_id="octopods_default",
    )

    whatsapp >> sms_fallback
    # [END howto_operator_octopods_whatsapp_sms_fallback]
