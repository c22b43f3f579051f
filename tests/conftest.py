"""
Test set-up: a real Airflow metadata database (SQLite) in a temporary AIRFLOW_HOME, whose DAGs
folder holds ``tests/dags`` and ``example_dags``, and the Octopods simulator on 127.0.0.1.

Airflow reads its configuration on import, so the environment is set here, before any test
module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="octopods-airflow-home-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [*(ROOT / "tests" / "dags").glob("*.py"), *(ROOT / "example_dags").glob("*.py")]:
    shutil.copy(source, DAGS_FOLDER / source.name)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": "airflow.*",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
    del os.environ[name]

#: The simulator's key in tests: long and distinctive, so a leak is easy to grep for.
TEST_API_KEY = "octo-test-key-7f3a9c1e5b2d4f6a8c0e"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the Airflow metadata database once per test session."""
    from airflow.utils import db

    db.initdb()
    return AIRFLOW_HOME


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The Octopods simulator with a distinctive key, fast progressions, stopped after the test."""
    from airflow_provider_octopods.testing import OctopodsSimulator

    with OctopodsSimulator(TEST_API_KEY, deliver_after=0.3, sent_after=0.1) as sim:
        yield sim


@pytest.fixture
def octopods_conn(simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The simulator, with ``octopods_default`` pointing at it through AIRFLOW_CONN_OCTOPODS_DEFAULT."""
    for name, value in simulator.connection_uri_env("octopods_default").items():
        monkeypatch.setenv(name, value)
    return simulator
