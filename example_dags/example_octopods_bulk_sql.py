"""
Example: one SMS per row of a PostgreSQL table, exactly once each, with the results written back.

``SqlToOctopodsOperator`` reads the query through the connection's ``DbApiHook`` (here the
``orders_db`` PostgreSQL connection; install ``apache-airflow-providers-postgres``), in chunks,
renders ``body`` for each row with ``row`` in the context, sends each order's message once
(the order id is the idempotency key), waits once for every message and writes one row per
recipient to ``sms_results``::

    CREATE TABLE sms_results (
        run_id TEXT, recipient_key TEXT, destination_phone TEXT,
        message_id BIGINT, status TEXT, reason TEXT
    );
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_octopods.transfers.sql_to_octopods import SqlToOctopodsOperator

with DAG(
    dag_id="example_octopods_bulk_sql",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "octopods"],
) as dag:
    # [START howto_transfer_sql_to_octopods]
    SqlToOctopodsOperator(
        task_id="tell_shipped_customers",
        conn_id="orders_db",
        sql="""
            SELECT order_id, customer_name, phone
            FROM orders
            WHERE shipped_on = %(day)s
        """,
        parameters={"day": "{{ ds }}"},
        phone_column="phone",
        key_column="order_id",  # a retry never texts an order twice (a Clear or a new run is a new start)
        body="Hi {{ row.customer_name }}, order {{ row.order_id }} has shipped.",
        results_table="sms_results",
        on_invalid="skip",
        deferrable=True,
        timeout=2 * 60 * 60,
    )
    # [END howto_transfer_sql_to_octopods]
