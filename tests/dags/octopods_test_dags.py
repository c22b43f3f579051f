"""
DAGs for the DAG-level tests: each waits on the message ids given in the run's conf.

``octopods_test_<mode>`` (mode = poke, reschedule, deferrable) has an upstream task returning
``params.message_id`` and a sensor waiting on it through XCom; ``octopods_test_timeout_<mode>``
gives up after two seconds; ``octopods_test_batch_<mode>`` waits on ``params.message_ids``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

FAST = {"poke_interval": 0.1, "initial_delay": 0.05, "max_poll_interval": 0.2}

for _mode in ("poke", "deferrable"):
    _kwargs = {"deferrable": _mode == "deferrable", **FAST}

    with DAG(
        f"octopods_test_{_mode}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"message_id": 0},
        catchup=False,
    ):

        @task
        def message_id_from_upstream(params: dict | None = None) -> int:
            return int((params or {})["message_id"])

        message_id_from_upstream() >> OctopodsSmsDeliverySensor(
            task_id="wait_for_delivery",
            message_id="{{ ti.xcom_pull(task_ids='message_id_from_upstream') }}",
            timeout=20,
            **_kwargs,
        )

    with DAG(
        f"octopods_test_timeout_{_mode}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"message_id": 0},
        catchup=False,
    ):
        OctopodsSmsDeliverySensor(
            task_id="wait_for_delivery", message_id="{{ params.message_id }}", timeout=1.5, **_kwargs
        )

    with DAG(
        f"octopods_test_batch_{_mode}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"message_ids": []},
        catchup=False,
    ):
        OctopodsSmsDeliverySensor(
            task_id="wait_for_delivery",
            message_ids="{{ params.message_ids | join(',') }}",
            timeout=20,
            **_kwargs,
        )

with DAG(
    "octopods_test_reschedule",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"message_id": 0},
    catchup=False,
):
    OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id="{{ params.message_id }}",
        mode="reschedule",
        timeout=20,
        **FAST,
    )
