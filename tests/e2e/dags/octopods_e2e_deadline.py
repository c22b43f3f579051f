"""
The end-to-end deadline-alert DAG: a run that outlives its 2-second deadline, so the scheduler
queues the ``OctopodsSmsNotifier`` Deadline Alert callback, which the triggerer runs.

``params.hold_seconds`` is how long the only task takes: long enough to miss the deadline.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, task
from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

from airflow_provider_octopods.notifications.octopods import OctopodsSmsNotifier

#: Where the deadline alert goes; the e2e test looks for a send to this number.
DEADLINE_ALERT_PHONE = "+12015550142"

with DAG(
    "octopods_e2e_deadline",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"hold_seconds": 20},
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=2),
        callback=AsyncCallback(
            OctopodsSmsNotifier,
            kwargs={
                "destination_phone": DEADLINE_ALERT_PHONE,
                "body": "Deadline missed: {{ dag_id }} / {{ run_id }} / due {{ deadline.deadline_time }}",
            },
        ),
    ),
    tags=["octopods", "e2e"],
):

    @task
    def slow_work(params: dict | None = None) -> str:
        """Outlive the deadline."""
        time.sleep(float((params or {}).get("hold_seconds", 20)))
        return "done, late"

    slow_work()
