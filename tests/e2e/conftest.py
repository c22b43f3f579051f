"""
Fixtures of the end-to-end suite: one real Airflow 3 deployment on PostgreSQL for the whole
session, the Octopods simulator it talks to, and log dumps when a test fails.

Run with ``make e2e`` (see ``tests/e2e/README.md``); the default ``make test`` skips this folder.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods.testing import OctopodsSimulator
from tests.e2e.deployment import E2E_DAGS, ROOT, AirflowDeployment, PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The simulator's Channel API key: distinctive, so a leak anywhere is easy to find.
E2E_API_KEY = "octo-e2e-key-4d9b1f7c2a6e8035bd1c"
#: The simulator's WhatsApp Business API key (``octopods_whatsapp_default``): distinctive too.
E2E_WHATSAPP_KEY = "octo-e2e-wa-key-8e3a5c1f9d7b2604ce5a"
#: Seconds until the simulator reports a sent WhatsApp message ``read``.
E2E_READ_AFTER = 2.0
#: Set to keep the deployment's folder (logs, DAGs, configuration) after the run.
KEEP_ENV = "OCTOPODS_E2E_KEEP"

_deployment: AirflowDeployment | None = None


@pytest.fixture(scope="session")
def simulator() -> Iterator[OctopodsSimulator]:
    """The Octopods simulator on 127.0.0.1, in this process so tests can script its answers."""
    with OctopodsSimulator(
        E2E_API_KEY,
        whatsapp_api_key=E2E_WHATSAPP_KEY,
        deliver_after=1.0,
        sent_after=0.3,
        read_after=E2E_READ_AFTER,
    ) as sim:
        yield sim


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the metadata database."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def airflow(
    request: pytest.FixtureRequest, postgres: PostgresServer, simulator: OctopodsSimulator
) -> Iterator[AirflowDeployment]:
    """
    The deployment, with ``octopods_default`` (the SMS key) and ``octopods_whatsapp_default`` (the
    WhatsApp key) created by ``airflow connections add``, running.

    Stopped at the end of the session whatever happened; its folder is deleted unless a test
    failed or ``OCTOPODS_E2E_KEEP`` is set.
    """
    global _deployment
    deployment = AirflowDeployment(
        database_url=postgres.url,
        dag_files=[*E2E_DAGS.glob("*.py"), *(ROOT / "example_dags").glob("*.py")],
    )
    _deployment = deployment
    try:
        deployment.migrate()
        for conn_id, key in (
            ("octopods_default", simulator.api_key),
            ("octopods_whatsapp_default", simulator.whatsapp_api_key),
        ):
            deployment.cli(
                "connections",
                "add",
                conn_id,
                "--conn-type",
                "octopods",
                "--conn-host",
                simulator.url,
                "--conn-password",
                key,
            )
        deployment.start()
        yield deployment
    except BaseException:
        print(f"\nThe deployment failed; component logs:\n{deployment.component_logs(150)}")
        raise
    finally:
        deployment.stop()
        _deployment = None
        if request.session.testsfailed or os.environ.get(KEEP_ENV):
            print(f"\nAirflow home kept for inspection: {deployment.home}")
        else:
            shutil.rmtree(deployment.home, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of every component's log to a failed test's report."""
    report = yield
    if report.failed and _deployment is not None:
        report.sections.append(("Airflow component logs (tail)", _deployment.component_logs()))
    return report
