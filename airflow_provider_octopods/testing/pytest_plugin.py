"""
Pytest fixtures for testing DAGs that use Octopods: an opt-in plugin.

Load it with ``pytest -p airflow_provider_octopods.testing.pytest_plugin``, or with
``pytest_plugins = ["airflow_provider_octopods.testing.pytest_plugin"]`` in your ``conftest.py``.

- ``octopods_simulator``: a started :class:`~airflow_provider_octopods.testing.OctopodsSimulator`.
- ``octopods_connection``: the simulator, with ``AIRFLOW_CONN_OCTOPODS_DEFAULT`` pointing at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_octopods.testing.simulator import OctopodsSimulator


@pytest.fixture
def octopods_simulator() -> Iterator[OctopodsSimulator]:
    """A running Octopods simulator on 127.0.0.1, stopped after the test."""
    from airflow_provider_octopods.testing.simulator import OctopodsSimulator

    with OctopodsSimulator(deliver_after=0.3, sent_after=0.1) as sim:
        yield sim


@pytest.fixture
def octopods_connection(
    octopods_simulator: OctopodsSimulator, monkeypatch: pytest.MonkeyPatch
) -> OctopodsSimulator:
    """The simulator, with the ``octopods_default`` connection pointing at it (through the environment)."""
    for name, value in octopods_simulator.connection_uri_env("octopods_default").items():
        monkeypatch.setenv(name, value)
    return octopods_simulator
