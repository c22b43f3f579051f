"""
The WhatsApp channel in the real deployment: a deferrable send-and-wait for ``read`` whose wait
runs in the triggerer, and a WhatsApp-then-SMS fallback DAG, against the simulator, on the
``octopods_whatsapp_default`` connection (stored Fernet-encrypted in PostgreSQL).

DAG runs are triggered and checked through the REST API (states, XCom, task logs); the simulator
says what was sent. The simulator reads a WhatsApp message 2 s after its send and fails one to
+12015550101 at once ("Recipient is not a WhatsApp user.").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods.testing.simulator import WHATSAPP_FAILURE_REASONS
from tests.e2e.conftest import E2E_API_KEY, E2E_READ_AFTER, E2E_WHATSAPP_KEY
from tests.e2e.dags.octopods_e2e_whatsapp import FALLBACK_BODY, READ_PHONE, TEMPLATE_ID
from tests.e2e.deployment import wait_for

if TYPE_CHECKING:
    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment, PostgresServer

READ_DAG = "octopods_e2e_whatsapp_read"
READ_TASK = "send_and_wait_read"
FALLBACK_DAG = "octopods_e2e_whatsapp_fallback"
TRIGGER_CLASSPATH = "airflow_provider_octopods.triggers.octopods.OctopodsWhatsAppDeliveryTrigger"
SMS_SEND = "/api/v1/sms/messages"
#: The simulator fails a WhatsApp message to this number: not a WhatsApp user.
NOT_ON_WHATSAPP = "+12015550101"


def whatsapp_sends(simulator: OctopodsSimulator) -> int:
    """How many WhatsApp template sends (``POST /api/v1/whatsapp/templates/{id}/messages``) were served."""
    with simulator._lock:
        return sum(
            1
            for r in simulator.requests
            if r.method == "POST" and r.path.startswith("/api/v1/whatsapp/templates/")
        )


def messages_since(simulator: OctopodsSimulator, known: set[int], channel: str) -> list[Any]:
    """The simulator's messages of ``channel`` whose ids are not in ``known``."""
    with simulator._lock:
        return [m for i, m in simulator.messages.items() if i not in known and m.channel == channel]


def follow(airflow: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> tuple[dict[str, Any], list]:
    """
    Watch a task instance until it ends; return its last state and every snapshot seen on the way.

    Polls every 0.2 s, so a deferral of a second or two is seen with its trigger and triggerer.
    """
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        airflow.check_alive()
        ti = airflow.task_instance(dag_id, run_id, task_id)
        seen.append(ti)
        return ti if ti["state"] in {"success", "failed", "skipped", "upstream_failed"} else None

    done = wait_for(f"{dag_id}.{task_id} ({run_id}) to end", finished, timeout=120, interval=0.2)
    return done, seen


def assert_deferred_in_the_triggerer(seen: list[dict[str, Any]], log: str) -> None:
    """The task went through ``deferred`` with a WhatsApp trigger held by a running triggerer."""
    deferred = [ti for ti in seen if ti["state"] == "deferred"]
    assert deferred, f"never seen deferred: {[ti['state'] for ti in seen]}"
    assert {ti["trigger"]["classpath"] for ti in deferred if ti["trigger"]} == {TRIGGER_CLASSPATH}
    held = [ti["triggerer_job"] for ti in deferred if ti["triggerer_job"]]
    assert held, "no triggerer job held the trigger while the task was deferred"
    assert {job["job_type"] for job in held} == {"TriggererJob"}
    assert "Pausing task as DEFERRED" in log
    assert "Trigger fired event" in log


def assert_no_whatsapp_key(airflow: AirflowDeployment, *logs: str) -> None:
    """The WhatsApp key is in none of ``logs`` (read through the API) nor in any log file."""
    for log in logs:
        assert E2E_WHATSAPP_KEY not in log
    everything = airflow.all_log_text()
    assert E2E_WHATSAPP_KEY.encode() not in everything
    assert E2E_API_KEY.encode() not in everything


def test_deferrable_whatsapp_send_waits_in_the_triggerer_until_read(
    airflow: AirflowDeployment, simulator: OctopodsSimulator
) -> None:
    sends_before = whatsapp_sends(simulator)
    known = set(simulator.messages)

    run_id = airflow.trigger(READ_DAG, {})
    done, seen = follow(airflow, READ_DAG, run_id, READ_TASK)

    log = airflow.wait_log(READ_DAG, run_id, READ_TASK, " read at ")
    assert done["state"] == "success", log
    assert done["try_number"] == 1  # resumed after the trigger fired, not retried
    assert_deferred_in_the_triggerer(seen, log)

    final = airflow.xcom(READ_DAG, run_id, READ_TASK)
    assert final["status"] == "read", final
    assert final["read_at"] and final["delivered_at"], final
    assert final["template_id"] == TEMPLATE_ID
    assert final["channel"] == "whatsapp"
    assert f"WhatsApp message {final['message_id']} read at" in log
    assert "'wait_for': 'read'" in log  # the trigger's event: it waited for the read receipt

    # One send, the one in XCom; the trigger polled its status until the read receipt.
    assert whatsapp_sends(simulator) - sends_before == 1
    (sent,) = messages_since(simulator, known, "whatsapp")
    assert sent.message_id == final["message_id"]
    assert (sent.template_id, sent.phone_number) == (TEMPLATE_ID, READ_PHONE)
    assert sent.variables == ["Alex", "1234"]
    assert 1 <= sent.polls <= E2E_READ_AFTER + 5  # about one poll a second, not a busy loop
    assert not messages_since(simulator, known, "sms")
    assert airflow.wait_run(READ_DAG, run_id) == "success"
    assert_no_whatsapp_key(airflow, log)


@pytest.mark.parametrize(
    ("phone", "whatsapp_state", "fallback_state"),
    [(READ_PHONE, "success", "skipped"), (NOT_ON_WHATSAPP, "failed", "success")],
    ids=["whatsapp-delivers", "not-a-whatsapp-user"],
)
def test_sms_fallback_runs_only_when_the_whatsapp_wait_fails(
    airflow: AirflowDeployment,
    simulator: OctopodsSimulator,
    phone: str,
    whatsapp_state: str,
    fallback_state: str,
) -> None:
    whatsapp_before, sms_before = whatsapp_sends(simulator), simulator.request_count(SMS_SEND)
    known = set(simulator.messages)

    run_id = airflow.trigger(FALLBACK_DAG, {"destination_phone": phone})
    whatsapp, seen = follow(airflow, FALLBACK_DAG, run_id, "whatsapp")
    fallback, _ = follow(airflow, FALLBACK_DAG, run_id, "sms_fallback")
    assert airflow.wait_run(FALLBACK_DAG, run_id) == "success"  # the leaf, sms_fallback, did not fail

    (sent,) = messages_since(simulator, known, "whatsapp")
    assert (sent.template_id, sent.phone_number) == (TEMPLATE_ID, phone)
    assert whatsapp_sends(simulator) - whatsapp_before == 1
    expected = "WhatsApp message" if whatsapp_state == "success" else "OctopodsDeliveryError"
    log = airflow.wait_log(FALLBACK_DAG, run_id, "whatsapp", expected)
    assert whatsapp["state"] == whatsapp_state, log
    assert whatsapp["try_number"] == 1
    assert_deferred_in_the_triggerer(seen, log)
    assert fallback["state"] == fallback_state, fallback
    sms = messages_since(simulator, known, "sms")

    if whatsapp_state == "success":
        final = airflow.xcom(FALLBACK_DAG, run_id, "whatsapp")
        assert final["message_id"] == sent.message_id
        assert final["status"] in {"delivered", "read"}, final
        assert final["template_id"] == TEMPLATE_ID
        assert simulator.request_count(SMS_SEND) == sms_before
        assert sms == []
        fallback_log = ""
    else:
        reason = WHATSAPP_FAILURE_REASONS["not_whatsapp_user"]
        assert (
            f"WhatsApp message {sent.message_id} was not delivered: status 'failed', failure_reason: {reason}"
            in log
        )
        with pytest.raises(AssertionError, match="404"):
            airflow.xcom(FALLBACK_DAG, run_id, "whatsapp")
        assert simulator.request_count(SMS_SEND) - sms_before == 1
        (text,) = sms
        assert (text.phone_number, text.body) == (phone, FALLBACK_BODY.replace("{{ run_id }}", run_id))
        fallback_sent = airflow.xcom(FALLBACK_DAG, run_id, "sms_fallback")
        assert fallback_sent["message_id"] == text.message_id
        assert fallback_sent["destination_phone"] == phone
        fallback_log = airflow.task_log(FALLBACK_DAG, run_id, "sms_fallback")
    assert_no_whatsapp_key(airflow, log, fallback_log)


def test_whatsapp_key_is_not_in_clear_in_the_database(
    postgres: PostgresServer, airflow: AirflowDeployment
) -> None:
    """``octopods_whatsapp_default`` is stored Fernet-encrypted, like ``octopods_default``."""
    assert airflow.api("GET", "/connections/octopods_whatsapp_default")["conn_type"] == "octopods"
    dump = postgres.dump()
    assert b"octopods_whatsapp_default" in dump
    assert E2E_WHATSAPP_KEY.encode() not in dump
