"""
DAGs for the tests of sending: the example DAGs' patterns with fast intervals, fed by the run's conf.

- ``octopods_test_send_only``: the operator without waiting.
- ``octopods_test_send_and_wait_<mode>`` (mode = worker, deferrable): send, then wait for delivery
  (polling in the worker, or deferred to the triggerer); ``retries=1``, so a send that a retry
  repeated would show up as a second POST. ``octopods_test_send_and_wait_timeout_<mode>`` gives
  up after 1.5 s.
- ``octopods_test_send_then_sensor``: the operator in one task, the sensor on its XCom in another.
- ``octopods_test_batch_send``: one mapped send per number in ``params.phones``, then one sensor
  waiting on every message id.
- ``octopods_test_send_and_wait_cut_<mode>``: send, then wait on a message that never leaves the
  queue, with ``retries=2``: the worker's wait is cut by a 2 s ``execution_timeout``.
- ``octopods_test_batch_send_output``: the one-liner: a mapped send, then one sensor on its
  ``.output``.
- ``octopods_test_notifier``: a task that fails, with the notifier as the task's and the DAG's
  ``on_failure_callback``.
- ``octopods_test_native_rendering``: ``render_template_as_native_obj=True``, a literal number and
  a body that renders to digits, sent by the operator and by the failing task's notifier.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_octopods.notifications.octopods import OctopodsSmsNotifier
from airflow_provider_octopods.operators.octopods import OctopodsSendSmsOperator
from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor

FAST_WAIT = {"poll_interval": 0.1, "initial_delay": 0.05, "max_poll_interval": 0.2}
FAST_SENSOR = {"poke_interval": 0.1, "initial_delay": 0.05, "max_poll_interval": 0.2}
PARAMS = {"destination_phone": "+12015550123", "body": "Hello from the tests"}
SEND_ARGS = {"destination_phone": "{{ params.destination_phone }}", "body": "{{ params.body }}"}

with DAG("octopods_test_send_only", schedule=None, start_date=datetime(2026, 1, 1), params=PARAMS):
    OctopodsSendSmsOperator(task_id="send_sms", **SEND_ARGS)

for _mode in ("worker", "deferrable"):
    for _suffix, _timeout in (("", 20.0), ("_timeout", 1.5)):
        with DAG(
            f"octopods_test_send_and_wait{_suffix}_{_mode}",
            schedule=None,
            start_date=datetime(2026, 1, 1),
            params=PARAMS,
            default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
        ):
            OctopodsSendSmsOperator(
                task_id="send_sms",
                wait_for_delivery=True,
                deferrable=_mode == "deferrable",
                timeout=_timeout,
                **SEND_ARGS,
                **FAST_WAIT,
            )

for _mode in ("worker", "deferrable"):
    with DAG(
        f"octopods_test_send_and_wait_cut_{_mode}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={**PARAMS, "destination_phone": "+12015550109"},
        default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    ):
        OctopodsSendSmsOperator(
            task_id="send_sms",
            wait_for_delivery=True,
            deferrable=_mode == "deferrable",
            timeout=60,
            execution_timeout=timedelta(seconds=2),
            **SEND_ARGS,
            **FAST_WAIT,
        )

with DAG("octopods_test_send_then_sensor", schedule=None, start_date=datetime(2026, 1, 1), params=PARAMS):
    OctopodsSendSmsOperator(task_id="send_sms", **SEND_ARGS) >> OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_id="{{ ti.xcom_pull(task_ids='send_sms')['message_id'] }}",
        deferrable=True,
        timeout=20,
        **FAST_SENSOR,
    )

with DAG(
    "octopods_test_batch_send",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"phones": ["+12015550123"], "body": "Hello from the tests"},
):

    @task
    def phones(params: dict | None = None) -> list[str]:
        return list((params or {})["phones"])

    OctopodsSendSmsOperator.partial(task_id="send_sms", body="{{ params.body }}").expand(
        destination_phone=phones()
    ) >> OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery",
        message_ids="{{ ti.xcom_pull(task_ids='send_sms') | map(attribute='message_id') | join(',') }}",
        deferrable=True,
        timeout=20,
        **FAST_SENSOR,
    )

with DAG(
    "octopods_test_batch_send_output",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"phones": ["+12015550123"], "body": "Hello from the tests"},
):

    @task
    def phone_list(params: dict | None = None) -> list[str]:
        return list((params or {})["phones"])

    sent = OctopodsSendSmsOperator.partial(task_id="send_sms", body="{{ params.body }}").expand(
        destination_phone=phone_list()
    )
    OctopodsSmsDeliverySensor(
        task_id="wait_for_delivery", message_ids=sent.output, deferrable=True, timeout=20, **FAST_SENSOR
    )

with DAG(
    "octopods_test_notifier",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"task_phone": "+12015550123", "dag_phone": "+12015550124"},
    on_failure_callback=OctopodsSmsNotifier(
        destination_phone="{{ params.dag_phone }}",
        body="DAG {{ dag.dag_id }} failed in run {{ run_id }}.",
    ),
):

    @task(
        on_failure_callback=OctopodsSmsNotifier(
            destination_phone="{{ params.task_phone }}",
            body="Task {{ ti.task_id }} of {{ dag.dag_id }} failed: {{ exception }}",
        )
    )
    def nightly_report() -> None:
        raise RuntimeError("the report source is empty")

    nightly_report()


with DAG(
    "octopods_test_native_rendering",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={"code": 424242},
    render_template_as_native_obj=True,  # would read "+12015550123" as the int 12015550123
):

    @task(
        on_failure_callback=OctopodsSmsNotifier(
            destination_phone="+12015550124", body="{{ params.code }}", destination_user_name="007"
        )
    )
    def fails() -> None:
        raise RuntimeError("boom")

    (
        OctopodsSendSmsOperator(
            task_id="send_sms", destination_phone="+12015550123", body="{{ params.code }}"
        )
        >> fails()
    )
