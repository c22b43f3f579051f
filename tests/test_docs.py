"""
The documentation builds without a single warning, and what it states is true.

- Sphinx builds ``docs/`` with ``-W`` (any warning fails) into a temporary directory, with every
  guide, the API reference of every public module, and the tables generated from the code.
- The connection examples of the connection page define connections the provider accepts.
- The exceptions table of the errors page says "No" (not retried) exactly for the exceptions
  that fail a task without retries, and lists every exception of the provider.
- The errors page covers error codes 1 to 5, HTTP 401 and 429, "message not found" and every
  failure reason Octopods documents; every example DAG and every docs marker in it is shown.
- The testing guide's examples (included in ``docs/testing.rst`` between ``[START]``/``[END]``
  markers) are the tests at the end of this file: they run here, against the simulator.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_octopods
from airflow_provider_octopods.exceptions import OctopodsError
from airflow_provider_octopods.get_provider_info import RELABELING, get_provider_info
from airflow_provider_octopods.testing import FAILURE_REASONS
from tests.conftest import get_dag

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Octopods' own page about the status endpoint, beside the repository when it is checked out.
STATUS_ENDPOINT_DOC = ROOT.parent / "shared" / "api" / "octopods-sms-status-endpoint.txt"
#: Pages that must always be built.
PAGES = [
    "index",
    "installation",
    "changelog",
    "security",
    "connections/octopods",
    "sensors/octopods",
    "operators/octopods",
    "notifications/octopods",
    "whatsapp",
    "bulk",
    "testing",
    "errors",
]


def _docs_text() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(DOCS.rglob("*")) if path.suffix in {".rst", ".md"}
    )


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(airflow_provider_octopods.__path__, "airflow_provider_octopods."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return ["airflow_provider_octopods", *names]


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML documentation once, as ``make docs`` does: warnings are errors."""
    pytest.importorskip(
        "sphinx", reason="Sphinx is not installed: pip install -e '.[docs]' to build the docs"
    )
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_docs_build_with_every_page_and_no_warning(built_docs: Path) -> None:
    for page in PAGES:
        assert (built_docs / f"{page}.html").is_file(), f"{page} was not built"
    reliability = (DOCS / "reliability.md").is_file()
    assert (built_docs / "reliability.html").is_file() == reliability
    index = (built_docs / "index.html").read_text(encoding="utf-8")
    assert ('href="reliability.html"' in index) == reliability


def test_api_reference_documents_every_public_module(built_docs: Path) -> None:
    for module in _public_modules():
        page = built_docs / "_api" / module.replace(".", "/") / "index.html"
        assert page.is_file(), f"no API page for {module}"
    sensor = (built_docs / "_api/airflow_provider_octopods/sensors/octopods/index.html").read_text("utf-8")
    assert "OctopodsSmsDeliverySensor" in sensor
    assert "message_ids" in sensor  # the :param: docstrings are rendered


def test_generated_tables_come_from_the_code(built_docs: Path) -> None:
    connection = (built_docs / "connections/octopods.html").read_text(encoding="utf-8")
    conn_type = get_provider_info()["connection-types"][0]
    for label in [*RELABELING.values(), *(f["label"] for f in conn_type["conn-fields"].values())]:
        assert label.replace("'", "&#39;") in connection, f"form label {label!r} missing"
    screenshot = (DOCS / "img" / "connection-form.png").is_file()
    assert ("connection-form.png" in connection) == screenshot

    installation = (built_docs / "installation.html").read_text(encoding="utf-8")
    for constraints in (ROOT / "constraints").glob("airflow-*.txt"):
        pin = re.search(r"^apache-airflow==(\S+)$", constraints.read_text(), re.MULTILINE)
        assert pin and pin[1] in installation, f"{constraints.name} is not in the tested versions"
    assert airflow_provider_octopods.__version__ in installation


def test_every_example_dag_and_marker_is_shown_in_the_docs() -> None:
    docs = _docs_text()
    for dag_file in sorted((ROOT / "example_dags").glob("*.py")):
        assert f"example_dags/{dag_file.name}" in docs, f"{dag_file.name} is in no page"
        for marker in re.findall(r"# \[START (\w+)\]", dag_file.read_text(encoding="utf-8")):
            assert f"[START {marker}]" in docs, f"{dag_file.name}: {marker} is in no page"


@pytest.mark.parametrize(
    ("name", "value"),
    re.findall(
        r"export (AIRFLOW_CONN_\w+)='([^']+)'",
        (DOCS / "connections" / "octopods.rst").read_text(encoding="utf-8"),
    ),
)
def test_documented_connection_examples_work(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_octopods.hooks.octopods import OctopodsHook, connection_settings

    monkeypatch.setenv(name, value)
    conn = OctopodsHook.get_connection(name.removeprefix("AIRFLOW_CONN_").lower())

    assert conn.conn_type == "octopods"
    settings = connection_settings(conn)
    assert settings.base_url == "https://app.octopods.io"
    assert settings.key == "YOUR_CHANNEL_API_KEY"
    assert settings.timeout == (10.0 if "timeout" in value else 30.0)


def _exception_table() -> dict[str, str]:
    text = (DOCS / "errors.rst").read_text(encoding="utf-8")
    section = text.split(".. _errors:exceptions:")[1].split(".. _errors:api:")[0]
    return dict(re.findall(r"\* - :class:`~([\w.]+)`\n\s+- (Yes|No)\n", section))


def test_errors_page_says_which_exceptions_are_retried() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout

    table = _exception_table()
    documented = set()
    for path, retried in table.items():
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        documented.add(cls)
        fails_at_once = issubclass(cls, (AirflowFailException, AirflowSensorTimeout))
        assert (retried == "No") == fails_at_once, f"{name}: the errors page says retried={retried}"

    for module in ("airflow_provider_octopods.exceptions", "airflow_provider_octopods.operators.octopods"):
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if issubclass(cls, OctopodsError) and cls is not OctopodsError and cls.__module__ == module:
                assert cls in documented, f"{cls.__name__} is missing from the errors page"


def _documented_failure_reasons() -> list[str]:
    reasons = list(FAILURE_REASONS.values())
    if STATUS_ENDPOINT_DOC.is_file():
        text = STATUS_ENDPOINT_DOC.read_text(encoding="utf-8")
        block = text.split("typically contains one of:")[1].split("Error response")[0]
        reasons += [line.strip() for line in block.splitlines() if line.strip()]
    return reasons


def test_errors_page_covers_every_error_octopods_documents() -> None:
    errors = _one_line((DOCS / "errors.rst").read_text(encoding="utf-8"))
    for code in range(1, 6):
        assert f"``error_code`` {code}" in errors, f"error_code {code} is not explained"
    for case in ("HTTP 401", "HTTP 429", "message not found", "``failed``", "``undelivered``"):
        assert case in errors, f"{case} is not explained"
    for reason in _documented_failure_reasons():
        assert reason in errors, f"failure reason {reason!r} is not explained"


def test_sensor_modes_example_configures_the_documented_modes(airflow_db: Any) -> None:
    dag = get_dag("example_octopods_sensor_modes")
    poke, reschedule = dag.get_task("wait_poke"), dag.get_task("wait_reschedule")

    assert (poke.mode, poke.deferrable) == ("poke", False)
    assert (reschedule.mode, reschedule.deferrable) == ("reschedule", False)
    assert "send_sms" in poke.upstream_task_ids
    assert "wait_poke" in dag.get_task("record_delivery").upstream_task_ids


# The testing guide (docs/testing.rst) shows the tests below; keep them self-contained.


# [START howto_testing_sensor_with_simulator]
def test_wait_fails_when_the_carrier_gives_up(octopods_connection):
    from airflow_provider_octopods.exceptions import OctopodsDeliveryError
    from airflow_provider_octopods.sensors.octopods import OctopodsSmsDeliverySensor
    from airflow_provider_octopods.testing import FAILURE_REASONS, Status

    # One answer per status request: queued, then sent, then undelivered (repeated from then on).
    message_id = octopods_connection.add_message(
        "queued", "sent", Status("undelivered", FAILURE_REASONS["out_of_coverage"])
    )
    sensor = OctopodsSmsDeliverySensor(task_id="wait", message_id=message_id, deferrable=False)

    assert not sensor.poke({}).is_done  # queued
    assert not sensor.poke({}).is_done  # sent
    with pytest.raises(OctopodsDeliveryError, match="out of coverage"):
        sensor.poke({})


# [END howto_testing_sensor_with_simulator]


# [START howto_testing_faults_with_simulator]
def test_a_rate_limited_poll_is_asked_again(octopods_connection):
    from airflow_provider_octopods.hooks.octopods import OctopodsHook
    from airflow_provider_octopods.testing import Reply

    message_id = octopods_connection.add_message("delivered")
    # The next request, whatever it asks, gets HTTP 429 with Retry-After.
    octopods_connection.inject(Reply(429, {"error": "Too many requests"}, {"Retry-After": "0.2"}))

    status = OctopodsHook().get_sms_status(message_id)

    assert status.is_delivered
    assert octopods_connection.request_count(f"/api/v1/sms/messages/{message_id}") == 2


# [END howto_testing_faults_with_simulator]


# [START howto_testing_dag_with_simulator]
def test_dag_sends_once_and_waits_for_delivery(octopods_connection, airflow_db):
    dag = get_dag("octopods_test_send_then_sensor")  # your DagBag(...).get_dag(...)

    dag_run = dag.test(run_conf={"destination_phone": "+12015550123"})

    assert dag_run.state == "success"
    assert octopods_connection.request_count("/api/v1/sms/messages") == 1  # one SMS sent


# [END howto_testing_dag_with_simulator]
