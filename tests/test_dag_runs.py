"""
DAG-level tests: real ``dag.test()`` runs against the simulator over real HTTP, with a real
metadata database, in poke and deferrable mode (deferrable runs the trigger inline, on Airflow 2.11
and 3.x alike).

Each test asserts the task states, the XCom value, the failure reason in the output, and that
the API key appears nowhere: not in the output, not in the task logs, not in the database
(XCom, rendered fields, trigger kwargs and events all live there).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airflow_provider_octopods.testing import FAILURE_REASONS, Hang, Reply, Status
from tests.conftest import AIRFLOW_HOME, AIRFLOW_V_3_0_PLUS, TEST_API_KEY, get_dag, read_xcom

MODES = ["poke", "deferrable"]
pytestmark = pytest.mark.usefixtures("airflow_db")


def _get_dag(dag_id: str) -> Any:
    return get_dag(dag_id)


def run_dag(
    dag_id: str, conf: dict[str, Any], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> tuple[dict, str]:
    """
    Run a DAG with ``dag.test()``; return {task_id: (state, xcom)} and everything printed.

    Works on every Airflow of the matrix: on 2.x ``dag.test()`` runs the parsed DAG object itself
    and a deferred task's trigger inline in the test process; on 3.x it re-parses the DAGs folder
    and runs triggers inline through the task SDK. Either way the output holds the task logs.
    """
    from airflow.utils.session import create_session

    # Airflow 2's dag.test() prints task logs through a handler it adds to the task logger, on this
    # test's (captured) sys.stdout, once per process: a later test would log to a closed stream, so
    # it is removed afterwards. Meanwhile task logs do not propagate: they reach stdout once, through
    # that handler (as on Airflow 3), not a second time through the root logger's.
    task_logger = logging.getLogger("airflow.task")
    handlers, propagate = task_logger.handlers[:], task_logger.propagate
    task_logger.propagate = AIRFLOW_V_3_0_PLUS
    try:
        dag_run = get_dag(dag_id).test(run_conf=conf)
    finally:
        task_logger.handlers[:] = handlers
        task_logger.propagate = propagate
    results = {}
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            value = read_xcom(session, dag_id, dag_run.run_id, ti.task_id)
            results[ti.task_id] = (str(ti.state), value)
    out, err = capfd.readouterr()
    output = out + err + caplog.text
    assert_no_key_anywhere(output)
    return results, output


def assert_no_key_anywhere(output: str) -> None:
    assert TEST_API_KEY not in output
    for path in AIRFLOW_HOME.rglob("*"):
        if path.is_file():
            assert TEST_API_KEY.encode() not in path.read_bytes(), f"API key found in {path}"


@pytest.mark.parametrize("mode", MODES)
def test_delivered_returns_final_status_in_xcom(mode, octopods_conn, capfd, caplog):
    message_id = octopods_conn.add_message("queued", "sent", Status("DELIVERED"))

    results, output = run_dag(f"octopods_test_{mode}", {"message_id": message_id}, capfd, caplog)

    state, xcom = results["wait_for_delivery"]
    assert state == "success"
    assert xcom["message_id"] == message_id
    assert xcom["status"] == "delivered"
    assert xcom["delivered_at"].endswith("+00:00")
    if mode == "deferrable":
        assert "[DAG TEST] running trigger in line" in output


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "reason"),
    [("failed", FAILURE_REASONS["invalid_number"]), ("undelivered", FAILURE_REASONS["out_of_coverage"])],
)
def test_failed_delivery_fails_task_with_reason(mode, status, reason, octopods_conn, capfd, caplog):
    message_id = octopods_conn.add_message("queued", Status(status, reason))

    results, output = run_dag(f"octopods_test_{mode}", {"message_id": message_id}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "OctopodsDeliveryError" in output
    assert f"SMS {message_id} was not delivered: status '{status}', failure_reason: {reason}" in output


@pytest.mark.parametrize("mode", MODES)
def test_revoked_key_fails_at_once_telling_to_update_the_key(mode, octopods_conn, capfd, caplog):
    message_id = octopods_conn.add_message("queued", "delivered")
    octopods_conn.revoke_key()

    results, output = run_dag(f"octopods_test_{mode}", {"message_id": message_id}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "OctopodsAuthError" in output
    assert "rotated or revoked" in output
    assert "Update the connection's Channel API key" in output
    assert octopods_conn.request_count(f"/api/v1/sms/messages/{message_id}") == 1


@pytest.mark.parametrize("mode", MODES)
def test_transient_errors_are_polled_through(mode, octopods_conn, capfd, caplog):
    message_id = octopods_conn.add_message("queued", "delivered")
    octopods_conn.inject(
        Reply(503, "<html>Service Unavailable</html>"),
        Reply(429, {"error": "Too many requests"}, {"Retry-After": "0"}),
        Reply(502),
    )

    results, output = run_dag(f"octopods_test_{mode}", {"message_id": message_id}, capfd, caplog)

    state, xcom = results["wait_for_delivery"]
    assert state == "success"
    assert xcom["status"] == "delivered"
    assert "HTTP 503" in output or "HTTP 429" in output


@pytest.mark.parametrize("mode", MODES)
def test_stuck_in_queued_times_out_with_last_status(mode, octopods_conn, capfd, caplog):
    message_id = octopods_conn.add_message("queued")

    results, output = run_dag(f"octopods_test_timeout_{mode}", {"message_id": message_id}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "OctopodsTimeoutError" in output
    assert f"SMS {message_id}: last status 'queued'" in output


@pytest.mark.parametrize("mode", MODES)
def test_hanging_server_does_not_outlive_the_deadline(mode, octopods_conn, capfd, caplog, monkeypatch):
    conn = {**octopods_conn.connection_extra(), "extra": {"timeout": 0.5}}
    monkeypatch.setenv("AIRFLOW_CONN_OCTOPODS_DEFAULT", json.dumps(conn))
    message_id = octopods_conn.add_message(Hang(30))

    results, output = run_dag(f"octopods_test_timeout_{mode}", {"message_id": message_id}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "OctopodsTimeoutError" in output
    assert "did not answer" in output


@pytest.mark.parametrize("mode", MODES)
def test_invalid_message_id_fails_before_any_request(mode, octopods_conn, capfd, caplog):
    results, output = run_dag(f"octopods_test_timeout_{mode}", {"message_id": "../1"}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "Invalid message_id: '../1' is not a string of digits" in output
    assert octopods_conn.request_count() == 0


@pytest.mark.parametrize("mode", MODES)
def test_batch_waits_for_all_and_names_each_failure(mode, octopods_conn, capfd, caplog):
    ok = octopods_conn.add_message("queued", "delivered")
    bad = octopods_conn.add_message("sent", Status("undelivered", FAILURE_REASONS["carrier_blocked"]))

    results, output = run_dag(f"octopods_test_batch_{mode}", {"message_ids": [ok, bad]}, capfd, caplog)

    assert results["wait_for_delivery"] == ("failed", None)
    assert "1 of 2 SMS were not delivered." in output
    assert f"SMS {bad} was not delivered: status 'undelivered'" in output
    assert FAILURE_REASONS["carrier_blocked"] in output


@pytest.mark.parametrize("mode", MODES)
def test_batch_all_delivered_returns_list_in_input_order(mode, octopods_conn, capfd, caplog):
    first = octopods_conn.add_message("queued", "delivered")
    second = octopods_conn.add_message("delivered")

    results, _ = run_dag(f"octopods_test_batch_{mode}", {"message_ids": [second, first]}, capfd, caplog)

    state, xcom = results["wait_for_delivery"]
    assert state == "success"
    assert [s["message_id"] for s in xcom] == [second, first]
    assert {s["status"] for s in xcom} == {"delivered"}


def test_reschedule_mode_keeps_the_retry_after_of_a_429(octopods_conn, capfd, caplog):
    """
    Issue 10 #8: reschedule mode rebuilds the sensor for every poke, so its backoff was lost and a
    429 with ``Retry-After: 2`` was followed by a poke after ``poke_interval`` (0.1 s). The poke now
    reschedules the task to the time the backoff ends.
    """
    message_id = octopods_conn.add_message("queued", "delivered")
    octopods_conn.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "2"}))

    results, output = run_dag("octopods_test_reschedule", {"message_id": message_id}, capfd, caplog)

    state, xcom = results["wait_for_delivery"]
    assert (state, xcom["status"]) == ("success", "delivered")
    polls = [r.at for r in octopods_conn.requests if r.path.endswith(f"/{message_id}")]
    assert len(polls) >= 2
    assert polls[1] - polls[0] >= 2.0  # the second poll waited out the Retry-After
    assert "Next poll in 2.0 s" in output
