"""
The pytest plugin is opt-in: an unrelated pytest run of a user who installed the provider loads
nothing of it; a run that asks for it (``-p airflow_provider_octopods.testing.pytest_plugin`` or a
``conftest.py`` line) gets its fixtures, which work, for the cost of their definitions alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

PLUGIN = "airflow_provider_octopods.testing.pytest_plugin"
#: All that the plugin may import into a run that uses none of its fixtures.
PLUGIN_MODULES = {
    "airflow_provider_octopods",
    "airflow_provider_octopods.testing",
    "airflow_provider_octopods.testing.pytest_plugin",
}


def _pytest(
    tmp_path: Path, test_source: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_unrelated.py").write_text(textwrap.dedent(test_source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_plugin_is_not_loaded_unless_asked_for(tmp_path):
    source = """
        import sys

        def test_record_modules():
            assert not [name for name in sys.modules if name.startswith("airflow_provider_octopods")]
        """
    result = _pytest(tmp_path, source)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_run_that_asks_for_the_plugin_imports_nothing_of_the_provider_beyond_the_fixtures(tmp_path):
    # The same unrelated run without and with the plugin: what it adds to sys.modules is its cost.
    # (Other plugins of the dev environment, such as requests_mock's, import what they import.)
    source = """
        import json, os, sys

        def test_record_modules():
            with open(os.environ["MODULES_FILE"], "w") as f:
                json.dump(sorted(sys.modules), f)
        """
    loaded = {}
    for name, args in (("without", []), ("with", ["-p", PLUGIN])):
        out = tmp_path / f"modules-{name}.json"
        result = _pytest(tmp_path, source, *args, env={"MODULES_FILE": str(out)})
        assert result.returncode == 0, result.stdout + result.stderr
        loaded[name] = set(json.loads(out.read_text()))

    added = loaded["with"] - loaded["without"]
    assert added == PLUGIN_MODULES, sorted(added)


def test_the_plugin_fixtures_start_the_simulator_when_asked_for(tmp_path):
    result = _pytest(
        tmp_path,
        """
        import os

        import requests

        def test_connection_points_at_a_running_simulator(octopods_connection):
            message_id = octopods_connection.add_message("delivered")
            assert os.environ["AIRFLOW_CONN_OCTOPODS_DEFAULT"]
            answer = requests.get(
                f"{octopods_connection.url}/api/v1/sms/messages/{message_id}",
                headers={"X-Octopods-Auth": octopods_connection.api_key},
                timeout=10,
            )
            assert answer.json()["status"] == "delivered"
        """,
        "-p",
        PLUGIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
