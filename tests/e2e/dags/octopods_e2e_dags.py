"""
The end-to-end tests' DAG: a deferrable sensor with short intervals, and a task that can only run
while the sensor is deferred.

The deployment has one executor slot (``parallelism = 1``). Both tasks are ready at once; the
sensor has the higher priority, so it takes the slot first, defers, and only then can
``other_work`` run: its success while the sensor is ``deferred`` proves the slot was freed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

with DAG(
    "octopods_e2e_deferral",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"message_id": 0},
    tags=["octopods", "e2e"],
):
    OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id="{{ params.message_id }}",
        deferrable=True,
        poke_interval=0.5,
        initial_delay=0.2,
        max_poll_interval=1.0,
        timeout=300,
        priority_weight=10,
        weight_rule="absolute",
    )

    @task(priority_weight=1, weight_rule="absolute")
    def other_work() -> str:
        """Stand in for any other task: it needs the one executor slot."""
        return "ran while the sensor was deferred"

    other_work()
