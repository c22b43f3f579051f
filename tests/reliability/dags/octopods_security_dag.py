"""
A DAG that tries to leak the Channel API key, for ``tests/test_security.py``.

After the hook has read the connection (and registered the key with Airflow's secrets masker),
the task logs the key through the task logger, the standard ``logging`` module and ``print``.
The test runs it with ``dag.test()`` and checks that every copy came out as ``***``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.hooks.octopods import OctopodsHook

with DAG(
    "octopods_security_leaky_task",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"message_id": 0},
    catchup=False,
):

    @task
    def log_the_key(params: dict | None = None) -> str:
        hook = OctopodsHook()
        status = hook.get_sms_status(int((params or {})["message_id"]))
        key = (hook.get_connection(hook.octopods_conn_id).password or "").strip()
        marker = "LEAK-PROBE"
        hook.log.info("%s task logger: %s", marker, key)
        logging.getLogger("airflow.task").info("%s stdlib logger: %s", marker, key)
        print(f"{marker} print: {key}")
        return status.status

    log_the_key()
