"""
Example: text the on-call engineer when a DAG run fails.

``OctopodsSmsNotifier`` is a callback: here the DAG's ``on_failure_callback``; it works the same
as a task's (``on_failure_callback``, ``on_retry_callback``, or ``default_args`` for every task).
``body`` and ``destination_phone`` are Jinja templates rendered with the callback's context. If
the SMS cannot be sent, the notifier logs why and returns: it never raises into the callback.

Trigger it with the conf ``{"fail": true}`` to see the SMS go out.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.notifications.octopods import OctopodsSmsNotifier

# [START howto_notifier_octopods_sms]
notify_on_call = OctopodsSmsNotifier(
    destination_phone="+12015550123",  # templated, e.g. "{{ var.value.on_call_phone }}"
    body="Airflow: DAG {{ dag.dag_id }} failed ({{ reason }}) in run {{ run_id }}.",  # templated
    octopods_conn_id="octopods_default",
)

with DAG(
    dag_id="example_octopods_notifier",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"fail": False},
    on_failure_callback=notify_on_call,
    tags=["example", "octopods"],
) as dag:
    # [END howto_notifier_octopods_sms]

    @task
    def nightly_report(params: dict | None = None) -> str:
        """Build the report; fails on purpose when the run's conf says so."""
        if (params or {}).get("fail"):
            raise RuntimeError("The report's source table is empty.")
        return "report.csv"

    nightly_report()
