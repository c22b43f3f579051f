"""
Example: text every recipient an upstream task returns, exactly once each, in one task.

``OctopodsBulkSendOperator`` takes the list an upstream ``@task`` returns (from an API, a file,
a query): one dict per recipient. It checks every row before the first send, sends within the
key's request budget, waits once for every message in the triggerer, and returns a delivery
report (counts by status, failure reasons, the rows not delivered).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator

with DAG(
    dag_id="example_octopods_bulk_list",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "octopods"],
) as dag:
    # [START howto_operator_octopods_bulk_list]
    @task
    def shipped_orders() -> list[dict]:
        """Return one message per customer whose order shipped (an API call in real life)."""
        return [
            {"key": "order-1001", "destination_phone": "+12015550123", "body": "Order 1001 has shipped."},
            {"key": "order-1002", "destination_phone": "+12015550124", "body": "Order 1002 has shipped."},
            {"key": "order-1003", "destination_phone": "(201) 555-0125", "body": "Order 1003 has shipped."},
        ]

    OctopodsBulkSendOperator(
        task_id="tell_customers",
        messages=shipped_orders(),
        channel="sms",
        on_invalid="skip",  # report a bad number (order-1003's, without a country code) and send the others
        min_delivered_ratio=0.6,  # fail the task if fewer than 60% of the rows were delivered (bad rows count)
        deferrable=True,
        timeout=60 * 60,
    )
    # [END howto_operator_octopods_bulk_list]
