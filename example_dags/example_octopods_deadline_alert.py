"""
Example: text the on-call engineer when a DAG run misses its deadline (Airflow 3.3).

A Deadline Alert fires while the run is still going, which a failure callback cannot do: here,
if a run has not finished 30 minutes after it was queued. ``AsyncCallback`` runs the notifier in
the triggerer (no worker slot), with a context that holds ``deadline`` (``deadline_time``) and
``dag_run`` (``dag_id``, ``run_id``, ...); the notifier also offers ``dag_id`` and ``run_id``
directly. If the SMS cannot be sent, the notifier logs why and returns: it never raises.

Tested on Airflow 3.3, which exports ``AsyncCallback``, ``DeadlineAlert`` and
``DeadlineReference`` from ``airflow.sdk``. Airflow 3.1 and 3.2 have Deadline Alerts under other
import paths (``airflow.sdk.definitions.deadline`` and ``.callback``); the notifier is not tested there.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, task
from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

from airflow_provider_octopods.notifications.octopods import OctopodsSmsNotifier

# [START howto_deadline_alert_octopods_sms]
with DAG(
    dag_id="example_octopods_deadline_alert",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=30),
        callback=AsyncCallback(
            OctopodsSmsNotifier,
            kwargs={
                "destination_phone": "+12015550123",
                "body": "Airflow: {{ dag_id }} run {{ run_id }} missed its deadline "
                "({{ deadline.deadline_time }}).",
                "octopods_conn_id": "octopods_default",
            },
        ),
    ),
    tags=["example", "octopods"],
) as dag:
    # [END howto_deadline_alert_octopods_sms]

    @task
    def nightly_report() -> str:
        """Build the report; if it runs past the deadline, the on-call engineer gets an SMS."""
        return "report.csv"

    nightly_report()
