"""
DAGs for the tests of bulk sends, fed by the run's conf.

- ``octopods_test_bulk_list``: ``OctopodsBulkSendOperator`` on the list an upstream ``@task``
  returns (``params.messages``), SMS or WhatsApp (``params.channel``), waiting in the worker.
- ``octopods_test_bulk_deferrable``: the same, deferred to the triggerer.
- ``octopods_test_bulk_sql``: ``SqlToOctopodsOperator`` on the SQLite connection ``bulk_db``
  (table ``orders``), writing ``results``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.operators.octopods import OctopodsBulkSendOperator
from airflow_provider_octopods.transfers.sql_to_octopods import SqlToOctopodsOperator

FAST = {"poll_interval": 0.2, "initial_delay": 0.1, "timeout": 20}
PARAMS = {"messages": []}

for _dag_id, _deferrable in (("octopods_test_bulk_list", False), ("octopods_test_bulk_deferrable", True)):
    with DAG(_dag_id, schedule=None, start_date=datetime(2026, 1, 1), params=PARAMS):

        @task
        def recipients(**context):
            return context["params"]["messages"]

        OctopodsBulkSendOperator(
            task_id="bulk",
            messages=recipients(),
            on_invalid="skip",
            deferrable=_deferrable,
            **FAST,
        )

with DAG("octopods_test_bulk_whatsapp", schedule=None, start_date=datetime(2026, 1, 1), params=PARAMS):

    @task
    def whatsapp_recipients(**context):
        return context["params"]["messages"]

    OctopodsBulkSendOperator(
        task_id="bulk",
        messages=whatsapp_recipients(),
        channel="whatsapp",
        wait_for="read",
        deferrable=True,
        on_invalid="skip",
        **{**FAST, "timeout": 3},
    )

with DAG("octopods_test_bulk_sql", schedule=None, start_date=datetime(2026, 1, 1)):
    SqlToOctopodsOperator(
        task_id="bulk",
        sql="SELECT order_id, name, phone FROM orders ORDER BY order_id",
        conn_id="bulk_db",
        key_column="order_id",
        body="Hi {{ row.name }}, order {{ row.order_id }} has shipped.",
        results_table="results",
        on_invalid="skip",
        **FAST,
    )
