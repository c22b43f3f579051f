"""
Test tools: a local Octopods simulator for this provider's tests and for your own DAG tests.

.. code-block:: python

    from airflow_provider_octopods.testing import OctopodsSimulator

    with OctopodsSimulator() as sim:
        message_id = sim.add_message("queued", "sent", "delivered")
        ...  # point an Octopods connection at sim.url with the key sim.api_key
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_octopods.testing.simulator import (
        FAILURE_REASONS,
        Hang,
        OctopodsSimulator,
        Reply,
        Reset,
        Status,
        Trickle,
    )

__all__ = ["FAILURE_REASONS", "Hang", "OctopodsSimulator", "Reply", "Reset", "Status", "Trickle"]


def __getattr__(name: str) -> Any:
    """
    Import the simulator on first use of one of its names.

    A run that loads the opt-in ``pytest_plugin`` imports this package: importing aiohttp's
    server there would slow the runs that use none of its fixtures.
    """
    if name in __all__:
        from airflow_provider_octopods.testing import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
