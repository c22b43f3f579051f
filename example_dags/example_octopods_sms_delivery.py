"""
Example: gate a DAG on an SMS being delivered.

An upstream task sends an SMS through Octopods and returns its ``message_id`` (pushed to XCom);
the sensor pulls it from XCom and waits, deferred to the triggerer, until the carrier confirms
delivery. The sensor's XCom is the final status; a ``failed`` or ``undelivered`` SMS fails the
task (without retries) with Octopods' ``failure_reason``.

Run it against the bundled simulator with ``make demo``, or trigger it with a conf such as
``{"destination_phone": "+12015550123"}`` once an ``octopods_default`` connection exists.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

with DAG(
    dag_id="example_octopods_sms_delivery",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "body": "Your nightly report is ready."},
    tags=["example", "octopods"],
) as dag:

    @task
    def send_sms(params: dict | None = None) -> int:
        """Send the SMS and return its message id (the task's XCom)."""
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        params = params or {}
        sent = OctopodsHook(octopods_conn_id="octopods_default").send_sms(
            destination_phone=params["destination_phone"], body=params["body"]
        )
        return sent.message_id

    # [START howto_sensor_octopods_sms_delivery_deferrable]
    wait_for_delivery = OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id="{{ ti.xcom_pull(task_ids='send_sms') }}",
        octopods_conn_id="octopods_default",
        deferrable=True,
        poke_interval=10,  # first interval; grows by 1.5x per poll up to max_poll_interval
        timeout=30 * 60,  # fail (without retries) if not final within 30 minutes
    )
    # [END howto_sensor_octopods_sms_delivery_deferrable]

    send_sms() >> wait_for_delivery
