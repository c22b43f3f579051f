"""
``make demo``: run the example DAGs end to end against the bundled Octopods simulator.

Starts the simulator on 127.0.0.1, points ``octopods_default`` at it, creates a throw-away
Airflow home with a SQLite metadata database, then runs with ``dag.test()``, each once to a
number whose SMS is delivered and once to one whose SMS fails:

- ``example_octopods_sms_delivery``: a task sends the SMS, a deferrable sensor waits for it;
- ``example_octopods_send_and_wait``: ``OctopodsSendSmsOperator`` sends and waits in one task.

Prints what each task ended as, why a failed SMS failed, and how many SMS each run sent (always
one: waiting never sends again). Exits non-zero if any run ended otherwise than expected.
Set ``DEMO_LOG_LEVEL=INFO`` to see the task logs.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(tempfile.mkdtemp(prefix="octopods-demo-"))
(HOME / "dags").mkdir()
for dag_file in (ROOT / "example_dags").glob("*.py"):
    shutil.copy(dag_file, HOME / "dags" / dag_file.name)
os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("DEMO_LOG_LEVEL", "CRITICAL"),
    }
)

from airflow_provider_octopods.testing import OctopodsSimulator  # noqa: E402

DELIVERED = ("+12015550123", "success")
BLOCKED = ("+12015550102", "failed")  # the simulator's carrier blocks numbers ending in 0002
#: (DAG id, what it shows, [(destination phone, expected DAG run state)]).
RUNS = [
    (
        "example_octopods_sms_delivery",
        "send in a task, wait with the deferrable sensor",
        [DELIVERED, BLOCKED],
    ),
    ("example_octopods_send_and_wait", "OctopodsSendSmsOperator sends and waits", [DELIVERED, BLOCKED]),
]


def _summary(value: Any) -> str:
    """One short line for a task's XCom."""
    if isinstance(value, dict) and "status" in value:
        return f"SMS {value['message_id']} {value['status']} at {value.get('delivered_at')}"
    if isinstance(value, dict) and "message_id" in value:
        return f"sent SMS {value['message_id']}"
    return f"XCom {value!r}" if value is not None else ""


def _run(dag: Any, sim: OctopodsSimulator, phone: str, expected: str) -> bool:
    """Run ``dag`` for one number, print what happened, return whether it went as expected."""
    sends_before = sum(1 for r in sim.requests if r.method == "POST")
    started = time.monotonic()
    dag_run = dag.test(run_conf={"destination_phone": phone, "body": "Hello from make demo"})
    took = time.monotonic() - started
    for ti in sorted(dag_run.get_task_instances(), key=lambda t: t.start_date or t.end_date):
        value = ti.xcom_pull(task_ids=ti.task_id) if str(ti.state) == "success" else None
        print(f"    {ti.task_id:<18} {ti.state!s:<8} {_summary(value)}")
    sends = sum(1 for r in sim.requests if r.method == "POST") - sends_before
    sent_to_phone = [m for m in sim.messages.values() if m.phone_number == phone]
    if str(dag_run.state) == "failed" and sent_to_phone:
        from airflow_provider_octopods.hooks.octopods import OctopodsHook

        status = OctopodsHook().get_sms_status(sent_to_phone[-1].message_id)
        print(f"    {'':<18} because {status.describe()}")
    ok = str(dag_run.state) == expected and sends == 1
    verdict = "as expected" if ok else f"UNEXPECTED: wanted {expected} with exactly 1 SMS sent"
    print(f"    DAG run {dag_run.state} in {took:.0f} s; SMS sent: {sends} ({verdict})")
    return ok


def main() -> int:
    """Run the demo; exit 0 when every run ended as expected."""
    sim = OctopodsSimulator(deliver_after=2.0, sent_after=0.5).start()
    os.environ.update(sim.connection_uri_env("octopods_default"))
    print(f"Octopods simulator on {sim.url}; Airflow home {HOME}")

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    logging.getLogger("alembic").setLevel(logging.WARNING)
    db.initdb()
    bag = DagBag(str(HOME / "dags"))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}")
        return 1
    ok = True
    try:
        for dag_id, what, cases in RUNS:
            print(f"\n=== {dag_id}: {what} ===")
            for phone, expected in cases:
                print(f"  SMS to {phone} (expected: DAG run {expected})")
                ok &= _run(bag.get_dag(dag_id), sim, phone, expected)
    finally:
        sim.stop()
        shutil.rmtree(HOME, ignore_errors=True)
    served = f"{sim.request_count()} requests over {sim.connections_opened} TCP connections"
    print(f"\nThe simulator served {served}.")
    print("Demo finished as expected." if ok else "Demo did NOT finish as expected.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
