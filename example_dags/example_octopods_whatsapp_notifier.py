"""
Example: send the on-call engineer a WhatsApp template when a DAG run fails.

``OctopodsWhatsAppNotifier`` is a callback: here the DAG's ``on_failure_callback``; it works the
same as a task's. ``template_id``, ``destination_phone`` and each of ``message_variables`` are
Jinja templates rendered with the callback's context. The template is checked against the key's
templates before the send. If the message cannot be sent, the notifier logs why and returns: it
never raises into the callback.

Trigger it with the conf ``{"fail": true}`` to see the message go out, once an
``octopods_whatsapp_default`` connection (the WhatsApp channel's key) exists. Template 539 stands
for an approved template of yours with two body placeholders.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.notifications.octopods import OctopodsWhatsAppNotifier

# [START howto_notifier_octopods_whatsapp]
notify_on_call = OctopodsWhatsAppNotifier(
    template_id=539,  # an approved template with two placeholders, both in its body
    destination_phone="+12015550123",  # templated, e.g. "{{ var.value.on_call_phone }}"
    message_variables=["{{ dag.dag_id }}", "{{ run_id }}"],  # each one templated
    octopods_conn_id="octopods_whatsapp_default",
)

with DAG(
    dag_id="example_octopods_whatsapp_notifier",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"fail": False},
    on_failure_callback=notify_on_call,
    tags=["example", "octopods", "whatsapp"],
) as dag:

    @task
    def nightly_report(params: dict | None = None) -> str:
        """Build the report; fails on purpose when the run's conf says so."""
        if (params or {}).get("fail"):
            raise RuntimeError("The report's source table is empty.")
        return "report.csv"

    nightly_report()
    # [END howto_notifier_octopods_whatsapp]
