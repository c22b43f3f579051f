"""
The end-to-end bulk-send DAG: one SMS per row of a PostgreSQL table, exactly once each, across
worker kills.

``SqlToOctopodsOperator`` reads ``orders`` (500 rows in the ``orders`` database of the
deployment's PostgreSQL server, connection ``e2e_orders_db``) through the postgres provider's
``DbApiHook``, sends on ``octopods_bulk`` (the simulator and the SMS key of ``octopods_default``,
with ``max_requests_per_second`` 25: 500 sends take about 20 s, so the test's SIGKILLs land
mid-send), waits in the triggerer and writes one row per recipient to ``results``. Up to three
retries, a second apart: the test kills the worker twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.transfers.sql_to_octopods import SqlToOctopodsOperator

DAG_ID = "octopods_e2e_bulk"
TASK_ID = "tell_shipped_customers"
#: The PostgreSQL connection to the ``orders`` database (not ``orders_db``: the shipped
#: ``example_octopods_bulk_sql`` DAG, which runs once when parsed, reads that one).
ORDERS_CONN_ID = "e2e_orders_db"
#: The SMS connection of this DAG: the simulator's SMS key, at a fixed request budget.
BULK_CONN_ID = "octopods_bulk"
#: Requests per second of ``BULK_CONN_ID`` (its ``max_requests_per_second`` extra).
RATE = 25
#: Recipients sent concurrently and marked together in the task state store.
WINDOW = 20
RESULTS_TABLE = "results"
BODY = "Hi {{ row.name }}, order {{ row.order_id }} has shipped."

with DAG(
    DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["octopods", "e2e", "bulk"],
):
    SqlToOctopodsOperator(
        task_id=TASK_ID,
        sql="SELECT order_id, name, phone FROM orders ORDER BY order_id",
        conn_id=ORDERS_CONN_ID,
        key_column="order_id",
        body=BODY,
        results_table=RESULTS_TABLE,
        octopods_conn_id=BULK_CONN_ID,
        window=WINDOW,
        deferrable=True,
        poll_interval=1,
        initial_delay=0,
        timeout=180,
        retries=3,
        retry_delay=timedelta(seconds=1),
    )
