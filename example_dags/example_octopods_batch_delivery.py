"""
Example: send one SMS per recipient and wait for all of them with a single sensor.

The send is mapped over the recipients (one task instance, and one SMS, per number); one
deferrable sensor then waits on every message id with a single trigger, polling at most
``max_concurrency`` messages at once. It returns the final statuses in the order of the ids and,
if any SMS was not delivered, fails naming each one with Octopods' ``failure_reason``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

with DAG(
    dag_id="example_octopods_batch_delivery",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "destination_phones": ["+12015550123", "+12015550124", "+12015550125"],
        "body": "Planned maintenance tonight from 22:00 to 23:00 UTC.",
    },
    tags=["example", "octopods"],
) as dag:

    @task
    def recipients(params: dict | None = None) -> list[str]:
        """Return the numbers to text (from a database or an API in real life)."""
        return list((params or {})["destination_phones"])

    # [START howto_sensor_octopods_batch_delivery]
    send_sms = OctopodsSendSmsOperator.partial(task_id="send_sms", body="{{ params.body }}").expand(
        destination_phone=recipients()
    )

    wait_for_all = OctopodsSmsDeliverySensor(
        task_id="wait_for_all",
        # every message id the mapped send returned, as "4829174,4829175,4829176"
        message_ids="{{ ti.xcom_pull(task_ids='send_sms') | map(attribute='message_id') | join(',') }}",
        deferrable=True,
        poke_interval=10,
        timeout=30 * 60,
        max_concurrency=10,  # status requests in flight at once
    )

    send_sms >> wait_for_all
    # [END howto_sensor_octopods_batch_delivery]
