"""
Example: TaskFlow code that calls the Octopods hook itself, retried by the provider's policy.

Needs Airflow 3.3 or newer (task retry policies). ``octopods_retry_policy()`` retries a task that
failed on trouble a retry can fix (HTTP 429 or 5xx on a status request, Octopods' SMS provider
error, a connection that never opened), after the ``Retry-After`` Octopods asked for; it fails the
task at once on a rejected key, an invalid argument, an undelivered SMS, and on trouble after a
send had left, when the SMS may already be on its way: a retry could text the recipient twice.

Trigger it with a conf such as ``{"destination_phone": "+12015550123"}`` once an
``octopods_default`` connection exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.hooks.octopods import OctopodsHook
from airflow_provider_octopods.retry import octopods_retry_policy

with DAG(
    dag_id="example_octopods_retry_policy",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"destination_phone": "+12015550123", "body": "Your nightly report is ready."},
    tags=["example", "octopods"],
) as dag:
    # [START howto_retry_policy_octopods]
    @task(retries=3, retry_delay=timedelta(seconds=30), retry_policy=octopods_retry_policy())
    def send_sms(params: dict[str, Any] | None = None) -> int:
        """Send the SMS; a 429 is retried after its Retry-After, a 5xx fails at once (maybe sent)."""
        assert params is not None
        hook = OctopodsHook(octopods_conn_id="octopods_default")
        try:
            return hook.send_sms(params["destination_phone"], params["body"]).message_id
        finally:
            hook.close()

    @task(retries=3, retry_delay=timedelta(seconds=30), retry_policy=octopods_retry_policy())
    def read_status(message_id: int) -> str:
        """Read the SMS's status once; passing trouble on this read is retried."""
        hook = OctopodsHook(octopods_conn_id="octopods_default")
        try:
            return hook.get_sms_status(message_id).status
        finally:
            hook.close()

    read_status(send_sms())
    # [END howto_retry_policy_octopods]
