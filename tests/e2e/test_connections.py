"""
Setting up the connection as an operator would: ``airflow connections add`` and
``airflow connections test`` against the deployment's database, and the REST endpoint behind the
UI's Test button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_octopods.testing import OctopodsSimulator
from tests.e2e.conftest import E2E_API_KEY

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.e2e.deployment import AirflowDeployment

OTHER_KEY = "octo-e2e-other-key-93c1d7a5e2b84f60"


@pytest.fixture
def other_simulator() -> Iterator[OctopodsSimulator]:
    """A second Octopods account, whose key the tests revoke."""
    with OctopodsSimulator(OTHER_KEY) as sim:
        yield sim


def test_connections_test_passes_with_a_good_key(airflow: AirflowDeployment) -> None:
    listed = airflow.cli("connections", "get", "octopods_default", "--output", "json")
    assert '"conn_type": "octopods"' in listed.stdout

    result = airflow.cli("connections", "test", "octopods_default")

    assert "Connection success!" in result.stdout
    assert E2E_API_KEY not in result.stdout + result.stderr


def test_connections_test_fails_clearly_with_a_revoked_key(
    airflow: AirflowDeployment, other_simulator: OctopodsSimulator
) -> None:
    airflow.cli(
        "connections",
        "add",
        "octopods_revoked",
        "--conn-type",
        "octopods",
        "--conn-host",
        other_simulator.url,
        "--conn-password",
        OTHER_KEY,
    )
    assert "Connection success!" in airflow.cli("connections", "test", "octopods_revoked").stdout
    other_simulator.revoke_key()

    result = airflow.cli("connections", "test", "octopods_revoked", check=False)

    output = " ".join((result.stdout + result.stderr).split())  # the CLI wraps long lines
    assert result.returncode == 1, output
    assert "Connection failed!" in output
    assert "rotated or revoked" in output
    assert "Update the connection's Channel API key" in output
    assert OTHER_KEY not in output
    airflow.cli("connections", "delete", "octopods_revoked")


def test_connections_test_fails_clearly_with_a_wrong_key(
    airflow: AirflowDeployment, other_simulator: OctopodsSimulator
) -> None:
    airflow.cli(
        "connections",
        "add",
        "octopods_wrong",
        "--conn-json",
        f'{{"conn_type": "octopods", "host": "{other_simulator.url}", "password": "not-the-key"}}',
    )

    result = airflow.cli("connections", "test", "octopods_wrong", check=False)

    output = " ".join((result.stdout + result.stderr).split())  # the CLI wraps long lines
    assert result.returncode == 1, output
    assert "Connection failed!" in output
    assert "is missing or unknown (HTTP 401" in output
    assert "Update the connection's Channel API key" in output
    assert "not-the-key" not in output
    airflow.cli("connections", "delete", "octopods_wrong")


def test_rest_connection_test_runs_the_hook_in_the_api_server(
    airflow: AirflowDeployment, simulator: OctopodsSimulator, other_simulator: OctopodsSimulator
) -> None:
    """``POST /api/v2/connections/test``: what the UI's Test button calls, with the typed credentials."""
    body = {"connection_id": "octopods_typed", "conn_type": "octopods", "host": simulator.url}

    good = airflow.api("POST", "/connections/test", json={**body, "password": E2E_API_KEY})
    other_simulator.revoke_key()
    revoked = airflow.api(
        "POST", "/connections/test", json={**body, "host": other_simulator.url, "password": OTHER_KEY}
    )

    assert good == {
        "status": True,
        "message": "Connection works: Octopods accepted the SMS channel's API key.",
    }
    assert revoked["status"] is False
    assert "rotated or revoked" in revoked["message"]
    assert OTHER_KEY not in revoked["message"]
