"""
DAGs for the WhatsApp tests (``tests/test_whatsapp.py``), fed by the run's conf; fast intervals.

- ``octopods_test_whatsapp_send_and_wait_read``: a template send, then a deferred wait for the read
  receipt; the variables come from ``params.variables`` rendered as text by Jinja
  (``"['Alex', '1234']"``); ``retries=1``, so a send a retry repeated would show as a second POST.
- ``octopods_test_whatsapp_send_and_wait_cut``: a send-and-wait in the worker cut by a 1 s
  ``execution_timeout``, with ``retries=2`` (a retry must resume the wait, never send again).
- ``octopods_test_<channel>_untrackable_<policy>`` (channel = whatsapp, sms; policy = fail,
  succeed): a send-and-wait with ``on_untrackable=<policy>``, ``retries=1``.
- ``octopods_test_whatsapp_sensor_read``: the WhatsApp sensor, deferred, waiting for the read
  receipts of ``params.message_ids``.
- ``octopods_test_whatsapp_notifier``: a task whose success callback is the WhatsApp notifier.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.notifications.octopods import OctopodsWhatsAppNotifier
from airflow_provider_octopods.operators.octopods import (
    OctopodsSendSmsOperator,
    OctopodsSendWhatsAppTemplateOperator,
)
from airflow_provider_octopods.sensors.octopods import OctopodsWhatsAppDeliverySensor

FAST_WAIT = {"poll_interval": 0.05, "initial_delay": 0.0, "max_poll_interval": 0.1}
FAST_SENSOR = {"poke_interval": 0.05, "initial_delay": 0.0, "max_poll_interval": 0.1}
START = datetime(2026, 1, 1)
PARAMS = {"template_id": 539, "destination_phone": "+12015550123", "variables": ["Alex", "1234"]}
SEND_ARGS = {
    "template_id": "{{ params.template_id }}",
    "destination_phone": "{{ params.destination_phone }}",
    "message_variables": "{{ params.variables }}",
}

with DAG(
    "octopods_test_whatsapp_send_and_wait_read",
    schedule=None,
    start_date=START,
    params=PARAMS,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    OctopodsSendWhatsAppTemplateOperator(
        task_id="send_whatsapp",
        wait_for_delivery=True,
        wait_for="read",
        deferrable=True,
        timeout=20,
        **SEND_ARGS,
        **FAST_WAIT,
    )

with DAG(
    "octopods_test_whatsapp_send_and_wait_cut",
    schedule=None,
    start_date=START,
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
):
    OctopodsSendWhatsAppTemplateOperator(
        task_id="send_whatsapp",
        wait_for_delivery=True,
        timeout=60,
        execution_timeout=timedelta(seconds=1),
        **SEND_ARGS,
        **FAST_WAIT,
    )

for _policy in ("fail", "succeed"):
    with DAG(
        f"octopods_test_whatsapp_untrackable_{_policy}",
        schedule=None,
        start_date=START,
        params=PARAMS,
        default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    ):
        OctopodsSendWhatsAppTemplateOperator(
            task_id="send_whatsapp",
            wait_for_delivery=True,
            on_untrackable=_policy,
            timeout=20,
            **SEND_ARGS,
            **FAST_WAIT,
        )

    with DAG(
        f"octopods_test_sms_untrackable_{_policy}",
        schedule=None,
        start_date=START,
        params={"destination_phone": "+12015550123"},
        default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
    ):
        OctopodsSendSmsOperator(
            task_id="send_sms",
            destination_phone="{{ params.destination_phone }}",
            body="Your order has shipped.",
            wait_for_delivery=True,
            on_untrackable=_policy,
            timeout=20,
            **FAST_WAIT,
        )

with DAG(
    "octopods_test_whatsapp_sensor_read",
    schedule=None,
    start_date=START,
    params={"message_ids": []},
):
    OctopodsWhatsAppDeliverySensor(
        task_id="wait_for_read",
        message_ids="{{ params.message_ids | join(',') }}",
        wait_for="read",
        deferrable=True,
        timeout=20,
        **FAST_SENSOR,
    )

with DAG(
    "octopods_test_whatsapp_notifier",
    schedule=None,
    start_date=START,
    params={"destination_phone": "+12015550123"},
):

    @task(
        on_success_callback=OctopodsWhatsAppNotifier(
            template_id=539,
            destination_phone="{{ params.destination_phone }}",
            message_variables=["{{ ti.task_id }}", "{{ dag.dag_id }}"],
        )
    )
    def nightly_report() -> str:
        return "done"

    nightly_report()
