"""
Test set-up: a real Airflow metadata database (SQLite) in a temporary AIRFLOW_HOME, whose DAGs
folder holds ``tests/dags`` and ``example_dags``, and the Octopods simulator on 127.0.0.1.

Airflow reads its configuration on import, so the environment is set here, before any test
module imports Airflow.

The suite runs on every Airflow version of the matrix (``make test-matrix``: 2.11, 3.1, 3.2 and
3.3). Code that differs between them lives here, behind ``AIRFLOW_V_3_0_PLUS`` (``get_dag``,
``read_xcom``). A test that needs a newer Airflow than the oldest of the matrix is marked
``@pytest.mark.min_airflow("3.3", reason="...")`` (``@pytest.mark.airflow3_only(reason="...")`` is
short for ``min_airflow("3.0", ...)``), and a DAG file that only parses on a newer Airflow is listed
in :data:`DAG_FILES_MIN_AIRFLOW`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib.metadata import version as _distribution_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from packaging.version import Version

#: The provider's opt-in test plugin: the ``octopods_simulator`` and ``octopods_connection`` fixtures.
pytest_plugins = ["airflow_provider_octopods.testing.pytest_plugin"]

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The installed Airflow (without pre-release or local parts), read without importing Airflow.
AIRFLOW_VERSION = Version(Version(_distribution_version("apache-airflow")).base_version)
AIRFLOW_V_3_0_PLUS = AIRFLOW_VERSION.major >= 3

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="octopods-airflow-home-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()

#: DAG files that import a feature of a newer Airflow, with the version they need: on an older
#: Airflow they are left out of the DAGs folder, as their import error would fail every parse.
DAG_FILES_MIN_AIRFLOW = {
    "example_octopods_deadline_alert.py": "3.3",
    "example_octopods_retry_policy.py": "3.3",
}

for source in [*(ROOT / "tests" / "dags").glob("*.py"), *(ROOT / "example_dags").glob("*.py")]:
    if Version(DAG_FILES_MIN_AIRFLOW.get(source.name, "0")) <= AIRFLOW_VERSION:
        shutil.copy(source, DAGS_FOLDER / source.name)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": "airflow.*",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # The start-up of dag.test()'s in-process Execution API on Airflow 3.2 raises without a JWT
        # secret (and every call then fails with HTTP 500), though it lets every request through.
        "AIRFLOW__API_AUTH__JWT_SECRET": "octopods-tests-jwt-secret-not-for-production",
    }
)
for name in [n for n in os.environ if n.startswith("AIRFLOW_CONN_")]:
    del os.environ[name]

#: The simulator's key in tests: long and distinctive, so a leak is easy to grep for.
TEST_API_KEY = "octo-test-key-7f3a9c1e5b2d4f6a8c0e"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        'min_airflow(version, reason): the test needs Airflow `version` ("3.3") or newer; on an older '
        "Airflow it is skipped with this reason (required: say what the older Airflow lacks).",
    )
    config.addinivalue_line(
        "markers",
        'airflow3_only(reason): short for min_airflow("3.0", reason=...): the test needs Airflow 3.',
    )


def _min_airflow(item: pytest.Item) -> tuple[Version, str] | None:
    """Return the Airflow version a test needs and why, from its markers, or None if any will do."""
    needs: list[tuple[Version, str]] = []
    for marker in item.iter_markers("min_airflow"):
        if not marker.args:
            raise pytest.UsageError(
                f'{item.nodeid}: @pytest.mark.min_airflow needs a version, e.g. min_airflow("3.3", reason=...).'
            )
        needs.append((Version(str(marker.args[0])), marker.kwargs.get("reason") or "".join(marker.args[1:2])))
    for marker in item.iter_markers("airflow3_only"):
        needs.append((Version("3.0"), marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")))
    if not needs:
        return None
    version, reason = max(needs, key=lambda need: need[0])
    if not reason:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.min_airflow / airflow3_only need a reason naming what the older "
            'Airflow lacks, e.g. @pytest.mark.min_airflow("3.3", reason="retry policies arrived in '
            'Airflow 3.3").'
        )
    return version, reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``min_airflow`` and ``airflow3_only`` tests on an older Airflow, with the reason they give."""
    for item in items:
        needs = _min_airflow(item)
        if needs is None:
            continue
        version, reason = needs
        if version > AIRFLOW_VERSION:
            item.add_marker(
                pytest.mark.skip(reason=f"needs Airflow {version}+ (installed: {AIRFLOW_VERSION}): {reason}")
            )


#: Skips a ``dag.test()`` test whose failure callbacks render ``{{ exception }}`` on Airflow 3.0 to
#: 3.2: their ``dag.test()`` (task SDK ``run_task_in_process``) runs a failed task's callbacks with
#: no ``exception`` in the context, which Airflow's real task runner (``task_runner.main``) puts
#: there before ``finalize``; ``dag.test()`` does so from Airflow 3.3 (task SDK 1.3). Airflow 2's
#: ``dag.test()`` has it. The notifier as the real task runner calls it is tested on every leg.
DAG_TEST_FAILURE_CONTEXT_HAS_EXCEPTION = pytest.mark.skipif(
    Version("3.0") <= AIRFLOW_VERSION < Version("3.3"),
    reason="dag.test() on Airflow 3.0 to 3.2 runs a failed task's callbacks without 'exception' in "
    "their context (the real task runner sets it; dag.test() does from Airflow 3.3)",
)


def get_dag(dag_id: str) -> Any:
    """Parse the test DAGs folder and return ``dag_id``; fail on any import error."""
    if Version("3.2") <= AIRFLOW_VERSION:
        from airflow.dag_processing.dagbag import DagBag
    else:  # Airflow 2.11 to 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"DAG {dag_id!r} is not in {DAGS_FOLDER}"
    return dag


def read_xcom(session: Any, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """Return the deserialized XCom ``key`` of a task in a DAG run from the metadata DB, or None."""
    if not AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XCom

        return XCom.get_one(run_id=run_id, dag_id=dag_id, task_id=task_id, key=key, session=session)
    from airflow.models.xcom import XComModel

    row = (
        session.query(XComModel)
        .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=key, map_index=-1)
        .one_or_none()
    )
    return XComModel.deserialize_value(row) if row is not None else None


class _NotFromAirflow(logging.Filter):
    """Reject the records of Airflow's and the provider's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.partition(".")[0] not in {"airflow", "airflow_provider_octopods"}


@pytest.fixture(scope="session", autouse=True)
def _airflow_logs_reach_the_output_once(pytestconfig: pytest.Config) -> Iterator[None]:
    """
    On Airflow 2, show Airflow's and the provider's log records once, in stdout, as Airflow 3 does.

    Airflow 3 prints them to stdout and they do not reach ``caplog``. Airflow 2's root handler
    prints them to stdout too, but pytest's log capture would hold a second copy, so a test
    counting a message in stdout + ``caplog`` would see it twice: keep them out of the capture.
    """
    plugin = pytestconfig.pluginmanager.get_plugin("logging-plugin")
    handlers = [] if AIRFLOW_V_3_0_PLUS or plugin is None else [plugin.caplog_handler, plugin.report_handler]
    only_others = _NotFromAirflow()
    for handler in handlers:
        handler.addFilter(only_others)
    yield
    for handler in handlers:
        handler.removeFilter(only_others)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the Airflow metadata database once per test session."""
    from airflow.utils import db

    # Airflow 2's migrations load alembic.ini's logging config, which sets the root logger to
    # WARNING with its own stderr handler: task and dag.test() INFO logs would vanish from the
    # output. Airflow 3 skips that when logging is configured; keep Airflow's set-up on both.
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    db.initdb()
    root.setLevel(level)
    root.handlers[:] = handlers
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
