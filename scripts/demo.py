"""
``make demo``: run the example DAG end to end against the bundled Octopods simulator.

Starts the simulator on 127.0.0.1, points ``octopods_default`` at it, creates a throw-away
Airflow home with a SQLite metadata database, then runs ``example_octopods_sms_delivery`` with
``dag.test()`` twice: once to a number that gets the SMS delivered, once to one whose SMS fails.
Prints what each task ended as and what the sensor returned or failed with.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

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

CASES = [
    ("delivered", "+15551234567"),
    ("fails: the carrier blocks it", "+15551230002"),
]


def main() -> int:
    """Run the demo; exit 0 when both cases ended as expected."""
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
    dag = bag.get_dag("example_octopods_sms_delivery")
    expected = {"delivered": "success", "fails: the carrier blocks it": "failed"}
    ok = True
    try:
        for label, phone in CASES:
            print(f"\n=== SMS to {phone} ({label}) ===")
            dag_run = dag.test(run_conf={"destination_phone": phone, "body": "Hello from make demo"})
            for ti in sorted(dag_run.get_task_instances(), key=lambda t: t.start_date or t.end_date):
                value = ti.xcom_pull(task_ids=ti.task_id) if ti.state == "success" else None
                print(f"  {ti.task_id:<20} {ti.state!s:<8} {'XCom: ' + repr(value) if value else ''}")
                if ti.state == "failed" and ti.task_id == "wait_for_delivery":
                    from airflow_provider_octopods.hooks.octopods import OctopodsHook

                    status = OctopodsHook().get_sms_status(ti.xcom_pull(task_ids="send_sms"))
                    print(f"  {'':<20} failed because {status.describe()}")
            print(f"  DAG run: {dag_run.state}")
            ok &= str(dag_run.state) == expected[label]
    finally:
        sim.stop()
        shutil.rmtree(HOME, ignore_errors=True)
    served = f"{sim.request_count()} requests over {sim.connections_opened} TCP connections"
    print(f"\nThe simulator served {served}.")
    print("Demo finished as expected." if ok else "Demo did NOT finish as expected.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
